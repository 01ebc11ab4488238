"""The seat map: the hottest read of an onsale, rendered from a cached layout and one query.

A showtime's seats, classes and positions change only when the showtime or its screen is
edited. Each process keeps them rendered as JSON fragments, keyed by what they are made of
(showtime and screen `updated_at`, base price, hall type). A request asks the database only
for each seat's state, as one character per seat in seat-id order, and splices them into the
fragments:

* PostgreSQL: one statement, one row (the head, `string_agg` of the states and, for a
  signed-in caller, whether their account may read as them);
* SQLite (a file): the caller's account, the head, then one short row per seat, on the plain
  sqlite3 connection;
* MariaDB: the caller's account, the head, then one short row per seat, in a reader session.

Prices come from the pricing rules (`pricing.service.PricingBasis`: the showtime, its theater
and the rules that may apply), which the head does not cover. Reading them on every request
would add a statement joining the rules to the hottest read, so each layout keeps its basis for
`price_cache_seconds` (default 5) and re-reads it sooner when a rule changed in this process
(`pricing.service.rules_version`). The trade-off: a rule changed through another process, or
a theater's city or timezone change, shows on this process's maps up to that long later. Only
the map is cached: booking prices every seat fresh (`pricing.service.showtime_prices`), so
what a customer pays always follows the current rules. Occupancy rules need no query: the
occupancy comes from the same state characters the map is made of.

Building the same answer through the ORM and pydantic cost about 7 ms of CPU per 300-seat
map; this costs a fraction of one. The JSON is exactly what `SeatMapOut` documents (a test
compares the two).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import sqlite3
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Uuid, and_, bindparam, case, select
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.service import (
    TOKEN_IS_CURRENT_SQLITE,
    invalid_token,
    signed_in_user,
    sqlite_issued_at,
    token_is_current_sql,
)
from boxoffice.booking.models import Hold, HoldStatus
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database, UTCDateTime, sqlite_time
from boxoffice.core.security import AccessClaims
from boxoffice.pricing import service as pricing
from boxoffice.pricing.rules import occupancy
from boxoffice.scheduling.exceptions import ShowtimeNotFound
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.venues.models import Screen, Seat

CACHED_SHOWTIMES = 512

# One character per seat state ("m": held by the asking customer): its status and heldByYou.
_STATES = {
    "a": ("available", False),
    "h": ("held", False),
    "m": ("held", True),
    "b": ("booked", False),
    "x": ("blocked", False),
}


Prices = tuple[Decimal, ...]  # by class index of a layout
# By class index, then state character: the bytes from the status to the end of a seat.
Endings = list[dict[str, bytes]]


@dataclass
class _Priced:
    """A layout's prices: the pricing basis as read at `version`, until `expires` (monotonic
    clock), and the endings rendered for the last occupancy asked about."""

    basis: pricing.PricingBasis
    version: int
    expires: float
    refreshing: bool = False
    occupancy: Fraction | None = None
    prices: Prices = ()
    endings: Endings = field(default_factory=list)


@dataclass(frozen=True)
class _Layout:
    key: Hashable
    head: bytes  # '{"showtimeId":..,"rows":['
    # Per row: its opening bytes and its seats' indexes into `seats`.
    rows: list[tuple[bytes, list[int]]]
    # Per seat in seat-id order (the order of the state characters): the bytes before the
    # status, and the index of its class in `classes` (the price goes with the status).
    seats: list[tuple[bytes, int]]
    classes: tuple[str, ...]
    seat_ids: list[uuid.UUID]  # in the same order
    id_set: frozenset[uuid.UUID]
    # The last answer and the states and prices it was made from: a map is a pure function of
    # them, and between two writes to a showtime every reader asks for the same one.
    last: list[tuple[str, Prices, bytes]] = field(default_factory=list)
    priced: list[_Priced] = field(default_factory=list)  # none yet, or one


class SeatMapRenderer:
    """Renders seat maps; one per app (process), holding the layouts of recent showtimes."""

    def __init__(self, capacity: int = CACHED_SHOWTIMES) -> None:
        self._layouts: OrderedDict[uuid.UUID, _Layout] = OrderedDict()
        self._loading: dict[uuid.UUID, asyncio.Lock] = {}
        self._capacity = capacity

    @staticmethod
    def _fits(
        layout: _Layout | None, head: tuple[Any, ...], states: str | dict[uuid.UUID, str]
    ) -> bool:
        """The cached layout is the showtime's current one (same key, same seats)."""
        return (
            layout is not None
            and layout.key == head
            and len(layout.seats) == len(states)
            and (not isinstance(states, dict) or states.keys() == layout.id_set)
        )

    async def render(
        self,
        database: Database,
        showtime_id: uuid.UUID,
        caller: AccessClaims | None = None,
        now: dt.datetime | None = None,
        *,
        price_cache_seconds: float = 5.0,
    ) -> bytes:
        """The seat map as JSON bytes; for a signed-in `caller` (verified claims), their held
        seats say `heldByYou`. Rule prices are reused for `price_cache_seconds` (see the
        module docstring). Raises `ShowtimeNotFound`, and first `invalid_token` (401) when the
        caller's account is gone or inactive or the token is from before a password change or
        a "sign out everywhere" (as `accounts.service.signed_in_user`).

        The renderer opens what it reads with: the account and the states need one statement on
        the hot pool on PostgreSQL (`Database.driver`; no session: ~0.15 ms of a map's ~0.9 ms
        of CPU; a session to read the account first doubled a signed-in map's), the plain
        connection on a SQLite file; a reader session only when a layout or a pricing basis
        must be loaded."""
        now = now or utcnow()
        head, states = await _head_and_states(database, showtime_id, caller, now)
        layout = self._layouts.get(showtime_id)
        if not self._fits(layout, head, states):
            # An onsale opens with many requests for a showtime nobody has asked for yet:
            # one of them loads its layout, the others wait for it.
            async with self._loading.setdefault(showtime_id, asyncio.Lock()):
                layout = self._layouts.get(showtime_id)
                if not self._fits(layout, head, states):
                    async with database.session(write=False) as session:
                        layout = await _load_layout(session, showtime_id, head)
                    self._layouts[showtime_id] = layout
                    if len(self._layouts) > self._capacity:
                        self._layouts.popitem(last=False)
            self._loading.pop(showtime_id, None)
        else:
            self._layouts.move_to_end(showtime_id)
        assert layout is not None
        if isinstance(states, dict):
            states = "".join(states[seat_id] for seat_id in layout.seat_ids)
        priced = await self._priced(database, showtime_id, layout, price_cache_seconds)
        prices, endings = _prices_at(priced, layout, states)
        if layout.last and layout.last[0][0] == states and layout.last[0][1] == prices:
            return layout.last[0][2]
        body = _splice(layout, states, endings)
        layout.last[:] = [(states, prices, body)]
        return body

    @staticmethod
    async def _priced(
        database: Database, showtime_id: uuid.UUID, layout: _Layout, ttl: float
    ) -> _Priced:
        """The layout's pricing basis, read again when it expired or rules changed. While one
        request re-reads it, the others keep using the previous one."""
        version = pricing.rules_version()  # before reading: a change during the read counts
        clock = time.monotonic()
        current = layout.priced[0] if layout.priced else None
        if current is not None and (
            current.refreshing or (current.version == version and clock < current.expires)
        ):
            return current
        if current is not None:
            current.refreshing = True
        try:
            async with database.session(write=False) as session:
                basis = await pricing.pricing_basis(session, showtime_id)
        finally:
            if current is not None:
                current.refreshing = False
        fresh = _Priced(basis=basis, version=version, expires=clock + ttl)
        layout.priced[:] = [fresh]
        return fresh


