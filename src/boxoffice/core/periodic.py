"""In-process periodic work, started in the app lifespan of every server process.

Each run must be safe when several processes do it at once (conditional updates, rows locked
with SKIP LOCKED); a failed run is logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


async def run_periodically(name: str, interval: float, work: Callable[[], Awaitable[None]]) -> None:
    # Spread the processes' runs so they do not all wake at once.
    await asyncio.sleep(random.uniform(0, interval))
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:  # a database or provider hiccup must not end the loop
            log.exception("periodic_job_failed", job=name)
        await asyncio.sleep(interval)


def start_periodic(
    name: str, interval: float, work: Callable[[], Awaitable[None]]
) -> asyncio.Task[None] | None:
    """The running job, or None when its interval is 0 (turned off)."""
    if interval <= 0:
        return None
    return asyncio.create_task(run_periodically(name, interval, work), name=name)


async def stop_periodic(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
