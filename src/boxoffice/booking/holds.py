"""Seat holds: all or nothing, one conditional UPDATE on the showtime's seat inventory.

A hold is a `holds` row (its id is the customer's lockToken) plus the inventory rows it holds.
The UPDATE only takes rows that are free *now* (available, or held with `held_until` in the
past), so two customers can never hold one seat, whatever the timing: PostgreSQL and MariaDB
re-check the condition on the locked row, SQLite runs one writer at a time.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Executable,
    Integer,
    Update,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import User
from boxoffice.accounts.service import (
    check_may_book,
    email_not_verified,
    invalid_token,
    signed_in_user,
    token_is_current,
)
from boxoffice.booking import holds_postgres, holds_sqlite
from boxoffice.booking.best_available import SeatView, choose_seats
from boxoffice.booking.exceptions import (
    ExtensionLimit,
    HoldAlreadyBooked,
    HoldExpired,
    HoldLimit,
    HoldNotFound,
    NoSeatsAvailable,
    ShowtimeClosed,
    TooManySeats,
)
from boxoffice.booking.models import Hold, HoldStatus
from boxoffice.booking.verdicts import STAFF_ROLES, HoldRequest, ReleaseVerdict
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database
from boxoffice.core.security import AccessClaims
from boxoffice.scheduling.exceptions import SeatsUnavailable, ShowtimeNotFound, UnknownSeats
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.scheduling.service import get_showtime, resolve_labels, seat_is_free
from boxoffice.venues.models import Seat

MAX_EXTENSIONS = 2
# A hold never lives longer than this many TTLs in total, however often it is extended.
MAX_LIFETIME_TTLS = 3
BEST_AVAILABLE_ATTEMPTS = 5


def check_open_for_sale(showtime: Showtime, settings: Settings, now: dt.datetime) -> None:
    _check_open(showtime.status, showtime.start_time, settings, now)


def _check_open(status: str, start_time: dt.datetime, settings: Settings, now: dt.datetime) -> None:
    if status != "scheduled":
        raise ShowtimeClosed("This showtime was cancelled.")
    closes = start_time - dt.timedelta(minutes=settings.sales_close_minutes)
    if now >= closes:
        raise ShowtimeClosed("Sales for this showtime are closed.", closedAt=closes.isoformat())


async def lock_seat_rows(
    session: AsyncSession,
    showtime_ids: Collection[uuid.UUID],
    *,
    seat_ids: Collection[uuid.UUID] = (),
    hold_ids: Collection[uuid.UUID] = (),
    booking_ids: Collection[uuid.UUID] = (),
) -> None:
    """Lock the inventory rows an UPDATE is about to change, in (showtime, seat) order.

    PostgreSQL's UPDATE locks rows in the order its plan reads them (often the physical
    order, which changes as rows are rewritten), not in the order of its IN list, so
    overlapping holds deadlocked under load. Writers that lock their rows here first, all in
    one order, cannot deadlock over seats. MySQL's UPDATE already locks in primary-key order
    (and a locking read there would wait for every row of the showtime it scans); SQLite has
    one writer at a time.
    """
    which = [
        column.in_(list(ids))
        for column, ids in (
            (ShowtimeSeat.seat_id, seat_ids),
            (ShowtimeSeat.hold_id, hold_ids),
            (ShowtimeSeat.booking_id, booking_ids),
        )
        if ids
    ]
    if not which or session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(
        select(ShowtimeSeat.seat_id)
        .where(ShowtimeSeat.showtime_id.in_(list(showtime_ids)), or_(*which))
        .order_by(ShowtimeSeat.showtime_id, ShowtimeSeat.seat_id)
        .with_for_update()
    )


class SeatRowsUpdate:
    """An UPDATE of one showtime's inventory rows, with their row locks taken in seat order
    (see `lock_seat_rows`), built once per dialect from expressions with bound parameters:
    building the PostgreSQL form for each call cost ~0.4 ms of CPU, twice a purchase.

    `which` picks the rows, `condition` says which of them may change, `values` what they
    become; `run` gives their parameters and the showtime's id and answers the number of
    rows changed. With `all_or_none`, nothing changes unless `condition` holds for `expected`
    rows. On PostgreSQL one statement locks, judges and writes (a materialized CTE locks in
    seat order; a row changed while we waited is judged in its committed version). Elsewhere
    it is a conditional UPDATE, and `all_or_none` answers None for a partial change, which
    the caller undoes itself."""

    def __init__(
        self,
        which: ColumnElement[bool],
        condition: ColumnElement[bool],
        values: dict[str, Any],
        *,
        all_or_none: bool = False,
    ) -> None:
        self._which = which
        self._condition = condition
        self._values = values
        self._all_or_none = all_or_none
        self._built: dict[str, Executable] = {}

    async def run(self, session: AsyncSession, showtime_id: uuid.UUID, **params: Any) -> int | None:
        dialect = session.get_bind().dialect.name
        statement = self._built.get(dialect)
        if statement is None:
            statement = self._built[dialect] = self._build(dialect == "postgresql")
        result = await session.execute(
            statement,
            {"the_showtime": showtime_id, **params},
            execution_options={"synchronize_session": False},
        )
        changed: int = result.rowcount  # type: ignore[attr-defined]
        if dialect != "postgresql" and self._all_or_none and changed != params["expected"]:
            return None
        return changed

    def postgresql_cte(self, name: str, expected: ColumnElement[int] | None = None) -> CTE:
        """PostgreSQL: the update as a CTE of a larger statement, returning the seat ids it
        changed (the same parameters as `run`, `the_showtime` among them). With `all_or_none`,
        `expected` may be an expression of that statement instead of the `expected` parameter."""
        statement = cast(Update, self._build(postgresql=True, expected=expected))
        return statement.returning(ShowtimeSeat.seat_id).cte(name)

    def _build(self, postgresql: bool, expected: ColumnElement[int] | None = None) -> Executable:
        showtime = ShowtimeSeat.showtime_id == bindparam("the_showtime")
        if not postgresql:
            return (
                update(ShowtimeSeat)
                .where(showtime, self._which, self._condition)
                .values(**self._values)
            )
        locked = (
            select(ShowtimeSeat.seat_id, self._condition.label("ok"))
            .where(showtime, self._which)
            .order_by(ShowtimeSeat.seat_id)
            .with_for_update()
            .cte("locked")
            .prefix_with("MATERIALIZED")
        )
        statement = (
            update(ShowtimeSeat)
            .where(showtime, ShowtimeSeat.seat_id == locked.c.seat_id, locked.c.ok)
            .values(**self._values)
        )
        if self._all_or_none:
            ready = select(func.count()).select_from(locked).where(locked.c.ok).scalar_subquery()
            if expected is None:
                expected = bindparam("expected", type_=Integer)
            statement = statement.where(ready == expected)
        return statement


def _cap_of(settings: Settings, user: User) -> int:
    """The customer's cap on live held seats over all showtimes; 0 for none (staff, or
    BOXOFFICE_MAX_HELD_SEATS_PER_CUSTOMER=0)."""
    return 0 if user.role in STAFF_ROLES else settings.max_held_seats_per_customer


async def _take_turn(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Concurrent holds of one capped customer take turns: lock the customer's row before
    counting their holds, so that the count (a later statement, a fresh snapshot under READ
    COMMITTED) sees every hold made before. It is a no-op UPDATE, not a locking read, because
    PostgreSQL's one-statement hold (`holds_postgres`) notices a concurrent hold by the new
    row version it leaves. SQLite writers take turns already (one write turn)."""
    if session.get_bind().dialect.name == "sqlite":
        return
    await session.execute(
        update(User).where(User.id == user_id).values(is_active=User.is_active),
        execution_options={"synchronize_session": False},
    )


