"""Reports: build the table of a kind (revenue, films, concessions, distributors), then answer
it at once or have a job generate it into storage.

A report is answered inline when it is small: at most `report_inline_max_rows` rows and a
range of at most `report_inline_max_days` days. Otherwise a `reports` row is stored (pending)
and the job `reports.generate` builds and renders it, stores the file under
`reports/<id>.<format>` and marks the row ready (or failed); the client polls
`GET /api/admin/reports/jobs/{id}` and downloads `.../file`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.jobs import enqueue
from boxoffice.reporting import analytics
from boxoffice.reporting.exceptions import ReportNotFound, ReportNotReady
from boxoffice.reporting.models import Report, ReportStatus
from boxoffice.reporting.render import CONTENT_TYPES, Chart, Column, ReportTable, render
from boxoffice.storage import Storage

KINDS = ("revenue", "films", "concessions", "distributors")
FORMATS = ("pdf", "xlsx", "csv")
TOP_IN_CHART = 10


@dataclass(frozen=True)
class ReportRequest:
    kind: str
    format: str
    date_from: dt.date
    date_to: dt.date
    theater_id: uuid.UUID | None = None

    def params(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "theaterId": str(self.theater_id) if self.theater_id else None,
        }

    @classmethod
    def of(cls, report: Report) -> ReportRequest:
        theater = report.params.get("theaterId")
        return cls(
            kind=report.kind,
            format=report.format,
            date_from=dt.date.fromisoformat(report.params["from"]),
            date_to=dt.date.fromisoformat(report.params["to"]),
            theater_id=uuid.UUID(theater) if theater else None,
        )


def _scope_name(scope: analytics.Scope, theater_id: uuid.UUID | None) -> str:
    if theater_id is not None and theater_id in scope.theaters:
        return scope.theaters[theater_id][0]
    return "All theaters"


async def build_table(session: AsyncSession, request: ReportRequest) -> ReportTable:
    """The report's rows, totals and chart, from the database."""
    if request.kind == "distributors":
        return await _distributors(session, request)
    scope = await analytics.resolve_scope(
        session, request.date_from, request.date_to, request.theater_id
    )
    head = {
        "date_from": request.date_from,
        "date_to": request.date_to,
        "scope": _scope_name(scope, request.theater_id),
        "currency": scope.currency,
    }
    if request.kind == "revenue":
        return await _revenue(session, scope, head)
    if request.kind == "films":
        return await _films(session, scope, head)
    return await _concessions(session, scope, head)


async def _revenue(
    session: AsyncSession, scope: analytics.Scope, head: dict[str, Any]
) -> ReportTable:
    figures = await analytics.by_theater_and_date(session, scope)
    rows = [
        [date, scope.theaters[theater_id][0], day.bookings, day.tickets, day.revenue]
        for (theater_id, date), day in sorted(
            figures.items(), key=lambda item: (item[0][1], scope.theaters[item[0][0]][0])
        )
    ]
    dates = analytics.per_date(figures, scope)
    return ReportTable(
        kind="revenue",
        title="Revenue by date and theater",
        columns=[
            Column("date", "Date", "date", 12),
            Column("theater", "Theater", "text", 28),
            Column("bookings", "Bookings", "int", 10),
            Column("tickets", "Tickets", "int", 10),
            Column("revenue", "Revenue", "money", 14),
        ],
        rows=rows,
        totals=[
            None,
            None,
            sum(day.bookings for _, day in dates),
            sum(day.tickets for _, day in dates),
            sum((day.revenue for _, day in dates), Decimal("0.00")),
        ],
        chart=Chart(
            "Revenue by date",
            [date.strftime("%d %b") for date, _ in dates],
            [float(day.revenue) for _, day in dates],
        ),
        notes=["Show date in the theater's timezone; revenue is what was paid, net of refunds."],
        **head,
    )


