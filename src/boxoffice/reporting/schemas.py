"""Analytics and report answers (camelCase on the wire)."""

from __future__ import annotations

import datetime as dt
import uuid

from boxoffice.core.schema import CamelModel, Money


class PopularMovieOut(CamelModel):
    movie_id: uuid.UUID
    title: str
    tickets_sold: int
    revenue: Money


class DateFiguresOut(CamelModel):
    date: dt.date
    revenue: Money
    tickets: int
    bookings: int


class ConcessionSalesOut(CamelModel):
    snack_id: uuid.UUID
    name: str
    quantity: int
    revenue: Money


class AnalyticsOut(CamelModel):
    date_from: dt.date
    date_to: dt.date
    theater_id: uuid.UUID | None
    currency: str | None  # None only when nothing is in scope
    total_bookings: int
    total_revenue: Money
    tickets_sold: int
    occupancy_rate: float  # sold / sellable seats of the range's showtimes that have started
    sold_seats: int
    sellable_seats: int
    popular_movies: list[PopularMovieOut]
    revenue_by_date: list[DateFiguresOut]
    concession_sales: list[ConcessionSalesOut]
    concession_revenue: Money


class ReportJobOut(CamelModel):
    report_id: uuid.UUID
    kind: str
    format: str
    status: str  # pending | ready | failed
    created_at: dt.datetime
    finished_at: dt.datetime | None = None
    error: str | None = None
    download_url: str | None = None  # the API path of the file, once ready
