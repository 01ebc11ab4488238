"""Showtimes: scheduling rules, the per-showtime seat inventory, seat maps and seat blocking.

`showtime_seats` is the single source of truth for a seat's state. A 'held' row whose
`held_until` has passed is free for every reader and writer here (`_free`): expiry is a
predicate, not a job.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

from pydantic.alias_generators import to_camel
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    and_,
    case,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.catalog.exceptions import MovieNotFound
from boxoffice.catalog.models import Movie
from boxoffice.catalog.service import get_movie
from boxoffice.core.clock import utcnow
from boxoffice.distribution.service import check_showtime_contract
from boxoffice.scheduling.exceptions import (
    ScreenBusy,
    ScreenChangeNotAllowed,
    SeatsNotBlocked,
    SeatsUnavailable,
    ShowtimeHasSales,
    ShowtimeNotFound,
    StartInPast,
    StartTooFar,
    UnknownSeats,
)
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.venues.models import Screen, Seat, Theater
from boxoffice.venues.service import get_screen, get_theater, list_active_seats

SCHEDULED = "scheduled"
CANCELLED = "cancelled"
# How far ahead a showtime may be scheduled.
MAX_AHEAD = dt.timedelta(days=730)
# UTC offsets run from -12:00 to +14:00: a local calendar day lies inside this UTC window
# around the same UTC day (an hour of slack each side).
_DAY_BEFORE = dt.timedelta(hours=15)
_DAY_AFTER = dt.timedelta(hours=24 + 13)
_FIRST_DAY, _LAST_DAY = dt.date(1970, 1, 1), dt.date(9000, 12, 31)


@dataclass(frozen=True)
class Availability:
    available: int  # sellable now: available, or held with an expired hold
    total: int  # every seat of the showtime that is not blocked


@dataclass(frozen=True)
class ShowtimeInfo:
    showtime: Showtime
    hall_type: str
    available_seats: int
    total_seats: int


@dataclass(frozen=True)
class SeatStateChange:
    showtime_id: uuid.UUID
    seats: list[str]
    status: str


def seat_is_free(now: dt.datetime | ColumnElement[dt.datetime]) -> ColumnElement[bool]:
    """The inventory rows nobody holds or owns at `now` (a time, or a bound parameter)."""
    return or_(
        ShowtimeSeat.status == SeatStatus.AVAILABLE,
        and_(ShowtimeSeat.status == SeatStatus.HELD, ShowtimeSeat.held_until < now),
    )


def _sold(now: dt.datetime) -> ColumnElement[bool]:
    """Rows that stop a showtime from being moved, cancelled or deleted."""
    return or_(
        ShowtimeSeat.booking_id.is_not(None),
        ShowtimeSeat.status == SeatStatus.BOOKED,
        and_(
            ShowtimeSeat.status == SeatStatus.HELD,
            or_(ShowtimeSeat.held_until.is_(None), ShowtimeSeat.held_until >= now),
        ),
    )


def effective_status(status: str, held_until: dt.datetime | None, now: dt.datetime) -> str:
    if status == SeatStatus.HELD and held_until is not None and held_until < now:
        return SeatStatus.AVAILABLE
    return status


# ---------------------------------------------------------------------------------------------
# Showtimes


async def create_showtime(
    session: AsyncSession,
    *,
    movie_id: uuid.UUID,
    screen_id: uuid.UUID,
    start_time: dt.datetime,
    base_price: Decimal,
    format: str = "2D",
    language: str | None = None,
    subtitles: str | None = None,
    now: dt.datetime | None = None,
    require_contract: bool = False,
    actor_id: uuid.UUID | None = None,
) -> Showtime:
    """Schedule a showtime and create its seat inventory (one row per active seat).

    A movie with a rental contract (any movie, with `require_contract`) is scheduled only where
    an active contract covers the show's local date and format (409 `no_valid_contract`)."""
    _check_start(start_time, now or utcnow())
    screen = await _lock_screen(session, screen_id)
    movie = await get_movie(session, movie_id)
    theater = await get_theater(session, screen.theater_id)
    await check_showtime_contract(
        session,
        movie_id=movie.id,
        theater_timezone=theater.timezone,
        start_time=start_time,
        format=format,
        currency=theater.currency,
        required=require_contract,
    )
    showtime = Showtime(
        movie_id=movie.id,
        screen_id=screen.id,
        theater_id=theater.id,
        start_time=start_time,
        end_time=_end_time(start_time, movie, theater),
        base_price=base_price,
        currency=theater.currency,
        format=format,
        language=language,
        subtitles=subtitles,
        status=SCHEDULED,
    )
    await _store_if_screen_free(session, showtime)
    inventory = [
        {"showtime_id": showtime.id, "seat_id": seat.id, "status": SeatStatus.AVAILABLE}
        for seat in await list_active_seats(session, screen.id)
    ]
    if inventory:
        await session.execute(insert(ShowtimeSeat), inventory)  # one executemany
    _audit(
        session,
        "showtime.created",
        showtime,
        actor_id,
        movieId=str(movie.id),
        screenId=str(screen.id),
        startTime=start_time.isoformat(),
        basePrice=str(base_price),
    )
    return showtime


