"""The periodic job that records the settlements of completed contract-weeks (started in the
app lifespan; several processes may run it at once, see `record_completed_weeks`)."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from boxoffice.core.db import Database
from boxoffice.distribution import service

log = structlog.get_logger(__name__)


async def record_once(app: FastAPI) -> None:
    database: Database = app.state.db
    async with database.session() as session:
        recorded = await service.record_completed_weeks(session)
    if recorded:
        log.info("settlements_recorded", entries=recorded)
