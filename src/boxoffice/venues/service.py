"""Venue use cases: cities, theaters, screens and the seats derived from each screen's layout."""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.core.clock import utcnow
from boxoffice.core.errors import NotFound
from boxoffice.core.schema import reject_empty_patch
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.venues.exceptions import (
    CityExists,
    CityInUse,
    InvalidCurrency,
    InvalidTimezone,
    LayoutLocked,
    ScreenInUse,
    ScreenNumberTaken,
    TheaterExists,
    TheaterInUse,
    UnknownCity,
    UnknownTheater,
)
from boxoffice.venues.layout import ParsedLayout, SeatSpec, parse_layout
from boxoffice.venues.models import City, Screen, Seat, Theater
from boxoffice.venues.schemas import (
    CityUpdate,
    HallType,
    LayoutIn,
    ScreenUpdate,
    TheaterUpdate,
)

# Bulk writes skip the ORM's session bookkeeping: nothing in the identity map needs them.
_BULK = {"synchronize_session": False}

# ---------------------------------------------------------------------------------------------
# Validation shared by HTTP and non-HTTP callers (the demo loader passes plain arguments).


@functools.cache
def _timezones() -> dict[str, str]:
    # "localtime" is whatever the host is set to: not a name a theater can rely on.
    return {name.lower(): name for name in zoneinfo.available_timezones() if name != "localtime"}


def check_timezone(name: str) -> str:
    """The canonical IANA name (case-insensitive match), or `InvalidTimezone`."""
    canonical = _timezones().get(name.strip().lower())
    if canonical is None:
        raise InvalidTimezone(
            f"{name[:64]!r} is not an IANA time zone name such as 'Europe/Berlin'."
        )
    return canonical


def check_currency(code: str) -> str:
    value = code.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise InvalidCurrency(f"{code[:8]!r} is not a three-letter ISO 4217 code such as 'EUR'.")
    return value


# ---------------------------------------------------------------------------------------------
# Cities


async def get_city(session: AsyncSession, city_id: uuid.UUID) -> City:
    city = await session.get(City, city_id)
    if city is None:
        raise NotFound("No city with this id.")
    return city


async def list_cities(
    session: AsyncSession, *, offset: int = 0, limit: int = 100
) -> tuple[Sequence[City], int]:
    total = await session.scalar(select(func.count()).select_from(City))
    cities = await session.scalars(
        select(City).order_by(City.name, City.id).offset(offset).limit(limit)
    )
    return cities.all(), total or 0


async def _check_city_name(
    session: AsyncSession, name: str, *, exclude: uuid.UUID | None = None
) -> None:
    # Case-insensitive everywhere (MySQL's collation already is; PostgreSQL's is not).
    query = select(City.id).where(func.lower(City.name) == name.lower())
    if exclude is not None:
        query = query.where(City.id != exclude)
    if await session.scalar(query.limit(1)) is not None:
        raise CityExists(f"A city named {name!r} exists.")


async def create_city(session: AsyncSession, *, name: str, timezone: str) -> City:
    timezone = check_timezone(timezone)
    await _check_city_name(session, name)
    city = City(name=name, timezone=timezone)
    session.add(city)
    await session.flush()
    return city


async def update_city(session: AsyncSession, city_id: uuid.UUID, data: CityUpdate) -> City:
    changes = reject_empty_patch(data.changes())
    city = await get_city(session, city_id)
    if "name" in changes and changes["name"] != city.name:
        await _check_city_name(session, changes["name"], exclude=city.id)
        city.name = changes["name"]
    if "timezone" in changes:
        # Theaters keep their own time zone: it was copied when they were created.
        city.timezone = check_timezone(changes["timezone"])
    await session.flush()
    return city


async def delete_city(session: AsyncSession, city_id: uuid.UUID) -> None:
    city = await get_city(session, city_id)
    has_theaters = await session.scalar(
        select(Theater.id).where(Theater.city_id == city.id).limit(1)
    )
    if has_theaters is not None:
        raise CityInUse("Delete or move the city's theaters first.")
    await session.delete(city)
    await session.flush()


# ---------------------------------------------------------------------------------------------
# Theaters


@dataclass(frozen=True)
class TheaterView:
    theater: Theater
    total_screens: int
    screens: Sequence[Screen] = ()


