"""The in-process job that records expired bookings (started in the app lifespan).

Every server process runs it; that is safe because each expiry is a conditional UPDATE that
only one process can win. Correctness never waits for it: a seat whose hold has passed its
`held_until` is already free to every reader and writer.
"""

from __future__ import annotations

import asyncio
import random

import structlog
from fastapi import FastAPI

from boxoffice.booking.service import expire_due_bookings
from boxoffice.config import Settings
from boxoffice.core.db import Database
from boxoffice.payments.service import PaymentContext

log = structlog.get_logger(__name__)


async def run_expiry_loop(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    database: Database = app.state.db
    ctx = PaymentContext.of(app)
    interval = settings.expiry_interval_seconds
    # Spread the processes' runs so they do not all wake at once.
    await asyncio.sleep(random.uniform(0, interval))
    while True:
        try:
            async with database.session() as session:
                expired = await expire_due_bookings(session, ctx)
            if expired:
                log.info("bookings_expired", count=expired)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup must not end the loop
            log.exception("expiry_job_failed")
        await asyncio.sleep(interval)