async def _customer_holds(
    session: AsyncSession, user_id: uuid.UUID, showtime_id: uuid.UUID, now: dt.datetime, cap: int
) -> tuple[list[uuid.UUID], int]:
    """The customer's live holds on this showtime (the new hold replaces them) and, with a
    cap, the seats they hold live on the others; one statement."""
    query = select(Hold.id, Hold.showtime_id, Hold.seat_labels).where(
        Hold.user_id == user_id, Hold.status == HoldStatus.ACTIVE
    )
    here = Hold.showtime_id == showtime_id
    rows = (
        await session.execute(query.where(or_(here, Hold.expires_at > now) if cap else here))
    ).all()
    old = [row.id for row in rows if row.showtime_id == showtime_id]
    held = sum(len(row.seat_labels) for row in rows if row.showtime_id != showtime_id)
    return old, held


def check_hold_limit(cap: int, held: int, count: int) -> None:
    """Anti-hoarding: at most `cap` live held seats per customer over all showtimes."""
    if cap and held + count > cap:
        raise HoldLimit(
            f"You may hold at most {cap} seats at a time over all showtimes; you hold {held} "
            "on other showtimes. Book or release some first.",
            limit=cap,
            held=held,
        )


def _check_count(settings: Settings, count: int) -> None:
    if count > settings.max_seats_per_hold:
        raise TooManySeats(
            f"At most {settings.max_seats_per_hold} seats per hold.",
            maxSeats=settings.max_seats_per_hold,
        )