async def get_theater(session: AsyncSession, theater_id: uuid.UUID) -> Theater:
    theater = await session.get(Theater, theater_id)
    if theater is None:
        raise NotFound("No theater with this id.")
    return theater


async def theater_details(session: AsyncSession, theater_id: uuid.UUID) -> TheaterView:
    """The theater with its screens (ordered by number)."""
    theater = await get_theater(session, theater_id)
    screens = (
        await session.scalars(
            select(Screen).where(Screen.theater_id == theater.id).order_by(Screen.screen_number)
        )
    ).all()
    return TheaterView(theater, len(screens), screens)


async def list_theaters(
    session: AsyncSession,
    *,
    city_id: uuid.UUID | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[TheaterView], int]:
    """One page of theaters by name, each with its number of screens (one grouped query)."""
    conditions = [Theater.city_id == city_id] if city_id is not None else []
    total = await session.scalar(select(func.count()).select_from(Theater).where(*conditions))
    counts = (
        select(Screen.theater_id, func.count().label("screens"))
        .group_by(Screen.theater_id)
        .subquery()
    )
    rows = await session.execute(
        select(Theater, func.coalesce(counts.c.screens, 0))
        .outerjoin(counts, counts.c.theater_id == Theater.id)
        .where(*conditions)
        .order_by(Theater.name, Theater.id)
        .offset(offset)
        .limit(limit)
    )
    return [TheaterView(theater, int(count)) for theater, count in rows], total or 0


async def _check_theater_name(
    session: AsyncSession, city_id: uuid.UUID, name: str, *, exclude: uuid.UUID | None = None
) -> None:
    query = select(Theater.id).where(
        Theater.city_id == city_id, func.lower(Theater.name) == name.lower()
    )
    if exclude is not None:
        query = query.where(Theater.id != exclude)
    if await session.scalar(query.limit(1)) is not None:
        raise TheaterExists(f"The city already has a theater named {name!r}.")


async def _city_for(session: AsyncSession, city_id: uuid.UUID) -> City:
    city = await session.get(City, city_id)
    if city is None:
        raise UnknownCity("cityId names no city.", field="cityId")
    return city


async def create_theater(
    session: AsyncSession,
    *,
    city_id: uuid.UUID,
    name: str,
    currency: str,
    location: str = "",
    timezone: str | None = None,
    ads_minutes: int = 15,
    cleaning_minutes: int = 15,
    vat_rate: Decimal = Decimal("0"),
) -> Theater:
    city = await _city_for(session, city_id)
    theater = Theater(
        city_id=city.id,
        name=name,
        location=location,
        timezone=check_timezone(timezone) if timezone is not None else city.timezone,
        currency=check_currency(currency),
        ads_minutes=ads_minutes,
        cleaning_minutes=cleaning_minutes,
        vat_rate=vat_rate,
    )
    await _check_theater_name(session, city.id, name)
    session.add(theater)
    await session.flush()
    return theater


async def update_theater(
    session: AsyncSession, theater_id: uuid.UUID, data: TheaterUpdate
) -> TheaterView:
    changes = reject_empty_patch(data.changes())
    theater = await get_theater(session, theater_id)
    if "timezone" in changes:
        changes["timezone"] = check_timezone(changes["timezone"])
    if "currency" in changes:
        changes["currency"] = check_currency(changes["currency"])
    if "city_id" in changes:
        await _city_for(session, changes["city_id"])
    city_id = changes.get("city_id", theater.city_id)
    name = changes.get("name", theater.name)
    if (city_id, name) != (theater.city_id, theater.name):
        await _check_theater_name(session, city_id, name, exclude=theater.id)
    for field, value in changes.items():
        setattr(theater, field, value)
    await session.flush()
    return await theater_details(session, theater.id)


async def delete_theater(session: AsyncSession, theater_id: uuid.UUID) -> None:
    theater = await get_theater(session, theater_id)
    has_screens = await session.scalar(
        select(Screen.id).where(Screen.theater_id == theater.id).limit(1)
    )
    if has_screens is not None:
        raise TheaterInUse("Delete the theater's screens first.")
    await session.delete(theater)
    await session.flush()