# The statements are built once, with bound parameters: building and hashing an expression
# tree of this size on every request cost more CPU than running it.
_NOW = bindparam("now", type_=UTCDateTime())
_USER = bindparam("user_id", type_=Uuid())
_SHOWTIME = bindparam("showtime_id", type_=Uuid())


def _state_code() -> ColumnElement[str]:
    held = ShowtimeSeat.status == SeatStatus.HELD
    return case(
        (and_(held, ShowtimeSeat.held_until < _NOW), "a"),  # a lapsed hold frees its seat
        (and_(held, Hold.id.is_not(None)), "m"),
        (held, "h"),
        (ShowtimeSeat.status == SeatStatus.BOOKED, "b"),
        (ShowtimeSeat.status == SeatStatus.BLOCKED, "x"),
        else_="a",
    )


def _with_holds_of_user(query: Any) -> Any:
    # With no user the join matches nothing (user_id = NULL): one statement for both.
    return query.outerjoin(
        Hold,
        and_(
            Hold.id == ShowtimeSeat.hold_id,
            Hold.user_id == _USER,
            Hold.status.in_([HoldStatus.ACTIVE, HoldStatus.CONVERTED]),
        ),
    )


_HEAD = (
    select(
        Showtime.screen_id,
        Showtime.base_price,
        Showtime.currency,
        Showtime.updated_at,
        Screen.hall_type,
        Screen.updated_at,
    )
    .join(Screen, Screen.id == Showtime.screen_id)
    .where(Showtime.id == _SHOWTIME)
)
# PostgreSQL: the head, the states (as `_state_code`) in seat-id order, and whether the caller
# may read as themselves (`accounts.service.signed_in_user`'s conditions; NULL for no caller),
# in one row, which comes even for an unknown showtime: the account is judged first. The
# caller's holds are found by (user, showtime) once, not joined per seat: the generic plan of a
# join scanned the whole holds table (7 ms at 18,000 holds instead of 0.4 ms).
_HEAD_AND_STATES_SQL = f"""
SELECT st.screen_id, st.base_price, st.currency, st.updated_at, sc.hall_type, sc.updated_at,
       (SELECT string_agg(
                   CASE WHEN ss.status = 'held' AND ss.held_until < $3 THEN 'a'
                        WHEN ss.status = 'held' AND ss.hold_id = ANY(ARRAY(
                            SELECT h.id FROM holds h WHERE h.user_id = $2
                              AND h.showtime_id = $1 AND h.status IN ('active', 'converted')
                        )) THEN 'm'
                        WHEN ss.status = 'held' THEN 'h'
                        WHEN ss.status = 'booked' THEN 'b'
                        WHEN ss.status = 'blocked' THEN 'x'
                        ELSE 'a' END,
                   '' ORDER BY ss.seat_id)
        FROM showtime_seats ss
        WHERE ss.showtime_id = st.id),
       (SELECT u.is_active AND {token_is_current_sql("$4::timestamptz", "u")}
        FROM users u WHERE u.id = $2)
FROM (VALUES (1)) AS one (x)
LEFT JOIN (showtimes st JOIN screens sc ON sc.id = st.screen_id) ON st.id = $1
"""
_STATES_BY_SEAT = _with_holds_of_user(select(ShowtimeSeat.seat_id, _state_code())).where(
    ShowtimeSeat.showtime_id == _SHOWTIME
)
# SQLite (a file): the same two reads on the process's plain sqlite3 connection, synchronously
# (a fraction of a millisecond), instead of two trips to aiosqlite's thread. Ids are 32 hex
# digits there, which sort as the UUIDs do: the states come as one string in seat-id order.
# Datetimes are naive UTC text.
_SQLITE_HEAD = """
SELECT st.screen_id, st.base_price, st.currency, st.updated_at, sc.hall_type, sc.updated_at
FROM showtimes st JOIN screens sc ON sc.id = st.screen_id WHERE st.id = ?
"""
_SQLITE_STATES = """
SELECT CASE WHEN ss.status = 'held' AND ss.held_until < :now THEN 'a'
            WHEN ss.status = 'held' AND ss.hold_id IN (
                SELECT h.id FROM holds h WHERE h.user_id = :user AND h.showtime_id = :showtime
                  AND h.status IN ('active', 'converted')) THEN 'm'
            WHEN ss.status = 'held' THEN 'h'
            WHEN ss.status = 'booked' THEN 'b'
            WHEN ss.status = 'blocked' THEN 'x'
            ELSE 'a' END
FROM showtime_seats ss WHERE ss.showtime_id = :showtime ORDER BY ss.seat_id
"""
_SQLITE_CALLER = f"SELECT 1 FROM users WHERE id = ? AND is_active AND {TOKEN_IS_CURRENT_SQLITE}"


