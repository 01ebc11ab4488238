"""Sales figures computed by the database: every query here is one GROUP BY.

**Which sales count.** A booking counts on the *show date* of its showtime (the start, in the
theater's timezone), like a box office gross and a distributor's settlement. Bookings that
were paid (`confirmed`, `used`) count as bookings; tickets are the `booked` rows of
`showtime_seats` (exactly the unrefunded seats of paid bookings); revenue is what was paid
minus what was refunded, so a fully refunded booking (`refunded`) still adds the cancellation
fee it kept.

**Dates.** `from` and `to` are local dates, both included. Each theater's day boundaries are
turned into UTC instants in Python (`zoneinfo`), so the database filters on
`(theater_id = t AND start_time >= a AND start_time < b) OR ...` with the index on
(theater_id, start_time). Per-date figures are grouped in SQL by (theater, quarter hour of the
start in UTC) — portable, where `timezone()` exists on PostgreSQL only — and these few rows
are folded into local dates in Python: every zone's offset is a whole number of quarter
hours, so a quarter hour lies in one local date.

**Currencies.** Amounts are only added up within one currency: when the theaters in scope sell
in several, the caller must choose a theater (422 `theater_required`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    false,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.catalog.models import Movie
from boxoffice.concessions.models import BookingSnack
from boxoffice.core.clock import utcnow
from boxoffice.reporting.exceptions import InvalidRange, TheaterRequired
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.venues.models import Theater

MAX_RANGE_DAYS = 731  # two years
EARLIEST, LATEST = dt.date(1970, 1, 1), dt.date(2999, 12, 31)
PAID = (BookingStatus.CONFIRMED, BookingStatus.USED)
WITH_MONEY = (*PAID, BookingStatus.REFUNDED)  # a full refund may have kept a fee
QUARTER_HOUR = 900  # seconds
ZERO = Decimal("0.00")
CANCELLED = "cancelled"  # a showtime's status


@dataclass(frozen=True)
class Scope:
    """A range of local dates over some theaters, with each theater's UTC window."""

    date_from: dt.date
    date_to: dt.date
    theaters: dict[uuid.UUID, tuple[str, str, str]]  # id -> (name, timezone, currency)
    currency: str | None

    @property
    def days(self) -> int:
        return (self.date_to - self.date_from).days + 1

    def window(self, theater_id: uuid.UUID) -> tuple[dt.datetime, dt.datetime]:
        zone = ZoneInfo(self.theaters[theater_id][1])
        start = dt.datetime.combine(self.date_from, dt.time(), zone).astimezone(dt.UTC)
        end = dt.datetime.combine(self.date_to + dt.timedelta(days=1), dt.time(), zone)
        return start, end.astimezone(dt.UTC)

    def showtimes(self) -> ColumnElement[bool]:
        """Showtimes of the scope's theaters starting within the range (local dates)."""
        clauses = []
        for theater_id in self.theaters:
            start, end = self.window(theater_id)
            clauses.append(
                and_(
                    Showtime.theater_id == theater_id,
                    Showtime.start_time >= start,
                    Showtime.start_time < end,
                )
            )
        return or_(*clauses) if clauses else false()


def check_date(value: dt.date, name: str) -> dt.date:
    """422 for dates no cinema sells for (and whose arithmetic would overflow)."""
    if not EARLIEST <= value <= LATEST:
        raise InvalidRange(
            f"`{name}` must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}.",
            field=name,
        )
    return value


def check_range(date_from: dt.date, date_to: dt.date, max_days: int = MAX_RANGE_DAYS) -> None:
    check_date(date_from, "from")
    check_date(date_to, "to")
    if date_to < date_from:
        raise InvalidRange("`to` is before `from`.", field="to")
    if (date_to - date_from).days + 1 > max_days:
        raise InvalidRange(f"The range may cover at most {max_days} days.", field="to")


