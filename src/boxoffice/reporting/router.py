"""`GET /api/admin/analytics` and the reports (`/api/admin/reports/...`), for operators."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse

from boxoffice.accounts.deps import require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database, SessionDep
from boxoffice.reporting import analytics, service
from boxoffice.reporting.models import Report, ReportStatus
from boxoffice.reporting.schemas import (
    AnalyticsOut,
    ConcessionSalesOut,
    DateFiguresOut,
    PopularMovieOut,
    ReportJobOut,
)

router = APIRouter(prefix="/api/admin", tags=["admin: analytics and reports"])

AnalyticsReader = Annotated[User, Depends(require(Permission.ANALYTICS_READ))]
ReportReader = Annotated[User, Depends(require(Permission.REPORTS_READ))]
DateFrom = Annotated[
    dt.date | None,
    Query(alias="from", description="first local date (default: 29 days before `to`)"),
]
DateTo = Annotated[
    dt.date | None, Query(alias="to", description="last local date, included (default: today)")
]
TheaterId = Annotated[uuid.UUID | None, Query(alias="theaterId")]

DEFAULT_DAYS = 30


def _range(date_from: dt.date | None, date_to: dt.date | None) -> tuple[dt.date, dt.date]:
    for value, name in ((date_from, "from"), (date_to, "to")):
        if value is not None:
            analytics.check_date(value, name)
    end = date_to or (
        date_from + dt.timedelta(days=DEFAULT_DAYS - 1) if date_from else utcnow().date()
    )
    start = date_from or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    return start, end


@router.get("/analytics", response_model=AnalyticsOut, summary="Sales figures of a date range")
async def get_analytics(
    _: AnalyticsReader,
    session: SessionDep,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    theater_id: TheaterId = None,
    top: Annotated[int, Query(ge=1, le=100, description="how many popular movies")] = 10,
) -> AnalyticsOut:
    """Bookings, revenue (net of refunds), occupancy, popular movies, figures per date and
    concession sales of the showtimes whose local show date is in `from`..`to` (inclusive),
    in one theater or all. 422 `invalid_range` (to before from, over two years) and
    `theater_required` (theaters in several currencies, none chosen)."""
    start, end = _range(date_from, date_to)
    scope = await analytics.resolve_scope(session, start, end, theater_id)
    figures = await analytics.analytics(session, scope, top=top)
    return AnalyticsOut(
        date_from=start,
        date_to=end,
        theater_id=theater_id,
        currency=figures.currency,
        total_bookings=figures.total_bookings,
        total_revenue=figures.total_revenue,
        tickets_sold=figures.tickets_sold,
        occupancy_rate=float(figures.occupancy_rate),
        sold_seats=figures.sold_seats,
        sellable_seats=figures.sellable_seats,
        popular_movies=[
            PopularMovieOut(
                movie_id=f.movie_id, title=f.title, tickets_sold=f.tickets, revenue=f.revenue
            )
            for f in figures.popular_movies
        ],
        revenue_by_date=[
            DateFiguresOut(date=date, revenue=d.revenue, tickets=d.tickets, bookings=d.bookings)
            for date, d in figures.revenue_by_date
        ],
        concession_sales=[
            ConcessionSalesOut(
                snack_id=s.snack_id, name=s.name, quantity=s.quantity, revenue=s.revenue
            )
            for s in figures.concession_sales
        ],
        concession_revenue=sum((s.revenue for s in figures.concession_sales), analytics.ZERO),
    )


def _job_out(report: Report) -> ReportJobOut:
    return ReportJobOut(
        report_id=report.id,
        kind=report.kind,
        format=report.format,
        status=report.status,
        created_at=report.created_at,
        finished_at=report.finished_at,
        error=report.error,
        download_url=f"/api/admin/reports/jobs/{report.id}/file"
        if report.status == ReportStatus.READY
        else None,
    )


def _file_answer(file: service.ReportFile) -> Response:
    if file.url is not None:
        return RedirectResponse(file.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    assert file.data is not None
    return Response(
        file.data,
        media_type=file.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{file.filename}"',
            "Cache-Control": "private, no-store",
        },
    )


_FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "content": {content_type: {} for content_type in service.CONTENT_TYPES.values()},
        "description": "The report file (attachment)",
    },
    202: {"model": ReportJobOut, "description": "Large: a job generates it; poll the job"},
}


@router.get(
    "/reports/{kind}",
    response_class=Response,
    responses=_FILE_RESPONSES,
    summary="A report as PDF, XLSX or CSV",
)
async def get_report(
    kind: Literal["revenue", "films", "concessions", "distributors"],
    request: Request,
    user: ReportReader,
    session: SessionDep,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    theater_id: TheaterId = None,
    format: Annotated[Literal["pdf", "xlsx", "csv"], Query()] = "pdf",
) -> Response:
    """Small reports answer the file at once. A report of more than
    `BOXOFFICE_REPORT_INLINE_MAX_ROWS` rows or `BOXOFFICE_REPORT_INLINE_MAX_DAYS` days answers
    202 `{reportId, status: "pending"}`: a job generates it, `GET /api/admin/reports/jobs/{id}`
    tells when it is ready and `.../file` downloads it."""
    start, end = _range(date_from, date_to)
    wanted = service.ReportRequest(kind, format, start, end, theater_id)
    answer = await service.produce(session, request.app.state.settings, wanted)
    if answer is not None:
        return _file_answer(answer)
    database: Database = request.app.state.db
    async with database.session() as writer:  # a GET's own session only reads
        report = await service.defer(writer, wanted, user.id)
    body = _job_out(report).model_dump(mode="json", by_alias=True)
    return JSONResponse(
        body,
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/admin/reports/jobs/{report.id}"},
    )


@router.get(
    "/reports/jobs/{report_id}",
    response_model=ReportJobOut,
    summary="A generated report's status",
)
async def report_job(report_id: uuid.UUID, _: ReportReader, session: SessionDep) -> ReportJobOut:
    return _job_out(await service.get_report(session, report_id))


@router.get(
    "/reports/jobs/{report_id}/file",
    response_class=Response,
    responses={
        200: _FILE_RESPONSES[200],
        307: {"description": "Redirect to a time-limited download URL (S3 storage)"},
        409: {"description": "report_not_ready (pending or failed)"},
    },
    summary="A generated report's file",
)
async def report_job_file(
    report_id: uuid.UUID, request: Request, _: ReportReader, session: SessionDep
) -> Response:
    file = await service.report_file(session, request.app.state.storage, report_id)
    return _file_answer(file)
