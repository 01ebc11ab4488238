"""The in-process job that credits points for shows that are over (started in the app
lifespan of every server process; several may run it at once, see `earn_for_past_shows`)."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from boxoffice.core.db import Database
from boxoffice.loyalty import service

log = structlog.get_logger(__name__)


def install(app: FastAPI) -> None:
    """Tier upgrades in this app's database are mailed through its Mailer."""
    service.set_tier_notifier(app.state.db, service.TierUpgradeMail(app.state.mailer))


async def earn_once(app: FastAPI) -> None:
    database: Database = app.state.db
    async with database.session() as session:
        earned = await service.earn_for_past_shows(session)
    if earned:
        log.info("loyalty_points_earned", bookings=earned)