def _audit(
    session: AsyncSession,
    action: str,
    showtime: Showtime,
    actor_id: uuid.UUID | None,
    **data: Any,
) -> None:
    """Staff's schedule changes are audited: who scheduled, moved, repriced or removed a show.
    (Without an actor, e.g. the demo loader, nothing is recorded.)"""
    if actor_id is None:
        return
    audit.record(
        session,
        action,
        entity_type="showtime",
        entity_id=showtime.id,
        actor_kind=ActorKind.STAFF,
        actor_id=actor_id,
        data=data,
    )


async def get_showtime(session: AsyncSession, showtime_id: uuid.UUID) -> Showtime:
    showtime = await session.get(Showtime, showtime_id)
    if showtime is None:
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    return showtime


async def showtime_info(
    session: AsyncSession, showtime_id: uuid.UUID, now: dt.datetime | None = None
) -> ShowtimeInfo:
    """A showtime with its hall type and seat counts (two queries)."""
    row = (await session.execute(_with_hall_type().where(Showtime.id == showtime_id))).first()
    if row is None:
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    infos = await _infos(session, [(row[0], row[1])], now or utcnow())
    return infos[0]


async def list_movie_showtimes(
    session: AsyncSession,
    movie_id: uuid.UUID,
    *,
    day: dt.date | None = None,
    theater_id: uuid.UUID | None = None,
    city_id: uuid.UUID | None = None,
    now: dt.datetime | None = None,
) -> list[ShowtimeInfo]:
    """Scheduled showtimes of a movie by start time: those on `day` (a calendar day in each
    theater's own timezone), or without a day all that have not started yet."""
    now = now or utcnow()
    if await session.scalar(select(Movie.id).where(Movie.id == movie_id)) is None:
        raise MovieNotFound(f"No movie with id {movie_id}.")
    stmt = (
        _with_hall_type()
        .add_columns(Theater.timezone)
        .join(Theater, Theater.id == Showtime.theater_id)
        .where(Showtime.movie_id == movie_id, Showtime.status == SCHEDULED)
        .order_by(Showtime.start_time, Showtime.id)
    )
    if theater_id is not None:
        stmt = stmt.where(Showtime.theater_id == theater_id)
    if city_id is not None:
        stmt = stmt.where(Theater.city_id == city_id)
    if day is None:
        stmt = stmt.where(Showtime.start_time > now)
    else:
        if not _FIRST_DAY <= day <= _LAST_DAY:
            return []
        # Narrow in SQL to the UTC window any timezone's `day` can fall in, then keep the
        # showtimes whose local date (in their theater's timezone) is `day`.
        midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
        stmt = stmt.where(
            Showtime.start_time >= midnight - _DAY_BEFORE,
            Showtime.start_time < midnight + _DAY_AFTER,
        )
    rows = (await session.execute(stmt)).all()
    if day is not None:
        rows = [r for r in rows if r[0].start_time.astimezone(ZoneInfo(r[2])).date() == day]
    return await _infos(session, [(r[0], r[1]) for r in rows], now)