# ---------------------------------------------------------------------------------------------
# Screens and seats


@dataclass(frozen=True)
class ScreenView:
    screen: Screen
    seats: Sequence[Seat]  # every seat, inactive ones too, by row_index then position


async def get_screen(
    session: AsyncSession, screen_id: uuid.UUID, *, for_update: bool = False
) -> Screen:
    """The screen, or 404. `for_update` locks its row: layout changes take this lock, so
    anything that must not interleave with one (e.g. creating a showtime's inventory) can too."""
    query = select(Screen).where(Screen.id == screen_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    screen = await session.scalar(query)
    if screen is None:
        raise NotFound("No screen with this id.")
    return screen


async def list_active_seats(session: AsyncSession, screen_id: uuid.UUID) -> Sequence[Seat]:
    """The seats that can be sold, front row first, left to right."""
    seats = await session.scalars(
        select(Seat)
        .where(Seat.screen_id == screen_id, Seat.active.is_(True))
        .order_by(Seat.row_index, Seat.position)
    )
    return seats.all()


async def screen_details(session: AsyncSession, screen_id: uuid.UUID) -> ScreenView:
    screen = await get_screen(session, screen_id)
    seats = await session.scalars(
        select(Seat).where(Seat.screen_id == screen.id).order_by(Seat.row_index, Seat.position)
    )
    return ScreenView(screen, seats.all())


async def list_screens(
    session: AsyncSession,
    *,
    theater_id: uuid.UUID | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[Sequence[Screen], int]:
    conditions = [Screen.theater_id == theater_id] if theater_id is not None else []
    total = await session.scalar(select(func.count()).select_from(Screen).where(*conditions))
    screens = await session.scalars(
        select(Screen)
        .where(*conditions)
        .order_by(Screen.theater_id, Screen.screen_number)
        .offset(offset)
        .limit(limit)
    )
    return screens.all(), total or 0


async def _check_screen_number(
    session: AsyncSession, theater_id: uuid.UUID, number: int, *, exclude: uuid.UUID | None = None
) -> None:
    query = select(Screen.id).where(Screen.theater_id == theater_id, Screen.screen_number == number)
    if exclude is not None:
        query = query.where(Screen.id != exclude)
    if await session.scalar(query.limit(1)) is not None:
        raise ScreenNumberTaken(f"The theater already has a screen number {number}.")


async def create_screen(
    session: AsyncSession,
    *,
    theater_id: uuid.UUID,
    screen_number: int,
    name: str,
    hall_type: HallType | str,
    layout: LayoutIn | Mapping[str, Any],
) -> Screen:
    """A screen and its seats (inserted in one executemany). Raises `InvalidLayout` (422)."""
    parsed = parse_layout(layout)
    if await session.get(Theater, theater_id) is None:
        raise UnknownTheater("theaterId names no theater.", field="theaterId")
    await _check_screen_number(session, theater_id, screen_number)
    screen = Screen(
        theater_id=theater_id,
        screen_number=screen_number,
        name=name,
        hall_type=HallType(hall_type).value,
        layout=parsed.layout,
        capacity=parsed.capacity,
    )
    session.add(screen)
    await session.flush()
    await _insert_seats(session, screen.id, parsed.seats)
    return screen


async def update_screen(
    session: AsyncSession, screen_id: uuid.UUID, data: ScreenUpdate
) -> ScreenView:
    changes = reject_empty_patch(data.changes())
    parsed = parse_layout(data.layout) if data.layout is not None else None
    # The lock serialises layout changes with each other and with anyone who locks the screen.
    screen = await get_screen(session, screen_id, for_update=True)
    if "screen_number" in changes and changes["screen_number"] != screen.screen_number:
        await _check_screen_number(
            session, screen.theater_id, changes["screen_number"], exclude=screen.id
        )
        screen.screen_number = changes["screen_number"]
    if "name" in changes:
        screen.name = changes["name"]
    if "hall_type" in changes:
        screen.hall_type = HallType(changes["hall_type"]).value
    # An unchanged layout (a form sent back whole) is no change, even once seats are sold.
    if parsed is not None and parsed.layout != screen.layout:
        await _replace_layout(session, screen, parsed)
    await session.flush()
    return await screen_details(session, screen.id)


async def delete_screen(session: AsyncSession, screen_id: uuid.UUID) -> None:
    screen = await get_screen(session, screen_id, for_update=True)
    has_showtimes = await session.scalar(
        select(Showtime.id).where(Showtime.screen_id == screen.id).limit(1)
    )
    if has_showtimes is not None:
        raise ScreenInUse("The screen has showtimes; it cannot be deleted.")
    await session.execute(delete(Seat).where(Seat.screen_id == screen.id), execution_options=_BULK)
    await session.delete(screen)
    await session.flush()


async def _insert_seats(
    session: AsyncSession, screen_id: uuid.UUID, seats: Sequence[SeatSpec]
) -> list[dict[str, Any]]:
    rows = [
        {
            "id": uuid.uuid4(),
            "screen_id": screen_id,
            "row_label": seat.row_label,
            "number": seat.number,
            "label": seat.label,
            "seat_class": seat.seat_class,
            "row_index": seat.row_index,
            "position": seat.position,
            "active": seat.active,
        }
        for seat in seats
    ]
    await session.execute(insert(Seat), rows)
    return rows


def _sold(now: dt.datetime) -> ColumnElement[bool]:
    """An inventory row that belongs to a customer: booked, in a booking, or held and alive."""
    return or_(
        ShowtimeSeat.status == SeatStatus.BOOKED,
        ShowtimeSeat.booking_id.is_not(None),
        and_(
            ShowtimeSeat.status == SeatStatus.HELD,
            or_(ShowtimeSeat.held_until.is_(None), ShowtimeSeat.held_until > now),
        ),
    )


async def _replace_layout(session: AsyncSession, screen: Screen, parsed: ParsedLayout) -> None:
    """New seats for a locked screen; its showtimes' inventory is rebuilt for them.

    Refused (409 layout_locked) once any of its showtimes has a sold or held seat.
    """
    showtime_ids = (
        await session.scalars(select(Showtime.id).where(Showtime.screen_id == screen.id))
    ).all()
    blocked: dict[tuple[uuid.UUID, str], str | None] = {}
    if showtime_ids:
        of_screen = ShowtimeSeat.showtime_id.in_(
            select(Showtime.id).where(Showtime.screen_id == screen.id)
        )
        # Operator blocks (broken seat, camera position) carry over to seats that keep their label.
        rows = await session.execute(
            select(ShowtimeSeat.showtime_id, Seat.label, ShowtimeSeat.blocked_reason)
            .join(Seat, Seat.id == ShowtimeSeat.seat_id)
            .where(of_screen, ShowtimeSeat.status == SeatStatus.BLOCKED)
        )
        blocked = {(showtime_id, label): reason for showtime_id, label, reason in rows}
        # Delete the unsold rows, then look for survivors. Unlike a check-then-delete this is
        # race-free: a hold committed meanwhile makes its row fail the re-checked condition
        # (PostgreSQL, InnoDB locking reads), so it survives and is found below.
        await session.execute(
            delete(ShowtimeSeat).where(of_screen, not_(_sold(utcnow()))), execution_options=_BULK
        )
        survivor = await session.scalar(select(ShowtimeSeat.seat_id).where(of_screen).limit(1))
        if survivor is not None:
            raise LayoutLocked(
                "Seats of this screen's showtimes are sold or held; its layout can no longer "
                "change."
            )
    await session.execute(delete(Seat).where(Seat.screen_id == screen.id), execution_options=_BULK)
    seats = await _insert_seats(session, screen.id, parsed.seats)
    if showtime_ids:
        inventory = [
            {
                "showtime_id": showtime_id,
                "seat_id": seat["id"],
                "status": SeatStatus.BLOCKED
                if (showtime_id, seat["label"]) in blocked
                else SeatStatus.AVAILABLE,
                "blocked_reason": blocked.get((showtime_id, seat["label"])),
            }
            for showtime_id in showtime_ids
            for seat in seats
            if seat["active"]
        ]
        await session.execute(insert(ShowtimeSeat), inventory)
    screen.layout = parsed.layout
    screen.capacity = parsed.capacity
    # New seat rows even if the layout reads the same: cached seat maps key on this.
    screen.updated_at = utcnow()
