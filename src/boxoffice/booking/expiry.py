"""The in-process job that records expired bookings (started in the app lifespan).

Every server process runs it; that is safe because each expiry is a conditional UPDATE that
only one process can win. Correctness never waits for it: a seat whose hold has passed its
`held_until` is already free to every reader and writer.
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from boxoffice.booking.service import expire_due_bookings
from boxoffice.core.db import Database
from boxoffice.payments.service import PaymentContext

log = structlog.get_logger(__name__)


async def expire_once(app: FastAPI) -> None:
    database: Database = app.state.db
    async with database.session() as session:
        expired = await expire_due_bookings(session, PaymentContext.of(app))
    if expired:
        log.info("bookings_expired", count=expired)
