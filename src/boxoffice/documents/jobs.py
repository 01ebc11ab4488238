"""The periodic job that issues invoices a confirmation left unissued (its process stopped
between the commit and the invoice; see documents.service)."""

from __future__ import annotations

import datetime as dt

import structlog
from fastapi import FastAPI

from boxoffice.core.db import Database
from boxoffice.documents import service

log = structlog.get_logger(__name__)

# Bookings confirmed earlier than this without an invoice were confirmed before invoices were
# issued. After an outage longer than this: `boxoffice invoices repair --days N`.
MISSING_INVOICE_WINDOW = dt.timedelta(days=7)


async def issue_missing_once(app: FastAPI) -> None:
    database: Database = app.state.db
    issued = await service.issue_missing_invoices(database, window=MISSING_INVOICE_WINDOW)
    if issued:
        log.warning("missing_invoices_issued", count=issued)