async def _films(
    session: AsyncSession, scope: analytics.Scope, head: dict[str, Any]
) -> ReportTable:
    films = await analytics.by_film(session, scope)
    rows = [
        [f.title, f.showtimes, f.tickets, f.sold_seats, f.sellable_seats, f.occupancy, f.revenue]
        for f in films
    ]
    sold = sum(f.sold_seats for f in films)
    sellable = sum(f.sellable_seats for f in films)
    top = sorted(films, key=lambda f: -f.revenue)[:TOP_IN_CHART]
    return ReportTable(
        kind="films",
        title="Films",
        columns=[
            Column("movie", "Movie", "text", 32),
            Column("showtimes", "Showtimes", "int", 11),
            Column("tickets", "Tickets", "int", 10),
            Column("sold_seats", "Seats sold (past shows)", "int", 12),
            Column("sellable_seats", "Seats for sale (past shows)", "int", 12),
            Column("occupancy", "Occupancy", "percent", 11),
            Column("revenue", "Revenue", "money", 14),
        ],
        rows=rows,
        totals=[
            None,
            sum(f.showtimes for f in films),
            sum(f.tickets for f in films),
            sold,
            sellable,
            analytics.occupancy(sold, sellable),
            sum((f.revenue for f in films), Decimal("0.00")),
        ],
        chart=Chart(
            "Top films by revenue", [f.title[:18] for f in top], [float(f.revenue) for f in top]
        ),
        notes=["Occupancy: seats sold over seats for sale (not blocked) of shows that began."],
        **head,
    )


async def _concessions(
    session: AsyncSession, scope: analytics.Scope, head: dict[str, Any]
) -> ReportTable:
    snacks = await analytics.by_snack(session, scope)
    rows = [[s.name, s.quantity, s.revenue] for s in snacks]
    return ReportTable(
        kind="concessions",
        title="Concession sales",
        columns=[
            Column("snack", "Snack", "text", 30),
            Column("quantity", "Items", "int", 10),
            Column("revenue", "Revenue", "money", 14),
        ],
        rows=rows,
        totals=[
            None,
            sum(s.quantity for s in snacks),
            sum((s.revenue for s in snacks), Decimal("0.00")),
        ],
        chart=Chart(
            "Top snacks by revenue",
            [s.name[:18] for s in snacks[:TOP_IN_CHART]],
            [float(s.revenue) for s in snacks[:TOP_IN_CHART]],
        ),
        **head,
    )


_DISTRIBUTOR_COLUMNS = [
    Column("distributor", "Distributor", "text", 24),
    Column("movie", "Movie", "text", 26),
    Column("format", "Format", "text", 8),
    Column("week_start", "Week from", "date", 12),
    Column("week_end", "Week to", "date", 12),
    Column("currency", "Currency", "text", 9),
    Column("gross", "Gross", "money", 13),
    Column("net", "Net", "money", 13),
    Column("share_percent", "Share %", "text", 8),
    Column("distributor_share", "Share", "money", 13),
    Column("guarantee_topup", "Guarantee top-up", "money", 13),
    Column("amount_due", "Amount due", "money", 13),
    Column("status", "Status", "text", 10),
]


async def _distributors(session: AsyncSession, request: ReportRequest) -> ReportTable:
    """Settlements per distributor, contract and week (from the distribution feature)."""
    analytics.check_range(request.date_from, request.date_to)
    from boxoffice.distribution.service import settlement_report_rows  # owned by distribution

    settlements = await settlement_report_rows(session, request.date_from, request.date_to)
    rows: list[list[Any]] = [
        [
            s.distributor_name,
            s.movie_title,
            s.format or "",
            s.week_start,
            s.week_end,
            s.currency,
            s.gross,
            s.net,
            f"{Decimal(s.share_percent):f}",
            s.distributor_share,
            s.guarantee_topup,
            s.amount_due,
            s.status,
        ]
        for s in settlements
    ]
    currencies = {s.currency for s in settlements}
    single = currencies.pop() if len(currencies) == 1 else None
    totals: list[Any] | None = None
    if single is not None or not settlements:
        totals = [
            sum((row[index] for row in rows), Decimal("0.00")) if column.kind == "money" else None
            for index, column in enumerate(_DISTRIBUTOR_COLUMNS)
        ]
    due: dict[str, Decimal] = {}
    for s in settlements:
        due[s.distributor_name] = due.get(s.distributor_name, Decimal("0")) + s.amount_due
    top = sorted(due.items(), key=lambda item: -item[1])[:TOP_IN_CHART]
    return ReportTable(
        kind="distributors",
        title="Distributor settlements",
        date_from=request.date_from,
        date_to=request.date_to,
        scope="All theaters",
        currency=single,
        columns=_DISTRIBUTOR_COLUMNS,
        rows=rows,
        totals=totals,
        chart=Chart(
            "Amount due by distributor", [n[:18] for n, _ in top], [float(v) for _, v in top]
        )
        if single
        else None,
        notes=[] if single or not settlements else ["Several currencies: no totals."],
    )


