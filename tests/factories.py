"""Test data: rows inserted straight through the models (venues, movies) for test setup."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.booking.models import Booking, BookingLine, BookingStatus
from boxoffice.catalog.models import Movie
from boxoffice.scheduling.models import Showtime, ShowtimeSeat
from boxoffice.scheduling.service import create_showtime
from boxoffice.tickets.models import Ticket
from boxoffice.tickets.service import issue_tickets
from boxoffice.venues.models import City, Screen, Seat, Theater

INACTIVE = "inactive"  # in `make_screen(classes=...)`: the seat exists but is never sold


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def row_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (as the venues layout names rows)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


async def make_city(
    session: AsyncSession, *, name: str | None = None, timezone: str = "Europe/Berlin"
) -> City:
    city = City(name=name or f"City {_suffix()}", timezone=timezone)
    session.add(city)
    await session.flush()
    return city


async def make_theater(
    session: AsyncSession,
    city: City,
    *,
    name: str | None = None,
    timezone: str | None = None,
    currency: str = "EUR",
    ads_minutes: int = 15,
    cleaning_minutes: int = 15,
) -> Theater:
    theater = Theater(
        city_id=city.id,
        name=name or f"Theater {_suffix()}",
        timezone=timezone or city.timezone,
        currency=currency,
        ads_minutes=ads_minutes,
        cleaning_minutes=cleaning_minutes,
    )
    session.add(theater)
    await session.flush()
    return theater


async def make_screen(
    session: AsyncSession,
    theater: Theater,
    *,
    rows: int = 5,
    seats_per_row: int = 8,
    hall_type: str = "STANDARD",
    classes: Mapping[str, str] | None = None,
    screen_number: int | None = None,
) -> Screen:
    """A rows x seats_per_row hall with seats A1.. ; `classes` maps labels to a seat class or
    to "inactive"."""
    classes = classes or {}
    layout_rows: list[dict[str, Any]] = []
    seats: list[Seat] = []
    for row_index in range(rows):
        row = row_letter(row_index)
        layout_seats = []
        for number in range(1, seats_per_row + 1):
            label = f"{row}{number}"
            wanted = classes.get(label, "standard")
            active = wanted != INACTIVE
            seat_class = "standard" if not active else wanted
            layout_seats.append(
                {"number": number, "class": seat_class, "position": number, "active": active}
            )
            seats.append(
                Seat(
                    row_label=row,
                    number=number,
                    label=label,
                    seat_class=seat_class,
                    row_index=row_index,
                    position=number,
                    active=active,
                )
            )
        layout_rows.append({"row": row, "seats": layout_seats})
    screen = Screen(
        theater_id=theater.id,
        screen_number=screen_number or await _next_screen_number(session, theater),
        name=f"Screen {_suffix()}",
        hall_type=hall_type,
        layout={"rows": layout_rows},
        capacity=sum(seat.active for seat in seats),
    )
    session.add(screen)
    await session.flush()
    for seat in seats:
        seat.screen_id = screen.id
    session.add_all(seats)
    await session.flush()
    return screen


async def _next_screen_number(session: AsyncSession, theater: Theater) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Screen).where(Screen.theater_id == theater.id)
    )
    return (count or 0) + 1


async def make_movie(
    session: AsyncSession,
    *,
    duration: int = 120,
    title: str | None = None,
    status: str = "now_showing",
) -> Movie:
    title = title or f"Movie {_suffix()}"
    movie = Movie(
        title=title,
        duration_minutes=duration,
        status=status,
        release_date=dt.date(2025, 1, 1),
        search_text=title.lower(),
    )
    session.add(movie)
    await session.flush()
    return movie


async def make_showtime(
    session: AsyncSession,
    screen: Screen,
    movie: Movie,
    *,
    start_time: dt.datetime | None = None,
    base_price: Decimal = Decimal("10.00"),
) -> Showtime:
    """A showtime with its seat inventory, through the scheduling service."""
    start = start_time or dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3)
    return await create_showtime(
        session, movie_id=movie.id, screen_id=screen.id, start_time=start, base_price=base_price
    )


async def seed_venue(
    app: FastAPI,
    *,
    timezone: str = "Europe/Berlin",
    currency: str = "EUR",
    hall_type: str = "STANDARD",
    rows: int = 5,
    seats_per_row: int = 8,
    classes: Mapping[str, str] | None = None,
    duration: int = 120,
) -> SimpleNamespace:
    """One city, theater, screen and movie; their ids as `city_id`, `theater_id`, `screen_id`,
    `movie_id`."""
    async with app.state.db.session() as session:
        city = await make_city(session, timezone=timezone)
        theater = await make_theater(session, city, currency=currency)
        screen = await make_screen(
            session,
            theater,
            rows=rows,
            seats_per_row=seats_per_row,
            hall_type=hall_type,
            classes=classes,
        )
        movie = await make_movie(session, duration=duration)
        return SimpleNamespace(
            city_id=city.id, theater_id=theater.id, screen_id=screen.id, movie_id=movie.id
        )


async def set_seat_state(
    app: FastAPI,
    showtime_id: uuid.UUID | str,
    label: str,
    status: str,
    *,
    held_until: dt.datetime | None = None,
    booking_id: uuid.UUID | None = None,
) -> None:
    """Put one inventory row into a state directly (a hold, a sale) for tests."""
    async with app.state.db.session() as session:
        showtime = await session.get(Showtime, uuid.UUID(str(showtime_id)))
        assert showtime is not None
        seat_id = await session.scalar(
            select(Seat.id).where(Seat.screen_id == showtime.screen_id, Seat.label == label)
        )
        assert seat_id is not None, label
        await session.execute(
            update(ShowtimeSeat)
            .where(ShowtimeSeat.showtime_id == showtime.id, ShowtimeSeat.seat_id == seat_id)
            .values(
                status=status,
                held_until=held_until,
                hold_id=uuid.uuid4() if status == "held" else None,
                booking_id=booking_id,
            )
        )


async def make_confirmed_booking(
    session: AsyncSession,
    user_id: uuid.UUID,
    showtime_id: uuid.UUID,
    labels: list[str],
) -> tuple[Booking, list[Ticket]]:
    """A paid booking of these seats, as confirmation leaves it: booking confirmed, lines at
    the showtime's base price, inventory rows booked, one ticket per seat (issued through the
    tickets service)."""
    showtime = await session.get(Showtime, showtime_id)
    assert showtime is not None
    seats = {
        seat.label: seat
        for seat in await session.scalars(
            select(Seat).where(Seat.screen_id == showtime.screen_id, Seat.label.in_(labels))
        )
    }
    assert set(seats) == set(labels), f"unknown seats: {set(labels) - set(seats)}"
    total = showtime.base_price * len(labels)
    now = dt.datetime.now(dt.UTC)
    booking = Booking(
        reference=uuid.uuid4().hex[:10].upper(),
        user_id=user_id,
        showtime_id=showtime.id,
        status=BookingStatus.CONFIRMED,
        currency=showtime.currency,
        total_amount=total,
        final_amount=total,
        expires_at=now + dt.timedelta(minutes=15),
        confirmed_at=now,
    )
    session.add(booking)
    await session.flush()
    lines = [
        BookingLine(
            booking_id=booking.id,
            seat_id=seats[label].id,
            seat_label=label,
            seat_class=seats[label].seat_class,
            unit_price=showtime.base_price,
        )
        for label in labels
    ]
    session.add_all(lines)
    await session.flush()
    await session.execute(
        update(ShowtimeSeat)
        .where(
            ShowtimeSeat.showtime_id == showtime.id,
            ShowtimeSeat.seat_id.in_([seat.id for seat in seats.values()]),
        )
        .values(status="booked", booking_id=booking.id, hold_id=None, held_until=None)
    )
    tickets = await issue_tickets(session, booking, lines)
    return booking, tickets


async def seed_confirmed_booking(
    app: FastAPI,
    user_id: uuid.UUID,
    labels: list[str],
    *,
    start_time: dt.datetime | None = None,
    **venue_options: Any,
) -> SimpleNamespace:
    """A venue (`venue_options` go to `seed_venue`), a showtime (default: in 3 days) and a paid
    booking of `labels` for the user. Ids as `city_id`, `theater_id`, `screen_id`, `movie_id`,
    `showtime_id`, `booking_id` and `ticket_ids` (in the order of `labels`)."""
    venue = await seed_venue(app, **venue_options)
    async with app.state.db.session() as session:
        screen = await session.get(Screen, venue.screen_id)
        movie = await session.get(Movie, venue.movie_id)
        assert screen is not None
        assert movie is not None
        showtime = await make_showtime(session, screen, movie, start_time=start_time)
        booking, tickets = await make_confirmed_booking(session, user_id, showtime.id, labels)
    return SimpleNamespace(
        **vars(venue),
        showtime_id=showtime.id,
        booking_id=booking.id,
        ticket_ids=[ticket.id for ticket in tickets],
    )


async def make_pending_booking(
    session: AsyncSession,
    user_id: uuid.UUID,
    showtime_id: uuid.UUID,
    labels: list[str],
    amount: Decimal,
    *,
    expires_in: dt.timedelta = dt.timedelta(minutes=15),
) -> Booking:
    """A pending booking of `labels` (its lines share `amount`) whose seats are held for it
    until its deadline (`expires_in` may be negative: already past it), as the booking flow
    leaves it before payment."""
    showtime = await session.get(Showtime, showtime_id)
    assert showtime is not None
    seats = (
        await session.scalars(
            select(Seat).where(Seat.screen_id == showtime.screen_id, Seat.label.in_(labels))
        )
    ).all()
    assert len(seats) == len(labels), labels
    booking = Booking(
        reference=uuid.uuid4().hex[:10].upper(),
        user_id=user_id,
        showtime_id=showtime_id,
        currency=showtime.currency,
        total_amount=amount,
        discount_amount=Decimal("0.00"),
        final_amount=amount,
        refunded_amount=Decimal("0.00"),
        expires_at=dt.datetime.now(dt.UTC) + expires_in,
    )
    session.add(booking)
    await session.flush()
    share = (amount / len(seats)).quantize(Decimal("0.01"))
    for index, seat in enumerate(sorted(seats, key=lambda s: s.label)):
        price = amount - share * (len(seats) - 1) if index == 0 else share
        session.add(
            BookingLine(
                booking_id=booking.id,
                seat_id=seat.id,
                seat_label=seat.label,
                seat_class=seat.seat_class,
                unit_price=price,
            )
        )
    await session.execute(
        update(ShowtimeSeat)
        .where(
            ShowtimeSeat.showtime_id == showtime_id,
            ShowtimeSeat.seat_id.in_([seat.id for seat in seats]),
        )
        .values(status="held", booking_id=booking.id, held_until=booking.expires_at)
    )
    await session.flush()
    return booking