def _sqlite_head_and_states(
    connection: sqlite3.Connection,
    showtime_id: uuid.UUID,
    caller: AccessClaims | None,
    now: dt.datetime,
) -> tuple[tuple[Any, ...], str]:
    if (
        caller is not None
        and not connection.execute(
            _SQLITE_CALLER, (caller.user_id.hex, sqlite_issued_at(caller.issued_at))
        ).fetchone()
    ):
        raise invalid_token()
    head = connection.execute(_SQLITE_HEAD, (showtime_id.hex,)).fetchone()
    if head is None:
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    codes = connection.execute(
        _SQLITE_STATES,
        {
            "now": sqlite_time(now),
            "user": caller.user_id.hex if caller is not None else None,
            "showtime": showtime_id.hex,
        },
    ).fetchall()
    return (uuid.UUID(head[0]), *head[1:]), "".join(code for (code,) in codes)


async def _head_and_states(
    database: Database, showtime_id: uuid.UUID, caller: AccessClaims | None, now: dt.datetime
) -> tuple[tuple[Any, ...], str | dict[uuid.UUID, str]]:
    """The showtime's head (the layout's cache key) and each seat's state character: a string
    in seat-id order (PostgreSQL, SQLite files), or by seat id (MariaDB's UUID type sorts in
    its own order). The caller's account is checked first."""
    plain = database.sqlite_connection()
    if plain is not None:
        return _sqlite_head_and_states(plain, showtime_id, caller, now)
    user_id = caller.user_id if caller is not None else None
    if database.driver is not None:
        # Plain SQL on the driver's pool (core.pgdriver): compiling and processing the Core
        # statement cost more CPU than running it.
        record = await database.driver.fetchrow(
            _HEAD_AND_STATES_SQL,
            showtime_id,
            user_id,
            now,
            caller.issued_at if caller is not None else None,
        )
        assert record is not None  # one row, whatever the showtime and caller
        *head, states, caller_ok = record
        if caller is not None and not caller_ok:
            raise invalid_token()
        if head[0] is None:
            raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
        return tuple(head), states or ""
    params = {"showtime_id": showtime_id, "user_id": user_id, "now": now}
    async with database.session(write=False) as session:
        if caller is not None:
            await signed_in_user(session, caller)
        head_row = (await session.execute(_HEAD, params)).first()
        if head_row is None:
            raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
        codes = await session.execute(_STATES_BY_SEAT, params)
        return tuple(head_row), {row[0]: row[1] for row in codes}