async def resolve_scope(
    session: AsyncSession,
    date_from: dt.date,
    date_to: dt.date,
    theater_id: uuid.UUID | None,
    *,
    single_currency: bool = True,
) -> Scope:
    """The theaters in scope (one, or all); 422 for a bad range, an unknown theater, or
    several currencies without a theater when `single_currency`."""
    check_range(date_from, date_to)
    query = select(Theater.id, Theater.name, Theater.timezone, Theater.currency)
    if theater_id is not None:
        query = query.where(Theater.id == theater_id)
    rows = (await session.execute(query)).all()
    if theater_id is not None and not rows:
        raise InvalidRange("No such theater.", field="theaterId")
    theaters = {row.id: (row.name, row.timezone, row.currency) for row in rows}
    currencies = {row.currency for row in rows}
    if single_currency and len(currencies) > 1:
        raise TheaterRequired(
            "The theaters sell in several currencies: choose one with `theaterId`.",
            currencies=sorted(currencies),
        )
    return Scope(date_from, date_to, theaters, currencies.pop() if len(currencies) == 1 else None)


def _quarter_hour(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    """Quarter hours since the epoch of a UTC timestamp column, in SQL."""
    # Constants are literal SQL, not parameters: the GROUP BY must repeat the SELECT's
    # expression exactly (PostgreSQL compares them with their parameter numbers).
    dialect = session.get_bind().dialect.name
    quarter: ColumnElement[Any] = literal_column(str(QUARTER_HOUR))
    if dialect == "postgresql":
        return func.floor(func.extract("epoch", column) / quarter)
    if dialect == "sqlite":  # naive UTC text; integer division (no floor() without math)
        seconds = cast(func.strftime(literal_column("'%s'"), column), Integer)
        return seconds.op("/")(quarter)
    # MariaDB/MySQL: naive UTC DATETIME; TIMESTAMPDIFF ignores the session time zone
    # (UNIX_TIMESTAMP would not).
    minutes = func.timestampdiff(
        literal_column("MINUTE"), literal_column("'1970-01-01 00:00:00'"), column
    )
    return func.floor(minutes / literal_column("15"))


def _local_date(scope: Scope, theater_id: uuid.UUID, bucket: Any) -> dt.date:
    moment = dt.datetime.fromtimestamp(int(bucket) * QUARTER_HOUR, dt.UTC)
    return moment.astimezone(ZoneInfo(scope.theaters[theater_id][1])).date()


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(Decimal("0.01"))


# ---------------------------------------------------------------------------------------------
# Aggregates


@dataclass
class DayFigures:
    bookings: int = 0
    tickets: int = 0
    revenue: Decimal = ZERO
    sold_seats: int = 0  # of the showtimes that have started
    sellable_seats: int = 0


def _seats_per_showtime(scope: Scope, *, booked_only: bool = False) -> Any:
    """A subquery: per showtime of the scope, its booked and sellable (not blocked) seats.

    Booked inventory rows are exactly the unrefunded seats of paid bookings (`showtime_seats`
    is the seat's single source of truth), so tickets are counted from one table rather than
    by joining booking lines to bookings. Counting per showtime first keeps the per-row work
    to a comparison; the outer query then groups a few thousand showtimes."""
    booked = ShowtimeSeat.status == SeatStatus.BOOKED
    query = (
        select(
            ShowtimeSeat.showtime_id.label("showtime_id"),
            func.sum(case((booked, 1), else_=0)).label("booked"),
            func.sum(case((ShowtimeSeat.status != SeatStatus.BLOCKED, 1), else_=0)).label(
                "sellable"
            ),
        )
        .join(Showtime, Showtime.id == ShowtimeSeat.showtime_id)
        .where(scope.showtimes(), Showtime.status != CANCELLED)
        .group_by(ShowtimeSeat.showtime_id)
    )
    if booked_only:
        query = query.where(booked)
    return query.subquery("seat_counts")


def _seat_totals(
    seats: Any, now: dt.datetime
) -> tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]:
    """Tickets, and booked and sellable seats of the showtimes that have started."""
    started = Showtime.start_time <= now
    return (
        func.sum(seats.c.booked),
        func.sum(case((started, seats.c.booked), else_=0)),
        func.sum(case((started, seats.c.sellable), else_=0)),
    )


