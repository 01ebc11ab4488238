"""The in-process job that credits points for shows that are over (started in the app
lifespan of every server process; several may run it at once, see `earn_for_past_shows`)."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from boxoffice.core.db import Database
from boxoffice.loyalty import service

log = structlog.get_logger(__name__)


async def earn_once(app: FastAPI) -> None:
    database: Database = app.state.db
    async with database.session() as session:
        earned = await service.earn_for_past_shows(session)
    if earned:
        log.info("loyalty_points_earned", bookings=earned)
