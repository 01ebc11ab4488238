"""The benchmark server: boxoffice's own app plus ceiling endpoints measured in the same run.

* `GET /bench/constant` answers a constant JSON through the same stack (uvicorn, FastAPI,
  boxoffice's middleware): no route of ours can be faster than this (the framework ceiling).
* `POST /bench/raw/lock-seats` and `DELETE /bench/raw/lock-seats/{token}` do the same hold
  (and release) as `/api/bookings/lock-seats` with the raw driver in one statement and no
  checks beyond the seat condition: what the database allows at all (the database ceiling).
  They reach the seats by the same keys as the app's statements (the release: among the
  showtime's held seats), so the ceiling is never the slower statement.
  On PostgreSQL this is asyncpg (its pool with no reset round trip on release, like the
  app's own pool for these statements, core.pgdriver); on SQLite the standard library's
  sqlite3 (one short write transaction, since SQLite has no data-modifying CTE, run on the
  event loop inside the write turn).
* `POST /bench/raw/bookings`, `POST /bench/raw/payments/confirm` and
  `GET /bench/raw/bookings/{id}/tickets` complete a raw hold into a purchase as
  `/api/bookings`, `/api/payments/local/confirm` and `/api/bookings/{id}/tickets` do: the
  booking with its lines, payment and audit entry, the hold converted and its seats kept for
  the booking; then the payment succeeded, the booking confirmed, its seats sold, its tickets,
  invoice (the theater-year's next number), in-app notification and audit entry; then the
  owner's tickets. One statement each on PostgreSQL, one short write transaction each on
  SQLite; durable commits (the hold's is asynchronous on PostgreSQL, as the app's). No prices
  from rules (the showtime's base price), no signed ticket codes, no mail queued: what a
  purchase's rows cost the database and the stack at least (the purchase ceiling).
  `tests/test_bench_ceilings.py` checks that they grow the tables the app's purchase grows.

Started by `bench/run.py` as `boxoffice serve --app bench.ceilings:create_bench_app --workers 2`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from boxoffice.app import create_app
from boxoffice.config import Settings
from boxoffice.core.db import WriteTurn, normalize_url

PG_HOLD = """
WITH hold AS (
    INSERT INTO holds (id, showtime_id, user_id, status, seat_labels, created_at, expires_at,
                       extensions)
    VALUES ($1, $2, $3, 'active', $4::text::json, $5, $6, 0)
    RETURNING id, expires_at
)
UPDATE showtime_seats AS ss
SET status = 'held', hold_id = hold.id, held_until = hold.expires_at
FROM hold, showtimes AS st, seats AS s,
     (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
WHERE st.id = $2 AND s.screen_id = st.screen_id AND s.label = ANY($7::text[])
  AND ss.showtime_id = $2 AND ss.seat_id = s.id
  AND (ss.status = 'available' OR (ss.status = 'held' AND ss.held_until < $5))
"""

PG_RELEASE = """
WITH hold AS (
    UPDATE holds SET status = 'released' WHERE id = $1 AND status = 'active'
    RETURNING id, showtime_id
)
UPDATE showtime_seats AS ss SET status = 'available', hold_id = NULL, held_until = NULL
FROM hold, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
WHERE ss.showtime_id = hold.showtime_id AND ss.status = 'held' AND ss.hold_id = hold.id
"""


# The hold's seats, locked in seat order as the app locks them, become the booking's.
PG_BOOK = """
WITH hold AS (
    UPDATE holds SET status = 'converted'
    WHERE id = $1 AND user_id = $2 AND status = 'active' AND expires_at > $3
    RETURNING id, showtime_id
),
held AS MATERIALIZED (
    SELECT ss.seat_id, s.label, s.seat_class
    FROM hold
    JOIN showtime_seats AS ss ON ss.showtime_id = hold.showtime_id AND ss.status = 'held'
                              AND ss.hold_id = hold.id
    JOIN seats AS s ON s.id = ss.seat_id
    ORDER BY ss.seat_id
    FOR UPDATE OF ss
),
priced AS (
    SELECT st.id AS showtime_id, st.currency, st.base_price,
           st.base_price * (SELECT count(*) FROM held) AS total
    FROM showtimes AS st
    WHERE st.id = (SELECT showtime_id FROM hold) AND EXISTS (SELECT 1 FROM held)
),
booking AS (
    INSERT INTO bookings (id, reference, user_id, showtime_id, hold_id, status, currency,
                          total_amount, discount_amount, final_amount, refunded_amount,
                          tickets_amount, expires_at, created_at, updated_at)
    SELECT $4, $5, $2, showtime_id, $1, 'pending', currency, total, 0, total, 0, total, $6,
           $3, $3
    FROM priced
    RETURNING id, final_amount, currency
),
payment AS (
    INSERT INTO payments (id, booking_id, provider, provider_ref, status, amount,
                          refunded_amount, currency, created_at, updated_at)
    SELECT $7, id, 'local', $8, 'pending', final_amount, 0, currency, $3, $3 FROM booking
),
audit AS (
    INSERT INTO audit_log (id, created_at, actor_kind, actor_id, action, entity_type,
                           entity_id, data)
    SELECT gen_random_uuid(), $3, 'customer', $2, 'payment.intent_created', 'payment', $7::text,
           '{}'
    FROM booking
),
lines AS (
    INSERT INTO booking_lines (id, booking_id, seat_id, seat_label, seat_class, unit_price,
                               refunded)
    SELECT gen_random_uuid(), $4, held.seat_id, held.label, held.seat_class, priced.base_price,
           false
    FROM held, priced
),
kept AS (
    UPDATE showtime_seats AS ss SET held_until = $6, booking_id = $4
    FROM held, priced
    WHERE ss.showtime_id = priced.showtime_id AND ss.seat_id = held.seat_id
)
SELECT count(*) FROM booking
"""

# The payment's success confirms its booking, sells the seats and issues what follows.
PG_PAY = """
WITH payment AS (
    UPDATE payments SET status = 'succeeded', succeeded_at = $2, updated_at = $2
    WHERE provider = 'local' AND provider_ref = $1 AND status = 'pending'
    RETURNING id, booking_id
),
booking AS (
    UPDATE bookings AS b SET status = 'confirmed', confirmed_at = $2, updated_at = $2
    FROM payment
    WHERE b.id = payment.booking_id AND b.status = 'pending'
    RETURNING b.id, b.showtime_id, b.user_id, b.reference
),
lines AS (
    SELECT bl.seat_id, bl.seat_label, booking.id AS booking_id, booking.showtime_id
    FROM booking JOIN booking_lines AS bl ON bl.booking_id = booking.id
),
sold AS (
    UPDATE showtime_seats AS ss SET status = 'booked', hold_id = NULL, held_until = NULL
    FROM lines
    WHERE ss.showtime_id = lines.showtime_id AND ss.seat_id = lines.seat_id
      AND ss.booking_id = lines.booking_id
),
issued AS (
    INSERT INTO tickets (id, booking_id, showtime_id, seat_id, seat_label, status, issued_at)
    SELECT gen_random_uuid(), booking_id, showtime_id, seat_id, seat_label, 'valid', $2
    FROM lines
),
counter AS (
    INSERT INTO invoice_counters (theater_id, year, last_number)
    SELECT st.theater_id, $3, 1 FROM booking JOIN showtimes AS st ON st.id = booking.showtime_id
    ON CONFLICT (theater_id, year)
        DO UPDATE SET last_number = invoice_counters.last_number + 1
    RETURNING theater_id, last_number
),
invoice AS (
    INSERT INTO invoices (id, booking_id, theater_id, year, number, invoice_number, vat_rate,
                          issued_at)
    SELECT gen_random_uuid(), booking.id, t.id, $3, counter.last_number,
           upper(left(replace(t.id::text, '-', ''), 8)) || '-' || $3 || '-'
               || lpad(counter.last_number::text, 6, '0'),
           t.vat_rate, $2
    FROM booking, counter JOIN theaters AS t ON t.id = counter.theater_id
),
note AS (
    INSERT INTO notifications (id, user_id, type, title, body, data, created_at)
    SELECT gen_random_uuid(), user_id, 'booking', 'Booking confirmed',
           'Your booking ' || reference || ' is confirmed.',
           json_build_object('bookingId', id, 'reference', reference), $2
    FROM booking
),
audit AS (
    INSERT INTO audit_log (id, created_at, actor_kind, actor_id, action, entity_type,
                           entity_id, data)
    SELECT gen_random_uuid(), $2, 'customer', booking.user_id, 'payment.succeeded', 'payment',
           payment.id::text, '{}'
    FROM payment, booking
)
SELECT id FROM booking
"""

PG_TICKETS = """
SELECT t.id, t.seat_label, t.status
FROM tickets AS t JOIN bookings AS b ON b.id = t.booking_id
WHERE t.booking_id = $1 AND b.user_id = $2
ORDER BY t.seat_label
"""


SQLITE_TICKETS = (
    "SELECT t.id, t.seat_label, t.status FROM tickets AS t"
    " JOIN bookings AS b ON b.id = t.booking_id"
    " WHERE t.booking_id = ? AND b.user_id = ? ORDER BY t.seat_label"
)


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Nothing to reset: the ceiling's statements leave no session state."""


class RawHoldIn(BaseModel):
    showtimeId: uuid.UUID
    seatNumbers: list[str]
    userId: uuid.UUID


class RawBookingIn(BaseModel):
    lockToken: uuid.UUID
    userId: uuid.UUID


class RawPaymentIn(BaseModel):
    paymentIntentId: str


@dataclass(frozen=True)
class NewBooking:
    """What the raw booking writes besides what it reads: its ids, reference and deadline."""

    now: dt.datetime
    booking_id: uuid.UUID
    reference: str
    expires_at: dt.datetime
    payment_id: uuid.UUID
    payment_ref: str


def create_bench_app(settings: Settings | None = None) -> FastAPI:
    app = create_app(settings)
    routes_before = len(app.router.routes)
    url = normalize_url(app.state.settings.database_url)
    backend = url.get_backend_name()
    state: dict[str, Any] = {}

    @app.get("/bench/constant", include_in_schema=False)
    async def constant() -> dict[str, Any]:
        return {"status": "ok", "items": [1, 2, 3]}

    if backend == "postgresql":

        async def pool() -> asyncpg.Pool:
            if "pool" not in state:
                state["pool"] = await asyncpg.create_pool(
                    user=url.username,
                    password=url.password,
                    host=url.host,
                    port=url.port,
                    database=url.database,
                    min_size=4,
                    max_size=10,
                    # As the app's own pool (core.pgdriver): no reset round trip on release.
                    reset=_keep_session,
                )
            return state["pool"]

        async def hold_db(body: RawHoldIn, hold_id: uuid.UUID, now: dt.datetime) -> int:
            async with (await pool()).acquire() as conn:
                status = await conn.execute(
                    PG_HOLD,
                    hold_id,
                    body.showtimeId,
                    body.userId,
                    json.dumps(body.seatNumbers),
                    now,
                    now + dt.timedelta(minutes=10),
                    body.seatNumbers,
                )
            return int(status.split()[-1])

        async def release_db(token: uuid.UUID) -> None:
            async with (await pool()).acquire() as conn:
                await conn.execute(PG_RELEASE, token)

        async def book_db(hold_id: uuid.UUID, user_id: uuid.UUID, new: NewBooking) -> bool:
            async with (await pool()).acquire() as conn:
                booked = await conn.fetchval(
                    PG_BOOK,
                    hold_id,
                    user_id,
                    new.now,
                    new.booking_id,
                    new.reference,
                    new.expires_at,
                    new.payment_id,
                    new.payment_ref,
                )
            return bool(booked)

        async def pay_db(payment_ref: str, now: dt.datetime) -> uuid.UUID | None:
            async with (await pool()).acquire() as conn:
                booking_id: uuid.UUID | None = await conn.fetchval(
                    PG_PAY, payment_ref, now, now.year
                )
            return booking_id

        async def tickets_db(booking_id: uuid.UUID, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
            async with (await pool()).acquire() as conn:
                return [tuple(row) for row in await conn.fetch(PG_TICKETS, booking_id, user_id)]

    else:
        path = url.database or ""

        def connection() -> sqlite3.Connection:
            if "conn" not in state:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                for pragma in ("busy_timeout=10000", "synchronous=NORMAL"):  # as the app's
                    conn.execute(f"PRAGMA {pragma}")
                state["conn"] = conn
            return state["conn"]  # type: ignore[no-any-return]

        # The app's own write turn (and lock file): the same coordination across processes.
        lock = WriteTurn(Path(f"{path}.writelock"))

        def hold_sync(body: RawHoldIn, hold_id: uuid.UUID, now: dt.datetime) -> int:
            conn = connection()
            naive = now.replace(tzinfo=None)
            expires = naive + dt.timedelta(minutes=10)
            marks = ",".join("?" * len(body.seatNumbers))
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO holds (id, showtime_id, user_id, status, seat_labels,"
                    " created_at, expires_at, extensions)"
                    " VALUES (?, ?, ?, 'active', ?, ?, ?, 0)",
                    (
                        hold_id.hex,
                        body.showtimeId.hex,
                        body.userId.hex,
                        json.dumps(body.seatNumbers),
                        naive,
                        expires,
                    ),
                )
                taken = conn.execute(
                    "UPDATE showtime_seats SET status = 'held', hold_id = ?, held_until = ?"
                    " WHERE showtime_id = ? AND seat_id IN (SELECT s.id FROM seats s"
                    " JOIN showtimes st ON st.screen_id = s.screen_id"
                    f" WHERE st.id = ? AND s.label IN ({marks}))"
                    " AND (status = 'available' OR (status = 'held' AND held_until < ?))",
                    (
                        hold_id.hex,
                        expires,
                        body.showtimeId.hex,
                        body.showtimeId.hex,
                        *body.seatNumbers,
                        naive,
                    ),
                ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return int(taken)

        def release_sync(token: uuid.UUID) -> None:
            conn = connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "UPDATE showtime_seats SET status = 'available', hold_id = NULL,"
                    " held_until = NULL WHERE hold_id = ?"
                    " AND showtime_id = (SELECT showtime_id FROM holds WHERE id = ?)",
                    (token.hex, token.hex),
                )
                conn.execute("UPDATE holds SET status = 'released' WHERE id = ?", (token.hex,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        # Synchronously on the event loop, inside the write turn that every writer of every
        # process takes (so the lock is free and nothing waits): the fastest way to SQLite.
        async def hold_db(body: RawHoldIn, hold_id: uuid.UUID, now: dt.datetime) -> int:
            async with lock:
                return hold_sync(body, hold_id, now)

        async def release_db(token: uuid.UUID) -> None:
            async with lock:
                release_sync(token)

        def book_sync(hold_id: uuid.UUID, user_id: uuid.UUID, new: NewBooking) -> bool:
            conn = connection()
            now = new.now.replace(tzinfo=None)
            conn.execute("BEGIN IMMEDIATE")
            try:
                converted = conn.execute(
                    "UPDATE holds SET status = 'converted' WHERE id = ? AND user_id = ?"
                    " AND status = 'active' AND expires_at > ? RETURNING showtime_id",
                    (hold_id.hex, user_id.hex, now),
                ).fetchone()
                if converted is None:
                    conn.execute("ROLLBACK")
                    return False
                showtime_id = converted[0]
                held = conn.execute(
                    "SELECT ss.seat_id, s.label, s.seat_class FROM showtime_seats AS ss"
                    " JOIN seats AS s ON s.id = ss.seat_id"
                    " WHERE ss.showtime_id = ? AND ss.status = 'held' AND ss.hold_id = ?",
                    (showtime_id, hold_id.hex),
                ).fetchall()
                price, currency = conn.execute(
                    "SELECT base_price, currency FROM showtimes WHERE id = ?", (showtime_id,)
                ).fetchone()
                if not held:
                    conn.execute("ROLLBACK")
                    return False
                total = price * len(held)
                booking = new.booking_id.hex
                conn.execute(
                    "INSERT INTO bookings (id, reference, user_id, showtime_id, hold_id, status,"
                    " currency, total_amount, discount_amount, final_amount, refunded_amount,"
                    " tickets_amount, snacks_amount, adjustments_amount, promo_discount,"
                    " points_redeemed, points_discount, tier_discount, tax_amount, expires_at,"
                    " created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, 0, ?, 0, ?, 0, 0, 0, 0, 0, 0, 0,"
                    " ?, ?, ?)",
                    (
                        booking,
                        new.reference,
                        user_id.hex,
                        showtime_id,
                        hold_id.hex,
                        currency,
                        total,
                        total,
                        total,
                        new.expires_at.replace(tzinfo=None),
                        now,
                        now,
                    ),
                )
                conn.execute(
                    "INSERT INTO payments (id, booking_id, provider, provider_ref, status, amount,"
                    " refunded_amount, currency, created_at, updated_at)"
                    " VALUES (?, ?, 'local', ?, 'pending', ?, 0, ?, ?, ?)",
                    (new.payment_id.hex, booking, new.payment_ref, total, currency, now, now),
                )
                conn.execute(
                    "INSERT INTO audit_log (id, created_at, actor_kind, actor_id, action,"
                    " entity_type, entity_id, data)"
                    " VALUES (?, ?, 'customer', ?, 'payment.intent_created', 'payment', ?, '{}')",
                    (uuid.uuid4().hex, now, user_id.hex, str(new.payment_id)),
                )
                conn.executemany(
                    "INSERT INTO booking_lines (id, booking_id, seat_id, seat_label, seat_class,"
                    " unit_price, refunded) VALUES (?, ?, ?, ?, ?, ?, 0)",
                    [(uuid.uuid4().hex, booking, *seat, price) for seat in held],
                )
                conn.execute(
                    "UPDATE showtime_seats SET held_until = ?, booking_id = ?"
                    " WHERE showtime_id = ? AND status = 'held' AND hold_id = ?",
                    (new.expires_at.replace(tzinfo=None), booking, showtime_id, hold_id.hex),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return True

        def pay_sync(payment_ref: str, when: dt.datetime) -> uuid.UUID | None:
            conn = connection()
            now = when.replace(tzinfo=None)
            conn.execute("BEGIN IMMEDIATE")
            try:
                paid = conn.execute(
                    "UPDATE payments SET status = 'succeeded', succeeded_at = ?, updated_at = ?"
                    " WHERE provider = 'local' AND provider_ref = ? AND status = 'pending'"
                    " RETURNING id, booking_id",
                    (now, now, payment_ref),
                ).fetchone()
                if paid is None:
                    conn.execute("ROLLBACK")
                    return None
                confirmed = conn.execute(
                    "UPDATE bookings SET status = 'confirmed', confirmed_at = ?, updated_at = ?"
                    " WHERE id = ? AND status = 'pending'"
                    " RETURNING id, showtime_id, user_id, reference",
                    (now, now, paid[1]),
                ).fetchone()
                if confirmed is None:
                    conn.execute("ROLLBACK")
                    return None
                booking, showtime_id, user_id, reference = confirmed
                lines = conn.execute(
                    "SELECT seat_id, seat_label FROM booking_lines WHERE booking_id = ?",
                    (booking,),
                ).fetchall()
                conn.executemany(
                    "UPDATE showtime_seats SET status = 'booked', hold_id = NULL,"
                    " held_until = NULL WHERE showtime_id = ? AND seat_id = ? AND booking_id = ?",
                    [(showtime_id, seat_id, booking) for seat_id, _ in lines],
                )
                conn.executemany(
                    "INSERT INTO tickets (id, booking_id, showtime_id, seat_id, seat_label,"
                    " status, issued_at) VALUES (?, ?, ?, ?, ?, 'valid', ?)",
                    [(uuid.uuid4().hex, booking, showtime_id, *line, now) for line in lines],
                )
                theater_id, vat_rate = conn.execute(
                    "SELECT t.id, t.vat_rate FROM showtimes AS st"
                    " JOIN theaters AS t ON t.id = st.theater_id WHERE st.id = ?",
                    (showtime_id,),
                ).fetchone()
                (number,) = conn.execute(
                    "INSERT INTO invoice_counters (theater_id, year, last_number)"
                    " VALUES (?, ?, 1) ON CONFLICT (theater_id, year)"
                    " DO UPDATE SET last_number = last_number + 1 RETURNING last_number",
                    (theater_id, when.year),
                ).fetchone()
                conn.execute(
                    "INSERT INTO invoices (id, booking_id, theater_id, year, number,"
                    " invoice_number, vat_rate, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        uuid.uuid4().hex,
                        booking,
                        theater_id,
                        when.year,
                        number,
                        f"{theater_id[:8].upper()}-{when.year}-{number:06d}",
                        vat_rate,
                        now,
                    ),
                )
                conn.execute(
                    "INSERT INTO notifications (id, user_id, type, title, body, data, created_at)"
                    " VALUES (?, ?, 'booking', 'Booking confirmed', ?, ?, ?)",
                    (
                        uuid.uuid4().hex,
                        user_id,
                        f"Your booking {reference} is confirmed.",
                        json.dumps({"bookingId": str(uuid.UUID(booking)), "reference": reference}),
                        now,
                    ),
                )
                conn.execute(
                    "INSERT INTO audit_log (id, created_at, actor_kind, actor_id, action,"
                    " entity_type, entity_id, data)"
                    " VALUES (?, ?, 'customer', ?, 'payment.succeeded', 'payment', ?, '{}')",
                    (uuid.uuid4().hex, now, user_id, str(uuid.UUID(paid[0]))),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return uuid.UUID(booking)

        async def book_db(hold_id: uuid.UUID, user_id: uuid.UUID, new: NewBooking) -> bool:
            async with lock:
                return book_sync(hold_id, user_id, new)

        async def pay_db(payment_ref: str, now: dt.datetime) -> uuid.UUID | None:
            async with lock:
                return pay_sync(payment_ref, now)

        async def tickets_db(booking_id: uuid.UUID, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
            listed = connection().execute(SQLITE_TICKETS, (booking_id.hex, user_id.hex))
            return listed.fetchall()

    @app.post("/bench/raw/lock-seats", status_code=201, include_in_schema=False)
    async def raw_hold(body: RawHoldIn) -> dict[str, Any]:
        hold_id = uuid.uuid4()
        taken = await hold_db(body, hold_id, dt.datetime.now(dt.UTC))
        return {"lockToken": str(hold_id), "taken": taken}

    @app.delete("/bench/raw/lock-seats/{token}", status_code=204, include_in_schema=False)
    async def raw_release(token: uuid.UUID) -> None:
        await release_db(token)

    @app.post("/bench/raw/bookings", status_code=201, include_in_schema=False)
    async def raw_book(body: RawBookingIn) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        new = NewBooking(
            now=now,
            booking_id=uuid.uuid4(),
            reference=uuid.uuid4().hex[:8].upper(),
            expires_at=now + dt.timedelta(minutes=15),
            payment_id=uuid.uuid4(),
            payment_ref=f"raw_{uuid.uuid4().hex}",
        )
        if not await book_db(body.lockToken, body.userId, new):
            raise HTTPException(409, "the hold is gone")
        return {"booking": {"id": str(new.booking_id)}, "paymentIntentId": new.payment_ref}

    @app.post("/bench/raw/payments/confirm", include_in_schema=False)
    async def raw_pay(body: RawPaymentIn) -> dict[str, Any]:
        booking_id = await pay_db(body.paymentIntentId, dt.datetime.now(dt.UTC))
        if booking_id is None:
            raise HTTPException(409, "no pending payment")
        return {"bookingId": str(booking_id), "bookingStatus": "confirmed"}

    @app.get("/bench/raw/bookings/{booking_id}/tickets", include_in_schema=False)
    async def raw_tickets(booking_id: uuid.UUID, user: uuid.UUID) -> dict[str, Any]:
        rows = await tickets_db(booking_id, user)
        return {
            "tickets": [
                {"id": str(ticket_id), "seatNumber": label, "status": status}
                for ticket_id, label, status in rows
            ]
        }

    serve = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with serve(application) as served:
            try:
                yield served
            finally:
                if "pool" in state:
                    await state.pop("pool").close()

    app.router.lifespan_context = lifespan

    # The ceilings go first in the route table: matching them costs the least any route can.
    ceilings = app.router.routes[routes_before:]
    del app.router.routes[routes_before:]
    app.router.routes[0:0] = ceilings
    return app