# ---------------------------------------------------------------------------------------------
# Answering


@dataclass(frozen=True)
class ReportFile:
    filename: str
    content_type: str
    data: bytes | None = None
    url: str | None = None


def is_large(request: ReportRequest, settings: Settings, rows: int | None) -> bool:
    days = (request.date_to - request.date_from).days + 1
    if days > settings.report_inline_max_days:
        return True
    return rows is not None and rows > settings.report_inline_max_rows


def filename(request: ReportRequest) -> str:
    return f"{request.kind}-{request.date_from}-{request.date_to}.{request.format}"


async def produce(
    session: AsyncSession, settings: Settings, request: ReportRequest
) -> ReportFile | None:
    """The rendered report when it is small; None when a job should generate it (the request
    was checked: a bad range or theater answers 422 now, not in the job)."""
    analytics.check_range(request.date_from, request.date_to)
    if is_large(request, settings, None):
        if request.kind != "distributors":
            await analytics.resolve_scope(
                session, request.date_from, request.date_to, request.theater_id
            )
        return None
    table = await build_table(session, request)
    if is_large(request, settings, len(table.rows)):
        return None
    data = await asyncio.to_thread(render, table, request.format)
    return ReportFile(filename(request), CONTENT_TYPES[request.format], data)


async def defer(writer: AsyncSession, request: ReportRequest, requested_by: uuid.UUID) -> Report:
    """A pending `reports` row, its job enqueued once `writer` (a write session) commits."""
    report = Report(
        id=uuid.uuid4(),
        kind=request.kind,
        format=request.format,
        params=request.params(),
        status=ReportStatus.PENDING,
        filename=filename(request),
        requested_by=requested_by,
        created_at=utcnow(),
    )
    writer.add(report)
    await writer.flush()
    enqueue(writer, "reports.generate", report_id=str(report.id))
    return report


async def generate(session: AsyncSession, storage: Storage, report_id: uuid.UUID) -> None:
    """The job's work: build, render and store a pending report, then mark it ready."""
    report = await session.get(Report, report_id)
    if report is None or report.status != ReportStatus.PENDING:
        return  # gone, or done by an earlier run
    request = ReportRequest.of(report)
    table = await build_table(session, request)
    data = await asyncio.to_thread(render, table, request.format)
    key = f"reports/{report.id}.{report.format}"
    await storage.put(key, data, CONTENT_TYPES[report.format])
    report.storage_key = key
    report.status = ReportStatus.READY
    report.finished_at = utcnow()
    await session.flush()


async def mark_failed(session: AsyncSession, report_id: uuid.UUID, error: str) -> None:
    report = await session.get(Report, report_id)
    if report is not None and report.status == ReportStatus.PENDING:
        report.status = ReportStatus.FAILED
        report.error = error[:500]
        report.finished_at = utcnow()
        await session.flush()


async def get_report(session: AsyncSession, report_id: uuid.UUID) -> Report:
    report = await session.get(Report, report_id)
    if report is None:
        raise ReportNotFound("No such report.")
    return report


async def report_file(session: AsyncSession, storage: Storage, report_id: uuid.UUID) -> ReportFile:
    """A ready report's file (a presigned URL on S3, else its bytes); 409 while pending or
    failed."""
    report = await get_report(session, report_id)
    if report.status != ReportStatus.READY or report.storage_key is None:
        raise ReportNotReady(f"The report is {report.status}.", reportStatus=report.status)
    content_type = CONTENT_TYPES[report.format]
    url = await storage.download_url(report.storage_key, report.filename)
    if url is not None:
        return ReportFile(report.filename, content_type, url=url)
    stored = await storage.get(report.storage_key)
    if stored is None:
        raise ReportNotFound("The report's file is gone.")
    return ReportFile(report.filename, content_type, data=stored.data)
