"""The periodic job that issues invoices a confirmation left unissued (its process stopped
between the commit and the invoice; see documents.service), and the job that deletes an
erased customer's stored invoice PDFs."""

from __future__ import annotations

import datetime as dt

import structlog
from fastapi import FastAPI

from boxoffice.core.db import Database
from boxoffice.documents import service
from boxoffice.jobs import JobContext, job

log = structlog.get_logger(__name__)

# A process's first run looks a week back (every server may have been down until now);
# later runs an hour, which covers a process that died while the others ran on and keeps
# the query small on a busy database. Bookings confirmed earlier without an invoice were
# confirmed before invoices were issued. After a longer outage:
# `boxoffice invoices repair --days N`.
FIRST_RUN_WINDOW = dt.timedelta(days=7)
LATER_RUN_WINDOW = dt.timedelta(hours=1)


async def issue_missing_once(app: FastAPI) -> None:
    database: Database = app.state.db
    first = not getattr(app.state, "invoice_repair_ran", False)
    window = FIRST_RUN_WINDOW if first else LATER_RUN_WINDOW
    issued = await service.issue_missing_invoices(database, window=window)
    app.state.invoice_repair_ran = True
    if issued:
        log.warning("missing_invoices_issued", count=issued)


@job(service.FORGET_INVOICE_PDFS_JOB, max_attempts=8)
async def forget_invoice_pdfs(ctx: JobContext, prefixes: list[str]) -> None:
    deleted = 0
    for prefix in prefixes:
        deleted += await ctx.storage.delete_prefix(prefix)
    log.info("invoice_pdfs_forgotten", invoices=len(prefixes), files=deleted)
