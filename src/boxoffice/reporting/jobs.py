"""The job that generates a large report into storage."""

from __future__ import annotations

import uuid

import structlog

from boxoffice.jobs import JobContext, job
from boxoffice.reporting import service

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 3


@job("reports.generate", max_attempts=MAX_ATTEMPTS)
async def generate_report(ctx: JobContext, report_id: str) -> None:
    """Build, render and store the report; on the last failed attempt, mark it failed."""
    try:
        async with ctx.db.session() as session:
            await service.generate(session, ctx.storage, uuid.UUID(report_id))
    except Exception as exc:
        if ctx.attempt >= MAX_ATTEMPTS:
            async with ctx.db.session() as session:
                await service.mark_failed(
                    session, uuid.UUID(report_id), f"{type(exc).__name__}: {exc}"
                )
        raise
    log.info("report_generated", report_id=report_id)
