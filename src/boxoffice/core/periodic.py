"""Periodic work, started in the app lifespan of every server (and worker) process, run once
per period across all of them.

Before each run a process takes the job's lease (`jobs.lease`, one `job_leases` row per job,
valid for one interval); a process that does not get it skips that period. The lease only
stops the work from being done N times: each run must still be safe if two overlap (a run
longer than its interval, a clock far off), and a failed run is logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog

from boxoffice.core.db import Database
from boxoffice.jobs.lease import new_holder, take_lease

log = structlog.get_logger(__name__)

Work = Callable[[], Awaitable[None]]


async def run_periodically(
    name: str, interval: float, work: Work, *, database: Database, holder: str
) -> None:
    # Spread the processes' runs so they do not all wake at once.
    await asyncio.sleep(random.uniform(0, interval))
    while True:
        try:
            if await take_lease(database, name, holder, interval):
                await work()
            else:
                log.debug("periodic_job_skipped", job=name)  # another process's turn
        except asyncio.CancelledError:
            raise
        except Exception:  # a database or provider hiccup must not end the loop
            log.exception("periodic_job_failed", job=name)
        await asyncio.sleep(interval)


class PeriodicJobs:
    """One app's periodic jobs; `holder` names this process in the leases."""

    def __init__(self, database: Database, holder: str | None = None) -> None:
        self.database = database
        self.holder = holder or new_holder()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, interval: float, work: Work) -> asyncio.Task[None] | None:
        """Run `work` every `interval` seconds (in some process); None when 0 (turned off)."""
        if interval <= 0:
            return None
        task = asyncio.create_task(
            run_periodically(name, interval, work, database=self.database, holder=self.holder),
            name=name,
        )
        self._tasks.append(task)
        return task

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