async def by_theater_and_date(
    session: AsyncSession, scope: Scope
) -> dict[tuple[uuid.UUID, dt.date], DayFigures]:
    """Bookings, net revenue, tickets and seats per (theater, local show date): two grouped
    queries (bookings; seat inventory) whose (theater, quarter hour) rows fold into dates."""
    bucket = _quarter_hour(session, Showtime.start_time).label("bucket")
    money_rows = await session.execute(
        select(
            Showtime.theater_id,
            bucket,
            func.count(case((Booking.status.in_(PAID), Booking.id))),
            func.sum(Booking.final_amount - Booking.refunded_amount),
        )
        .join(Showtime, Showtime.id == Booking.showtime_id)
        .where(scope.showtimes(), Booking.status.in_(WITH_MONEY))
        .group_by(Showtime.theater_id, bucket)
    )
    figures: dict[tuple[uuid.UUID, dt.date], DayFigures] = defaultdict(DayFigures)
    for theater_id, quarter, bookings, revenue in money_rows:
        day = figures[(theater_id, _local_date(scope, theater_id, quarter))]
        day.bookings += int(bookings or 0)
        day.revenue += _money(revenue)
    per_showtime = _seats_per_showtime(scope)
    seat_rows = await session.execute(
        select(Showtime.theater_id, bucket, *_seat_totals(per_showtime, utcnow()))
        .join(per_showtime, per_showtime.c.showtime_id == Showtime.id)
        .group_by(Showtime.theater_id, bucket)
    )
    for theater_id, quarter, tickets, sold, sellable in seat_rows:
        day = figures[(theater_id, _local_date(scope, theater_id, quarter))]
        day.tickets += int(tickets or 0)
        day.sold_seats += int(sold or 0)
        day.sellable_seats += int(sellable or 0)
    return dict(figures)


@dataclass
class FilmFigures:
    movie_id: uuid.UUID
    title: str
    showtimes: int = 0
    tickets: int = 0
    revenue: Decimal = ZERO
    sold_seats: int = 0  # of the showtimes that have started
    sellable_seats: int = 0

    @property
    def occupancy(self) -> Decimal:
        return occupancy(self.sold_seats, self.sellable_seats)


def occupancy(sold: int, sellable: int) -> Decimal:
    if not sellable:
        return Decimal("0.0000")
    return (Decimal(sold) / Decimal(sellable)).quantize(Decimal("0.0001"))


async def by_film(
    session: AsyncSession, scope: Scope, *, with_seats: bool = True
) -> list[FilmFigures]:
    """Per movie: showtimes, tickets, net revenue and (`with_seats`) the seats of its started
    showtimes; most tickets first. Without seats only booked rows are read."""
    films: dict[uuid.UUID, FilmFigures] = {}

    def film(movie_id: uuid.UUID, title: str) -> FilmFigures:
        return films.setdefault(movie_id, FilmFigures(movie_id, title))

    shows = await session.execute(
        select(Movie.id, Movie.title, func.count(Showtime.id))
        .join(Showtime, Showtime.movie_id == Movie.id)
        .where(scope.showtimes(), Showtime.status != CANCELLED)
        .group_by(Movie.id, Movie.title)
    )
    for movie_id, title, count in shows:
        film(movie_id, title).showtimes = int(count)
    money = await session.execute(
        select(Movie.id, Movie.title, func.sum(Booking.final_amount - Booking.refunded_amount))
        .join(Showtime, Showtime.id == Booking.showtime_id)
        .join(Movie, Movie.id == Showtime.movie_id)
        .where(scope.showtimes(), Booking.status.in_(WITH_MONEY))
        .group_by(Movie.id, Movie.title)
    )
    for movie_id, title, revenue in money:
        film(movie_id, title).revenue = _money(revenue)
    per_showtime = _seats_per_showtime(scope, booked_only=not with_seats)
    seats = (
        select(Movie.id, Movie.title, *_seat_totals(per_showtime, utcnow()))
        .select_from(Showtime)
        .join(per_showtime, per_showtime.c.showtime_id == Showtime.id)
        .join(Movie, Movie.id == Showtime.movie_id)
        .group_by(Movie.id, Movie.title)
    )
    for movie_id, title, tickets, sold, sellable in await session.execute(seats):
        entry = film(movie_id, title)
        entry.tickets = int(tickets or 0)
        if with_seats:
            entry.sold_seats, entry.sellable_seats = int(sold or 0), int(sellable or 0)
    return sorted(films.values(), key=lambda f: (-f.tickets, -f.revenue, f.title))