async def list_showtimes(
    session: AsyncSession,
    *,
    offset: int,
    limit: int,
    theater_id: uuid.UUID | None = None,
    screen_id: uuid.UUID | None = None,
    movie_id: uuid.UUID | None = None,
    status: str | None = None,
    start_from: dt.datetime | None = None,
    start_to: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[ShowtimeInfo], int]:
    """A page of showtimes (all statuses unless filtered) by start time, and the total."""
    filters: list[ColumnElement[bool]] = []
    if theater_id is not None:
        filters.append(Showtime.theater_id == theater_id)
    if screen_id is not None:
        filters.append(Showtime.screen_id == screen_id)
    if movie_id is not None:
        filters.append(Showtime.movie_id == movie_id)
    if status is not None:
        filters.append(Showtime.status == status)
    if start_from is not None:
        filters.append(Showtime.start_time >= start_from)
    if start_to is not None:
        filters.append(Showtime.start_time < start_to)
    total = await session.scalar(select(func.count()).select_from(Showtime).where(*filters))
    rows = (
        await session.execute(
            _with_hall_type()
            .where(*filters)
            .order_by(Showtime.start_time, Showtime.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    infos = await _infos(session, [(r[0], r[1]) for r in rows], now or utcnow())
    return infos, total or 0


async def update_showtime(
    session: AsyncSession,
    showtime_id: uuid.UUID,
    changes: dict[str, Any],
    now: dt.datetime | None = None,
    require_contract: bool = False,
    actor_id: uuid.UUID | None = None,
) -> Showtime:
    """Change price, format, languages or status, or move the start on the same screen.

    A showtime with sales can be neither moved nor cancelled here (refunds belong to booking).
    A new start or format, or a restored showtime, is checked against the rental contracts as
    in `create_showtime`.
    """
    now = now or utcnow()
    changes = dict(changes)
    showtime = await _lock_showtime(session, showtime_id)
    screen_id = changes.pop("screen_id", None)
    if screen_id is not None and screen_id != showtime.screen_id:
        raise ScreenChangeNotAllowed("Cancel this showtime and schedule one on the other screen.")

    new_start: dt.datetime | None = changes.pop("start_time", None)
    moving = new_start is not None and new_start != showtime.start_time
    status = changes.get("status", showtime.status)
    cancelling = status == CANCELLED and showtime.status != CANCELLED
    restoring = status == SCHEDULED and showtime.status == CANCELLED
    if moving:
        assert new_start is not None
        _check_start(new_start, now)
    elif restoring and showtime.start_time <= now:
        raise StartInPast("A showtime that has started cannot be rescheduled.")
    if (moving or cancelling) and await _has_sales(session, showtime.id, now):
        raise ShowtimeHasSales("Seats of this showtime are held or sold.")
    new_format = changes.get("format", showtime.format)
    if status == SCHEDULED and (moving or restoring or new_format != showtime.format):
        theater = await get_theater(session, showtime.theater_id)
        await check_showtime_contract(
            session,
            movie_id=showtime.movie_id,
            theater_timezone=theater.timezone,
            start_time=new_start if new_start is not None else showtime.start_time,
            format=new_format,
            currency=showtime.currency,
            required=require_contract,
        )

    if moving:
        assert new_start is not None
        movie = await get_movie(session, showtime.movie_id)
        theater = await get_theater(session, showtime.theater_id)
        showtime.start_time = new_start
        showtime.end_time = _end_time(new_start, movie, theater)
    for name, value in changes.items():
        setattr(showtime, name, value)
    _audit(
        session,
        "showtime.updated",
        showtime,
        actor_id,
        **{to_camel(name): str(value) for name, value in changes.items()},
        **({"startTime": new_start.isoformat()} if moving and new_start else {}),
    )
    if status == SCHEDULED and (moving or restoring):
        await _store_if_screen_free(session, showtime)
    else:
        await session.flush()
    return showtime


async def delete_showtime(
    session: AsyncSession,
    showtime_id: uuid.UUID,
    now: dt.datetime | None = None,
    *,
    actor_id: uuid.UUID | None = None,
) -> None:
    """Delete a showtime without sales, and its inventory."""
    now = now or utcnow()
    showtime = await _lock_showtime(session, showtime_id)
    # Delete the free inventory in one locking statement, so a hold racing with us either
    # commits first (its row stays) or finds its row gone; any row left means sales, and the
    # savepoint puts the deleted rows back.
    async with session.begin_nested():
        await session.execute(
            delete(ShowtimeSeat)
            .where(ShowtimeSeat.showtime_id == showtime.id, not_(_sold(now)))
            .execution_options(synchronize_session=False)
        )
        left = await session.scalar(
            select(func.count())
            .select_from(ShowtimeSeat)
            .where(ShowtimeSeat.showtime_id == showtime.id)
        )
        if left:
            raise ShowtimeHasSales("Seats of this showtime are held or sold.")
        _audit(
            session,
            "showtime.deleted",
            showtime,
            actor_id,
            startTime=showtime.start_time.isoformat(),
            movieId=str(showtime.movie_id),
        )
        await session.delete(showtime)
        await session.flush()


def _check_start(start_time: dt.datetime, now: dt.datetime) -> None:
    if start_time <= now:
        raise StartInPast("The start time must be in the future.")
    if start_time > now + MAX_AHEAD:
        raise StartTooFar(f"Showtimes can be scheduled at most {MAX_AHEAD.days} days ahead.")


def _end_time(start_time: dt.datetime, movie: Movie, theater: Theater) -> dt.datetime:
    minutes = movie.duration_minutes + theater.ads_minutes + theater.cleaning_minutes
    return start_time + dt.timedelta(minutes=minutes)


async def _lock_screen(session: AsyncSession, screen_id: uuid.UUID) -> Screen:
    # The screen row lock serialises everyone scheduling on this screen (and layout changes),
    # so two overlapping showtimes cannot both pass the overlap check (SQLite: writers are
    # serialised already).
    return await get_screen(session, screen_id, for_update=True)


async def _lock_showtime(session: AsyncSession, showtime_id: uuid.UUID) -> Showtime:
    """The showtime, after locking its screen then itself (always in that order)."""
    screen_id = await session.scalar(select(Showtime.screen_id).where(Showtime.id == showtime_id))
    if screen_id is None:
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    await _lock_screen(session, screen_id)
    showtime = await session.scalar(
        select(Showtime)
        .where(Showtime.id == showtime_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if showtime is None:  # deleted while we waited
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    return showtime


async def _store_if_screen_free(session: AsyncSession, showtime: Showtime) -> None:
    """Write the showtime, then 409 if another scheduled one on its screen overlaps it
    (touching is fine); a savepoint undoes the write on a clash.

    The caller holds the screen lock. Writing before the check matters on MySQL: the check is a
    range-locking read, and a transaction that inserted into the showtimes index after taking
    such a range lock could deadlock with one scheduling on the neighbouring screen.
    """
    async with session.begin_nested():
        session.add(showtime)
        await session.flush()
        clash = await session.scalar(
            select(Showtime.id)
            .where(
                Showtime.screen_id == showtime.screen_id,
                Showtime.id != showtime.id,
                Showtime.status != CANCELLED,
                Showtime.start_time < showtime.end_time,
                Showtime.end_time > showtime.start_time,
            )
            .limit(1)
            # A locking read: on MySQL a plain read would use the transaction's snapshot, taken
            # before we waited for the screen lock, and miss a showtime committed meanwhile.
            .with_for_update(read=True)
        )
        if clash is not None:  # raised inside the savepoint, which rolls it back
            raise ScreenBusy(
                f"The screen is busy then with showtime {clash}.", conflictingShowtimeId=str(clash)
            )


async def _has_sales(session: AsyncSession, showtime_id: uuid.UUID, now: dt.datetime) -> bool:
    found = await session.scalar(
        select(ShowtimeSeat.seat_id)
        .where(ShowtimeSeat.showtime_id == showtime_id, _sold(now))
        .limit(1)
    )
    return found is not None


def _with_hall_type() -> Select[Showtime, str]:
    return select(Showtime, Screen.hall_type).join(Screen, Screen.id == Showtime.screen_id)


async def _infos(
    session: AsyncSession, rows: Sequence[tuple[Showtime, str]], now: dt.datetime
) -> list[ShowtimeInfo]:
    counts = await availability(session, [showtime.id for showtime, _ in rows], now)
    none = Availability(0, 0)
    return [
        ShowtimeInfo(
            showtime=showtime,
            hall_type=hall_type,
            available_seats=counts.get(showtime.id, none).available,
            total_seats=counts.get(showtime.id, none).total,
        )
        for showtime, hall_type in rows
    ]


# ---------------------------------------------------------------------------------------------
# Seat inventory


async def availability(
    session: AsyncSession, showtime_ids: Iterable[uuid.UUID], now: dt.datetime | None = None
) -> dict[uuid.UUID, Availability]:
    """Seat counts of many showtimes in one grouped query (no counter rows to contend on)."""
    ids = list(dict.fromkeys(showtime_ids))
    if not ids:
        return {}
    free = func.sum(case((seat_is_free(now or utcnow()), 1), else_=0))
    sellable = func.sum(case((ShowtimeSeat.status != SeatStatus.BLOCKED, 1), else_=0))
    rows = await session.execute(
        select(ShowtimeSeat.showtime_id, free, sellable)
        .where(ShowtimeSeat.showtime_id.in_(ids))
        .group_by(ShowtimeSeat.showtime_id)
    )
    # MySQL sums come back as Decimal; None only for no rows, which GROUP BY never yields.
    return {sid: Availability(int(a or 0), int(t or 0)) for sid, a, t in rows}


async def resolve_labels(
    session: AsyncSession, showtime: Showtime, labels: Iterable[str]
) -> dict[str, uuid.UUID]:
    """Seat ids of the showtime's seats by label, in the order asked (duplicates dropped).

    422 `unknown_seats` naming the labels that are not sellable seats of this showtime's hall.
    """
    wanted = list(dict.fromkeys(labels))
    rows = await session.execute(
        select(Seat.label, Seat.id)
        .join(
            ShowtimeSeat,
            and_(ShowtimeSeat.seat_id == Seat.id, ShowtimeSeat.showtime_id == showtime.id),
        )
        .where(Seat.screen_id == showtime.screen_id, Seat.label.in_(wanted))
    )
    # Compared in Python: MySQL's default collation would match "a1" to "A1".
    found: dict[str, uuid.UUID] = {row.label: row.id for row in rows}
    unknown = [label for label in wanted if label not in found]
    if unknown:
        raise UnknownSeats(f"No such seats in this hall: {', '.join(unknown)}.", seats=unknown)
    return {label: found[label] for label in wanted}


async def block_seats(
    session: AsyncSession,
    showtime_id: uuid.UUID,
    labels: Sequence[str],
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> SeatStateChange:
    """Take free seats out of sale, all or nothing (409 `seats_unavailable` naming the rest)."""
    now = now or utcnow()
    return await _change_all(
        session,
        showtime_id,
        labels,
        only_if=seat_is_free(now),
        values={
            "status": SeatStatus.BLOCKED,
            "blocked_reason": reason,
            "hold_id": None,
            "held_until": None,
            "booking_id": None,
        },
        refused=SeatsUnavailable,
    )


async def unblock_seats(
    session: AsyncSession, showtime_id: uuid.UUID, labels: Sequence[str]
) -> SeatStateChange:
    """Put blocked seats back on sale, all or nothing (409 `seats_not_blocked` naming the rest)."""
    return await _change_all(
        session,
        showtime_id,
        labels,
        only_if=ShowtimeSeat.status == SeatStatus.BLOCKED,
        values={"status": SeatStatus.AVAILABLE, "blocked_reason": None},
        refused=SeatsNotBlocked,
    )


async def _change_all(
    session: AsyncSession,
    showtime_id: uuid.UUID,
    labels: Sequence[str],
    *,
    only_if: ColumnElement[bool],
    values: dict[str, Any],
    refused: type[SeatsUnavailable] | type[SeatsNotBlocked],
) -> SeatStateChange:
    """One conditional UPDATE of the named seats; if it missed any, undo it and name them."""
    showtime = await get_showtime(session, showtime_id)
    seat_ids = await resolve_labels(session, showtime, labels)
    targets = and_(
        ShowtimeSeat.showtime_id == showtime.id,
        ShowtimeSeat.seat_id.in_(sorted(seat_ids.values())),
    )
    savepoint = await session.begin_nested()
    result = await session.execute(
        update(ShowtimeSeat)
        .where(targets, only_if)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != len(seat_ids):
        await savepoint.rollback()
        # A locking read sees the latest rows (MySQL's plain read would use its snapshot).
        fine = set(
            await session.scalars(
                select(ShowtimeSeat.seat_id).where(targets, only_if).with_for_update(read=True)
            )
        )
        names = [label for label, seat_id in seat_ids.items() if seat_id not in fine]
        raise refused(f"Not possible for seats: {', '.join(names)}.", seats=names)
    await savepoint.commit()
    return SeatStateChange(
        showtime_id=showtime.id, seats=list(seat_ids), status=str(values["status"])
    )
