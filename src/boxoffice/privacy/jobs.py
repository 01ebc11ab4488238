"""The periodic retention purge of never-verified accounts (one process per interval).

Each account is purged in its own transaction with its row locked and its state checked
again, so an account verified meanwhile is left alone and two overlapping runs purge an
account once; one account's failure (a payment provider down while its unpaid booking is
cancelled) is logged and the others go on.
"""

from __future__ import annotations

import datetime as dt

import structlog
from fastapi import FastAPI

from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database
from boxoffice.payments.service import PaymentContext
from boxoffice.privacy import service

log = structlog.get_logger(__name__)

BATCH = 200


async def retention_once(app: FastAPI) -> None:
    """The periodic job's run (see `purge_unverified_accounts`)."""
    await purge_unverified_accounts(app)


async def purge_unverified_accounts(app: FastAPI) -> service.RetentionReport:
    """Purge a batch of customer accounts never verified within the retention period."""
    settings: Settings = app.state.settings
    database: Database = app.state.db
    payment_ctx = PaymentContext.of(app)
    cutoff = utcnow() - dt.timedelta(days=settings.unverified_account_retention_days)
    report = service.RetentionReport()
    async with database.session(write=False) as session:
        due = await service.unverified_account_ids(session, cutoff, limit=BATCH)
    for user_id in due:
        try:
            async with database.session() as session:
                outcome = await service.purge_unverified(session, payment_ctx, user_id, cutoff)
        except Exception:
            log.exception("retention_purge_failed", user_id=str(user_id))
            continue
        if outcome == "deleted":
            report.deleted += 1
        elif outcome == "anonymised":
            report.anonymised += 1
    if report.deleted or report.anonymised:
        log.info("unverified_accounts_purged", deleted=report.deleted, anonymised=report.anonymised)
    return report