async def _load_layout(
    session: AsyncSession, showtime_id: uuid.UUID, head: tuple[Any, ...]
) -> _Layout:
    screen_id, _, currency, _, hall_type, _ = head
    seats = (
        await session.execute(
            select(
                Seat.id,
                Seat.row_index,
                Seat.row_label,
                Seat.label,
                Seat.number,
                Seat.seat_class,
                Seat.position,
            )
            .join(
                ShowtimeSeat,
                and_(ShowtimeSeat.seat_id == Seat.id, ShowtimeSeat.showtime_id == showtime_id),
            )
            .order_by(Seat.row_index, Seat.position)
        )
    ).all()
    # The state characters come in seat-id order (UUIDs compare alike in Python and SQL).
    by_id = sorted(range(len(seats)), key=lambda i: uuid.UUID(str(seats[i].id)))
    slot_of = {display: slot for slot, display in enumerate(by_id)}
    class_index: dict[str, int] = {}
    rendered: list[tuple[bytes, int]] = []
    for display in by_id:
        seat = seats[display]
        before = orjson.dumps(
            {
                "seatId": str(seat.id),  # asyncpg's UUID type is not orjson's
                "label": seat.label,
                "number": seat.number,
                "class": seat.seat_class,
                "position": seat.position,
                "status": "",
            }
        )[:-2]  # cut the closing '"}': the state goes there
        rendered.append((before, class_index.setdefault(seat.seat_class, len(class_index))))
    rows = []
    for (_, row_label), row_seats in itertools.groupby(
        enumerate(seats), key=lambda item: (item[1].row_index, item[1].row_label)
    ):
        rows.append(
            (
                b'{"row":' + orjson.dumps(row_label) + b',"seats":[',
                [slot_of[display] for display, _ in row_seats],
            )
        )
    head_bytes = (
        orjson.dumps(
            {
                "showtimeId": str(showtime_id),
                "screenId": str(screen_id),
                "hallType": hall_type,
                "currency": currency,
            }
        )[:-1]
        + b',"rows":['
    )
    return _Layout(
        key=head,
        head=head_bytes,
        rows=rows,
        seats=rendered,
        classes=tuple(class_index),
        seat_ids=[seats[display].id for display in by_id],
        id_set=frozenset(seat.id for seat in seats),
    )


def _prices_at(priced: _Priced, layout: _Layout, states: str) -> tuple[Prices, Endings]:
    """Each class's price and seat endings for these seat states (they matter only to
    occupancy rules: sold and held seats over the ones not blocked)."""
    seats_taken: Fraction | None = None
    if priced.basis.needs_occupancy:
        sellable = len(states) - states.count("x")
        seats_taken = occupancy(sellable - states.count("a"), sellable)
    if priced.endings and priced.occupancy == seats_taken:
        return priced.prices, priced.endings
    prices = tuple(priced.basis.price(name, seats_taken).price for name in layout.classes)
    if prices != priced.prices or not priced.endings:
        priced.endings = _endings(prices)
        priced.prices = prices
    priced.occupancy = seats_taken
    return priced.prices, priced.endings


def _endings(prices: Prices) -> Endings:
    endings = []
    for amount in prices:
        price = orjson.dumps(f"{amount:.2f}")
        endings.append(
            {
                code: b'%s","price":%s,"heldByYou":%s}'
                % (status.encode(), price, b"true" if yours else b"false")
                for code, (status, yours) in _STATES.items()
            }
        )
    return endings


def _splice(layout: _Layout, states: str, endings: Endings) -> bytes:
    seats = layout.seats
    rows = []
    for row_head, slots in layout.rows:
        row = [seats[slot] for slot in slots]
        rendered = b",".join(
            [
                before + endings[cls][states[slot]]
                for slot, (before, cls) in zip(slots, row, strict=True)
            ]
        )
        rows.append(row_head + rendered + b"]}")
    return b"".join((layout.head, b",".join(rows), b"]}"))