async def _release_user_holds(
    session: AsyncSession, showtime_id: uuid.UUID, old: Sequence[uuid.UUID]
) -> None:
    """One live hold per customer and showtime: a new hold replaces the old one. The caller
    has locked the old holds' rows."""
    if old:
        await _free_rows(session, showtime_id, list(old))
        await session.execute(
            update(Hold).where(Hold.id.in_(old)).values(status=HoldStatus.RELEASED),
            execution_options={"synchronize_session": False},
        )


async def _free_rows(
    session: AsyncSession, showtime_id: uuid.UUID, hold_ids: Sequence[uuid.UUID]
) -> None:
    await session.execute(
        update(ShowtimeSeat)
        .where(
            ShowtimeSeat.showtime_id == showtime_id,
            ShowtimeSeat.hold_id.in_(hold_ids),
            ShowtimeSeat.status == SeatStatus.HELD,
            ShowtimeSeat.booking_id.is_(None),
        )
        .values(status=SeatStatus.AVAILABLE, hold_id=None, held_until=None),
        execution_options={"synchronize_session": False},
    )


async def _take_seats(
    session: AsyncSession,
    showtime_id: uuid.UUID,
    hold: Hold,
    seats: dict[str, uuid.UUID],
    now: dt.datetime,
) -> None:
    """The conditional UPDATE; raises `SeatsUnavailable` naming the seats that were taken.

    The caller has locked the rows (`lock_seat_rows`). On failure the caller's transaction or
    savepoint must be rolled back (some rows may have been taken).
    """
    seat_ids = sorted(seats.values())
    result = await session.execute(
        update(ShowtimeSeat)
        .where(
            ShowtimeSeat.showtime_id == showtime_id,
            ShowtimeSeat.seat_id.in_(seat_ids),
            seat_is_free(now),
        )
        .values(
            status=SeatStatus.HELD, hold_id=hold.id, held_until=hold.expires_at, booking_id=None
        ),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount == len(seat_ids):  # type: ignore[attr-defined]
        return
    ours = set(
        (
            await session.scalars(
                select(ShowtimeSeat.seat_id).where(
                    ShowtimeSeat.showtime_id == showtime_id,
                    ShowtimeSeat.seat_id.in_(seat_ids),
                    ShowtimeSeat.hold_id == hold.id,
                )
            )
        ).all()
    )
    taken = [label for label, seat_id in seats.items() if seat_id not in ours]
    raise SeatsUnavailable(f"Not available any more: {', '.join(taken)}.", seats=taken)


@dataclass(frozen=True, slots=True)
class GrantedHold:
    """A hold as its answer shows it, from the paths that write its row in SQL (PostgreSQL's
    statement, SQLite's transaction): building an ORM object only to answer cost ~5% of a
    hold's CPU."""

    id: uuid.UUID
    showtime_id: uuid.UUID
    seat_labels: list[str]
    expires_at: dt.datetime
    extensions: int = 0


def _new_hold(
    settings: Settings, user_id: uuid.UUID, showtime_id: uuid.UUID, labels: list[str]
) -> Hold:
    # Computed after the connection is in use (earlier statements ran), so a hold is never
    # granted already expired because it waited for a connection.
    now = utcnow()
    return Hold(
        id=uuid.uuid4(),
        showtime_id=showtime_id,
        user_id=user_id,
        status=HoldStatus.ACTIVE,
        seat_labels=labels,
        created_at=now,
        expires_at=_expiry(settings, now),
        extensions=0,
    )


def _expiry(settings: Settings, granted_at: dt.datetime) -> dt.datetime:
    return granted_at + dt.timedelta(seconds=settings.hold_ttl)


async def lock_seats(
    database: Database,
    settings: Settings,
    claims: AccessClaims,
    showtime_id: uuid.UUID,
    labels: Sequence[str],
) -> Hold | GrantedHold:
    """Hold exactly these seats for the customer (whose token's signature was valid: the
    account, and the token against it, are checked here), replacing the customer's previous
    hold on the showtime. One unit of work: PostgreSQL's one statement in autocommit, or one
    write session."""
    wanted = list(dict.fromkeys(labels))
    _check_count(settings, len(wanted))
    if database.backend == "postgresql":
        return await _lock_seats_at_once(database, None, settings, claims, showtime_id, wanted)
    async with database.sqlite_write_turn() as sqlite:
        if sqlite is not None:
            return await _lock_seats_at_once(
                database, sqlite, settings, claims, showtime_id, wanted
            )
    async with database.session() as session:  # MariaDB
        return await _lock_seats_generic(session, settings, claims, showtime_id, wanted)


async def _lock_seats_generic(
    session: AsyncSession,
    settings: Settings,
    claims: AccessClaims,
    showtime_id: uuid.UUID,
    wanted: list[str],
) -> Hold:
    # MariaDB here (PostgreSQL always holds in one statement). With a cap, the customer's row
    # is read locked first, so their holds take turns and the count below (a later statement,
    # READ COMMITTED) sees every hold made before (see `_take_turn`).
    user_id = claims.user_id
    user = await session.scalar(
        select(User).where(User.id == user_id).with_for_update()
        if settings.max_held_seats_per_customer
        else select(User).where(User.id == user_id)
    )
    if user is None or not user.is_active or not token_is_current(user, claims):
        raise invalid_token()
    check_may_book(user, settings)
    now = utcnow()
    showtime = await get_showtime(session, showtime_id)
    check_open_for_sale(showtime, settings, now)
    seats = await resolve_labels(session, showtime, wanted)
    cap = _cap_of(settings, user)
    old, held = await _customer_holds(session, user_id, showtime.id, now, cap)
    check_hold_limit(cap, held, len(wanted))
    await lock_seat_rows(session, [showtime.id], seat_ids=seats.values(), hold_ids=old)
    await _release_user_holds(session, showtime.id, old)
    hold = _new_hold(settings, user_id, showtime.id, wanted)
    session.add(hold)
    await session.flush()
    await _take_seats(session, showtime.id, hold, seats, now)
    return hold


async def _lock_seats_at_once(
    database: Database,
    sqlite: sqlite3.Connection | None,
    settings: Settings,
    claims: AccessClaims,
    showtime_id: uuid.UUID,
    wanted: list[str],
) -> GrantedHold:
    """`lock_seats` in one PostgreSQL statement or one synchronous SQLite transaction: it
    changes nothing unless every rule holds, and tells which one failed; the errors are the
    generic path's, in its order."""
    now = utcnow()  # as in _new_hold
    hold = GrantedHold(uuid.uuid4(), showtime_id, wanted, _expiry(settings, now))
    request = HoldRequest(
        hold_id=hold.id,
        user_id=claims.user_id,
        showtime_id=showtime_id,
        labels=wanted,
        now=now,
        expires=hold.expires_at,
        closes_after=now + dt.timedelta(minutes=settings.sales_close_minutes),
        need_verified=settings.require_verified_email,
        max_held=settings.max_held_seats_per_customer,
        token_issued_at=claims.issued_at,
    )
    if sqlite is not None:  # inside the write turn
        verdict = holds_sqlite.hold(sqlite, request)
    else:
        verdict = await holds_postgres.hold(database, request)
        if verdict.raced:  # rare: the same customer held elsewhere meanwhile
            verdict = await holds_postgres.hold(database, request, locked=True)
            if verdict.raced:
                raise RuntimeError("the customer's row changed while it was locked")
    if verdict.done:
        return hold
    if not verdict.customer_known:
        raise invalid_token()
    if settings.require_verified_email and not verdict.customer_verified:
        raise email_not_verified()
    if verdict.showtime_status is None or verdict.starts is None:
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    _check_open(verdict.showtime_status, verdict.starts, settings, now)
    unknown = [label for label in wanted if label not in verdict.known_labels]
    if unknown:
        raise UnknownSeats(f"No such seats in this hall: {', '.join(unknown)}.", seats=unknown)
    if verdict.limited:
        check_hold_limit(request.max_held, verdict.held_elsewhere, len(wanted))
    taken = [label for label in wanted if label in verdict.taken_labels] or wanted
    raise SeatsUnavailable(f"Not available any more: {', '.join(taken)}.", seats=taken)


async def _seat_views(
    session: AsyncSession,
    showtime_id: uuid.UUID,
    now: dt.datetime,
    yours: Collection[uuid.UUID] = (),
) -> list[SeatView]:
    """The showtime's seats for best available; seats of `yours` (the caller's holds, about
    to be replaced) count as free."""
    rows = await session.execute(
        select(
            Seat.id,
            Seat.label,
            Seat.row_label,
            Seat.row_index,
            Seat.position,
            Seat.seat_class,
            ShowtimeSeat.status,
            ShowtimeSeat.held_until,
            ShowtimeSeat.hold_id,
            ShowtimeSeat.booking_id,
        )
        .join(ShowtimeSeat, ShowtimeSeat.seat_id == Seat.id)
        .where(ShowtimeSeat.showtime_id == showtime_id)
    )
    return [
        SeatView(
            seat_id=row.id,
            label=row.label,
            row_label=row.row_label,
            row_index=row.row_index,
            position=row.position,
            seat_class=row.seat_class,
            free=row.status == SeatStatus.AVAILABLE
            or (
                row.status == SeatStatus.HELD
                and (
                    (row.held_until is not None and row.held_until < now)
                    or (row.hold_id in yours and row.booking_id is None)
                )
            ),
        )
        for row in rows
    ]


async def lock_best(
    session: AsyncSession,
    settings: Settings,
    user: User,
    showtime_id: uuid.UUID,
    quantity: int,
    seat_class: str | None,
) -> Hold:
    """Hold the best adjacent block; on a conflict (someone was faster) try the next best."""
    user_id = user.id
    now = utcnow()
    _check_count(settings, quantity)
    showtime = await get_showtime(session, showtime_id)
    check_open_for_sale(showtime, settings, now)
    cap = _cap_of(settings, user)
    if cap:
        await _take_turn(session, user_id)
    old, held = await _customer_holds(session, user_id, showtime.id, now, cap)
    check_hold_limit(cap, held, quantity)
    # Seats the caller's old hold gives back count as free for the new choice.
    candidates = choose_seats(
        await _seat_views(session, showtime.id, now, yours=old),
        quantity,
        seat_class=seat_class,
        limit=BEST_AVAILABLE_ATTEMPTS,
    )
    # Every row this may change is locked in one go (in order), not block by block: a lock
    # taken after others were held could close a deadlock with another customer's hold.
    await lock_seat_rows(
        session,
        [showtime.id],
        seat_ids={seat.seat_id for block in candidates for seat in block},
        hold_ids=old,
    )
    await _release_user_holds(session, showtime.id, old)
    for block in candidates:
        labels = [seat.label for seat in block]
        hold = _new_hold(settings, user_id, showtime.id, labels)
        try:
            async with session.begin_nested():
                session.add(hold)
                await session.flush()
                await _take_seats(
                    session, showtime.id, hold, {s.label: s.seat_id for s in block}, now
                )
        except SeatsUnavailable:
            continue
        return hold
    raise NoSeatsAvailable(
        f"No {quantity} adjacent seats{f' of class {seat_class}' if seat_class else ''} are free.",
        quantity=quantity,
    )


async def _own_hold(
    session: AsyncSession, user_id: uuid.UUID, token: uuid.UUID, *, for_update: bool = False
) -> Hold:
    query = select(Hold).where(Hold.id == token)
    if for_update:
        query = query.with_for_update()
    hold = await session.scalar(query)
    if hold is None or hold.user_id != user_id:
        raise HoldNotFound("No such hold.")
    return hold


async def extend(
    session: AsyncSession, settings: Settings, user_id: uuid.UUID, token: uuid.UUID
) -> Hold:
    """Push the expiry by another TTL, a bounded number of times and up to a total lifetime."""
    hold = await _own_hold(session, user_id, token, for_update=True)
    now = utcnow()
    if hold.status == HoldStatus.CONVERTED:
        raise HoldAlreadyBooked("This hold is part of a booking now; pay the booking instead.")
    if hold.status != HoldStatus.ACTIVE or hold.expires_at <= now:
        raise HoldExpired("The hold has expired; hold the seats again.")
    if hold.extensions >= MAX_EXTENSIONS:
        raise ExtensionLimit(f"A hold can be extended {MAX_EXTENSIONS} times.")
    ttl = dt.timedelta(seconds=settings.hold_ttl)
    expires = min(now + ttl, hold.created_at + MAX_LIFETIME_TTLS * ttl)
    if expires <= hold.expires_at:
        raise ExtensionLimit("The hold has reached its longest lifetime.")
    await lock_seat_rows(session, [hold.showtime_id], hold_ids=[hold.id])
    result = await session.execute(
        update(ShowtimeSeat)
        .where(
            ShowtimeSeat.showtime_id == hold.showtime_id,
            ShowtimeSeat.hold_id == hold.id,
            ShowtimeSeat.status == SeatStatus.HELD,
            ShowtimeSeat.held_until > now,
        )
        .values(held_until=expires),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != len(hold.seat_labels):  # type: ignore[attr-defined]
        raise HoldExpired("The hold has expired; hold the seats again.")
    hold.expires_at = expires
    hold.extensions += 1
    return hold


async def release(database: Database, claims: AccessClaims, token: uuid.UUID) -> None:
    """Give the seats back at once. Releasing twice is fine; a booked hold is not released.
    One unit of work, as `lock_seats` (which checks the account and token the same way)."""
    user_id, issued_at = claims.user_id, claims.issued_at
    if database.backend == "postgresql":
        _judge_release(
            await holds_postgres.release(
                database, hold_id=token, user_id=user_id, token_issued_at=issued_at
            )
        )
        return
    async with database.sqlite_write_turn() as sqlite:
        if sqlite is not None:
            _judge_release(
                holds_sqlite.release(
                    sqlite, hold_id=token, user_id=user_id, token_issued_at=issued_at
                )
            )
            return
    async with database.session() as session:  # MariaDB
        await _release_generic(session, claims, token)


def _judge_release(verdict: ReleaseVerdict) -> None:
    if not verdict.customer_active:
        raise invalid_token()
    if not verdict.found:
        raise HoldNotFound("No such hold.")
    if verdict.status == HoldStatus.CONVERTED:
        raise HoldAlreadyBooked("This hold is part of a booking; cancel the booking instead.")


async def _release_generic(session: AsyncSession, claims: AccessClaims, token: uuid.UUID) -> None:
    await signed_in_user(session, claims)
    hold = await _own_hold(session, claims.user_id, token, for_update=True)
    if hold.status == HoldStatus.CONVERTED:
        raise HoldAlreadyBooked("This hold is part of a booking; cancel the booking instead.")
    if hold.status == HoldStatus.ACTIVE:
        await lock_seat_rows(session, [hold.showtime_id], hold_ids=[hold.id])
        await _free_rows(session, hold.showtime_id, [hold.id])
        hold.status = HoldStatus.RELEASED


def extensions_left(hold: Hold | GrantedHold) -> int:
    return max(0, MAX_EXTENSIONS - hold.extensions)