@dataclass
class SnackFigures:
    snack_id: uuid.UUID
    name: str
    quantity: int
    revenue: Decimal


async def by_snack(session: AsyncSession, scope: Scope) -> list[SnackFigures]:
    """Snacks sold with paid bookings of the scope's showtimes (a full refund gives them
    back); most revenue first."""
    rows = await session.execute(
        select(
            BookingSnack.snack_id,
            func.min(BookingSnack.name),
            func.sum(BookingSnack.quantity),
            func.sum(BookingSnack.total_price),
        )
        .join(Booking, Booking.id == BookingSnack.booking_id)
        .join(Showtime, Showtime.id == Booking.showtime_id)
        .where(scope.showtimes(), Booking.status.in_(PAID))
        .group_by(BookingSnack.snack_id)
    )
    snacks = [
        SnackFigures(snack_id, name, int(quantity or 0), _money(revenue))
        for snack_id, name, quantity, revenue in rows
    ]
    return sorted(snacks, key=lambda s: (-s.revenue, s.name))


# ---------------------------------------------------------------------------------------------
# The dashboard


@dataclass
class Analytics:
    currency: str | None
    total_bookings: int
    total_revenue: Decimal
    tickets_sold: int
    sold_seats: int
    sellable_seats: int
    popular_movies: list[FilmFigures]
    revenue_by_date: list[tuple[dt.date, DayFigures]]
    concession_sales: list[SnackFigures] = field(default_factory=list)

    @property
    def occupancy_rate(self) -> Decimal:
        return occupancy(self.sold_seats, self.sellable_seats)


def per_date(
    figures: dict[tuple[uuid.UUID, dt.date], DayFigures], scope: Scope
) -> list[tuple[dt.date, DayFigures]]:
    """Every date of the range (zeros included), summed over theaters."""
    days = {scope.date_from + dt.timedelta(days=n): DayFigures() for n in range(scope.days)}
    for (_, date), day in figures.items():
        total = days.get(date)
        if total is None:  # cannot happen: the window is exact
            continue
        total.bookings += day.bookings
        total.tickets += day.tickets
        total.revenue += day.revenue
        total.sold_seats += day.sold_seats
        total.sellable_seats += day.sellable_seats
    return sorted(days.items())


async def analytics(session: AsyncSession, scope: Scope, *, top: int = 10) -> Analytics:
    daily = await by_theater_and_date(session, scope)
    dates = per_date(daily, scope)
    films = await by_film(session, scope, with_seats=False)
    sold = sum(day.sold_seats for _, day in dates)
    sellable = sum(day.sellable_seats for _, day in dates)
    return Analytics(
        currency=scope.currency,
        total_bookings=sum(day.bookings for _, day in dates),
        total_revenue=sum((day.revenue for _, day in dates), ZERO),
        tickets_sold=sum(day.tickets for _, day in dates),
        sold_seats=sold,
        sellable_seats=sellable,
        popular_movies=[f for f in films if f.tickets > 0][:top],
        revenue_by_date=dates,
        concession_sales=await by_snack(session, scope),
    )
