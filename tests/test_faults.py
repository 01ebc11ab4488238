"""Faults: a server killed mid-request, the database restarted under load, Redis lost.

Each test breaks a real part under a real `boxoffice serve --workers 2` (tests/live_server.py)
and then reads the database back: nothing is ever half done, nothing answered 2xx is missing,
nothing is sold twice, and no fault is answered with a 500. The database restart and the Redis
loss use private servers (tests/private_services.py), never the machine's shared ones; they
are skipped with a printed reason where those cannot run, and fail instead with CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
from alembic import command
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from boxoffice.app import create_app
from boxoffice.booking.models import Booking, BookingLine, Hold, HoldStatus
from boxoffice.core.db import create_engine
from boxoffice.core.idempotency import IdempotencyRecord
from boxoffice.documents.models import Invoice
from boxoffice.migrations import alembic_config
from boxoffice.payments.models import Payment
from boxoffice.scheduling.models import ShowtimeSeat
from boxoffice.tickets.models import Ticket
from boxoffice.venues.models import Seat
from tests.booking_helpers import seed_showtime
from tests.conftest import Backend, make_settings, reset_database
from tests.helpers import TestUser, make_user
from tests.private_services import PrivatePostgres, private_postgres, private_redis

if TYPE_CHECKING:
    from tests.live_server import LiveServer, ServerFactory

# Registered as a plugin (and imported from only once it is) so pytest rewrites its asserts.
pytest_plugins = ("tests.live_server",)
pytestmark = pytest.mark.slow

GOOD_CARD = "4242424242424242"
MONEY_TAKEN = {"succeeded", "partially_refunded", "refunded"}
# No periodic job runs under these tests: each reads the database back exactly as requests
# left it (and the expiry job would race the TRUNCATE between tests).
QUIET: dict[str, Any] = {
    "expiry_interval_seconds": 0,
    "reconcile_interval_seconds": 0,
    "loyalty_interval_seconds": 0,
    "reminder_interval_seconds": 0,
    "settlement_interval_seconds": 0,
    "invoice_repair_interval_seconds": 0,
}
# A kill or an outage may land between a confirmation's commit and its invoice; the repair
# job issues those (tests that cut a server or the database run it every second).
REPAIRING = QUIET | {"invoice_repair_interval_seconds": 1}
UNAVAILABLE = {"service_unavailable", "try_again"}  # the 503 problems a client may retry


# ---------------------------------------------------------------------------------------------
# Small helpers


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.05)


def kill(server: LiveServer) -> None:
    """SIGKILL the server's whole process group: supervisor and workers die on the spot."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def problem_code(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        code: str | None = response.json().get("code")
    except ValueError:
        return "(no problem body)"
    return code


def hold_args(user: TestUser, showtime_id: str, labels: list[str]) -> dict[str, Any]:
    return {"json": {"showtimeId": showtime_id, "seatNumbers": labels}, "headers": user.headers}


def book_args(user: TestUser, held: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    body = {
        "showtimeId": held["showtimeId"],
        "seatNumbers": held["lockedSeats"],
        "lockToken": held["lockToken"],
    }
    return {"json": body, "headers": headers}


def pay_args(user: TestUser, intent_id: str, key: str | None = None) -> dict[str, Any]:
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    return {"json": {"paymentIntentId": intent_id, "card": GOOD_CARD}, "headers": headers}


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def reserve(
    http: httpx.AsyncClient, user: TestUser, showtime_id: str, labels: list[str]
) -> dict[str, Any]:
    """Hold and book: `{booking, paymentIntentId, ...}` of a pending booking."""
    held = ok(
        await http.post("/api/bookings/lock-seats", **hold_args(user, showtime_id, labels)), 201
    )
    return ok(await http.post("/api/bookings", **book_args(user, held)), 201)


async def free_seats(http: httpx.AsyncClient, showtime_id: str) -> list[str]:
    body = ok(await http.get(f"/api/showtimes/{showtime_id}/seats"))
    return [s["label"] for row in body["rows"] for s in row["seats"] if s["status"] == "available"]


# ---------------------------------------------------------------------------------------------
# The books, read back from the database


@dataclass
class Books:
    holds: dict[uuid.UUID, Hold]
    bookings: dict[uuid.UUID, Booking]
    lines: defaultdict[uuid.UUID, list[BookingLine]]
    payments: defaultdict[uuid.UUID, list[Payment]]
    tickets: defaultdict[uuid.UUID, list[Ticket]]
    invoiced: set[uuid.UUID]
    seats: dict[str, ShowtimeSeat]  # by label
    keys: set[str]  # idempotency keys stored


async def read_books(app: FastAPI, showtime_id: str) -> Books:
    sid = uuid.UUID(showtime_id)
    async with app.state.db.session(write=False) as session:
        holds = {
            h.id: h for h in await session.scalars(select(Hold).where(Hold.showtime_id == sid))
        }
        bookings = {
            b.id: b
            for b in await session.scalars(select(Booking).where(Booking.showtime_id == sid))
        }
        ids = list(bookings)
        books = Books(
            holds,
            bookings,
            defaultdict(list),
            defaultdict(list),
            defaultdict(list),
            set(),
            {},
            set(),
        )
        for line in await session.scalars(
            select(BookingLine).where(BookingLine.booking_id.in_(ids))
        ):
            books.lines[line.booking_id].append(line)
        for payment in await session.scalars(select(Payment).where(Payment.booking_id.in_(ids))):
            books.payments[payment.booking_id].append(payment)
        for ticket in await session.scalars(select(Ticket).where(Ticket.showtime_id == sid)):
            books.tickets[ticket.booking_id].append(ticket)
        books.invoiced = set(
            await session.scalars(select(Invoice.booking_id).where(Invoice.booking_id.in_(ids)))
        )
        rows = await session.execute(
            select(Seat.label, ShowtimeSeat)
            .join(Seat, Seat.id == ShowtimeSeat.seat_id)
            .where(ShowtimeSeat.showtime_id == sid)
        )
        books.seats = {row[0]: row[1] for row in rows}
        books.keys = set(await session.scalars(select(IdempotencyRecord.key)))
    return books


async def all_invoiced(app: FastAPI, showtime_id: str) -> None:
    """Wait until every confirmed booking of the showtime has its invoice (the repair job)."""

    async def invoiced() -> bool:
        books = await read_books(app, showtime_id)
        return all(
            booking_id in books.invoiced
            for booking_id, booking in books.bookings.items()
            if booking.status == "confirmed"
        )

    await eventually(invoiced, "every confirmed booking has its invoice")


def assert_whole(books: Books, *, invoices_due: bool = False) -> None:
    """Every booking is complete and agrees with its seats, hold, payment, tickets and invoice
    (or, `invoices_due`, may still wait for its invoice); every taken seat is explained by a
    stored hold or booking; nothing is sold twice."""
    live = Counter(t.seat_id for ts in books.tickets.values() for t in ts if t.status != "void")
    assert [seat for seat, count in live.items() if count > 1] == []
    by_seat = {row.seat_id: row for row in books.seats.values()}
    for booking_id, booking in books.bookings.items():
        lines = books.lines[booking_id]
        assert lines, f"booking {booking_id} has no lines"
        assert booking.final_amount == sum(line.unit_price for line in lines), booking_id
        taken = [p for p in books.payments[booking_id] if p.status in MONEY_TAKEN]
        tickets = sorted(t.seat_id for t in books.tickets[booking_id] if t.status != "void")
        assert booking.hold_id in books.holds, booking_id
        assert books.holds[booking.hold_id].status == HoldStatus.CONVERTED, booking_id
        if booking.status == "confirmed":
            assert [(p.status, p.amount) for p in taken] == [("succeeded", booking.final_amount)]
            assert tickets == sorted(line.seat_id for line in lines), booking_id
            assert invoices_due or booking_id in books.invoiced, booking_id
            for line in lines:
                seat = by_seat[line.seat_id]
                assert (seat.status, seat.booking_id) == ("booked", booking_id), line.seat_label
        else:  # nothing was paid, nothing is sold
            assert booking.status == "pending", (booking_id, booking.status)
            assert taken == [], booking_id
            assert tickets == [], booking_id
            assert booking_id not in books.invoiced, booking_id
            for line in lines:
                seat = by_seat[line.seat_id]
                assert (seat.status, seat.booking_id, seat.hold_id) == (
                    "held",
                    booking_id,
                    booking.hold_id,
                ), line.seat_label
    converted = {i for i, h in books.holds.items() if h.status == HoldStatus.CONVERTED}
    assert converted == {b.hold_id for b in books.bookings.values()}
    for label, seat in books.seats.items():
        if seat.status == "booked":
            assert seat.booking_id in books.bookings, label
            assert books.bookings[seat.booking_id].status == "confirmed", label
        elif seat.status == "held":
            assert seat.hold_id in books.holds, label
            if seat.booking_id is None:
                assert books.holds[seat.hold_id].status == HoldStatus.ACTIVE, label
            else:
                assert books.bookings[seat.booking_id].hold_id == seat.hold_id, label


# ---------------------------------------------------------------------------------------------
# Load: customers holding, booking and paying in a loop


@dataclass
class Load:
    http: httpx.AsyncClient
    showtime_id: str
    labels: list[str]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    transport_errors_allowed: bool = False  # while the server is being killed
    answers: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)  # answers no fault may produce
    holds: set[str] = field(default_factory=set)  # answered 201
    bookings: set[str] = field(default_factory=set)  # answered 201
    confirmed: set[str] = field(default_factory=set)  # paid: answered 200 "confirmed"
    intents: dict[str, tuple[TestUser, str]] = field(default_factory=dict)  # booking: intent
    last_success: float = 0.0

    ALLOWED: dict[str, set[tuple[int, str | None]]] = field(
        default_factory=lambda: {
            "hold": {(201, None), (409, "seats_unavailable")},
            "book": {(201, None)},
            "pay": {(200, None)},
        }
    )

    async def call(self, step: str, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            self.answers[f"{step} {type(exc).__name__}"] += 1
            if not self.transport_errors_allowed:
                self.bad.append(f"{step}: {type(exc).__name__}: {exc}")
            return None
        code = problem_code(response)
        self.answers[f"{step} {response.status_code} {code or ''}".strip()] += 1
        answer = (response.status_code, code)
        if answer not in self.ALLOWED[step] and not (
            response.status_code == 503 and code in UNAVAILABLE
        ):
            self.bad.append(f"{step} {method} {url}: {response.status_code} {response.text}")
        if response.status_code < 300:
            self.last_success = time.monotonic()
        return response

    async def customer(self, user: TestUser, rng: random.Random) -> None:
        while not self.stop.is_set():
            labels = rng.sample(self.labels, rng.randint(1, 2))
            response = await self.call(
                "hold",
                "POST",
                "/api/bookings/lock-seats",
                **hold_args(user, self.showtime_id, labels),
            )
            if response is None or response.status_code != 201:
                await asyncio.sleep(0.02)
                continue
            held = response.json()
            self.holds.add(held["lockToken"])
            response = await self.call(
                "book", "POST", "/api/bookings", **book_args(user, held, str(uuid.uuid4()))
            )
            if response is None or response.status_code != 201:
                continue
            created = response.json()
            booking_id = created["booking"]["id"]
            self.bookings.add(booking_id)
            self.intents[booking_id] = (user, created["paymentIntentId"])
            response = await self.call(
                "pay",
                "POST",
                "/api/payments/local/confirm",
                **pay_args(user, created["paymentIntentId"]),
            )
            if response is not None and response.status_code == 200:
                assert response.json()["bookingStatus"] == "confirmed", response.text
                self.confirmed.add(booking_id)

    @contextlib.asynccontextmanager
    async def running(self, users: list[TestUser], seed: int) -> AsyncIterator[Load]:
        rng = random.Random(seed)
        tasks = [
            asyncio.create_task(self.customer(user, random.Random(rng.random()))) for user in users
        ]
        try:
            yield self
        finally:
            self.stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]

    async def successes_after(self, moment: float, what: str, timeout: float = 15.0) -> None:
        async def succeeded() -> bool:
            return self.last_success > moment

        await eventually(succeeded, what, timeout)


def assert_answered_is_stored(load: Load, books: Books) -> None:
    """Whatever was answered 2xx is in the database: nothing acknowledged was lost."""
    assert {uuid.UUID(token) for token in load.holds} <= set(books.holds)
    assert {uuid.UUID(i) for i in load.bookings} <= set(books.bookings)
    for booking_id in load.confirmed:
        assert books.bookings[uuid.UUID(booking_id)].status == "confirmed", booking_id


# ---------------------------------------------------------------------------------------------
# 1. The server killed in the middle of a transaction (PostgreSQL: a row lock parks it there)


async def _waiting_on_lock(conn: AsyncConnection) -> list[str]:
    """The tables whose rows this database's other sessions wait to lock. A session waiting
    for a row holds the row's tuple lock meanwhile (its place in the queue); the statement's
    text would not tell, as pg_stat_activity cuts it at 1 KB."""
    rows = await conn.execute(
        text(
            "SELECT l.relation::regclass::text AS waits_in FROM pg_stat_activity a "
            "JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'tuple' "
            "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
            "AND a.wait_event_type = 'Lock'"
        )
    )
    tables = [row.waits_in for row in rows]
    await conn.rollback()  # the statistics views keep one snapshot per transaction
    return tables


async def _open_transactions(conn: AsyncConnection) -> int:
    count = await conn.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        )
    )
    await conn.rollback()
    return int(count or 0)


async def kill_while_parked(
    app: FastAPI,
    server: LiveServer,
    lock: Any,
    request: Awaitable[httpx.Response],
    waits_in: str,
) -> None:
    """Take `lock` (a SELECT ... FOR UPDATE) in a transaction of the test's own, send the
    request, wait until the server's transaction waits for that lock (for a row of the table
    `waits_in`), SIGKILL the server, release the lock, and wait until PostgreSQL ended the
    dead client's transaction."""
    async with app.state.db.engine.connect() as locker:
        assert (await locker.execute(lock)).all(), "nothing to lock"
        sent = asyncio.ensure_future(request)
        try:

            async def parked() -> bool:
                assert not sent.done(), sent.result().text
                return waits_in in await _waiting_on_lock(monitor)

            async with app.state.db.engine.connect() as monitor:
                await eventually(parked, "the server's transaction waits for the row lock")
                kill(server)
                with pytest.raises(httpx.TransportError):
                    await sent
                await locker.rollback()  # the dead client's transaction may go on now

                async def ended() -> bool:
                    return await _open_transactions(monitor) == 0

                await eventually(ended, "PostgreSQL ended the killed server's transaction")
        finally:
            if not sent.done():
                sent.cancel()


@pytest.mark.backends("postgres")
async def test_server_killed_mid_booking_and_mid_payment_leaves_nothing_half_done(
    app: FastAPI, start_server: ServerFactory
) -> None:
    await reset_database(app)
    show = await seed_showtime(app, rows=2, seats_per_row=4)
    user = await make_user(app)
    server = await start_server(**QUIET)
    key = str(uuid.uuid4())
    async with server.client() as http:
        held = ok(
            await http.post(
                "/api/bookings/lock-seats", **hold_args(user, show.showtime_id, ["A1", "A2"])
            ),
            201,
        )
        hold_id = uuid.UUID(held["lockToken"])
        # The booking's last step updates the hold's seat rows: it stops there, with its
        # idempotency record written and its booking, lines, payment and converted hold in
        # the waiting statement, nothing committed.
        await kill_while_parked(
            app,
            server,
            select(ShowtimeSeat.seat_id).where(ShowtimeSeat.hold_id == hold_id).with_for_update(),
            http.post("/api/bookings", **book_args(user, held, key)),
            waits_in="showtime_seats",
        )

    books = await read_books(app, show.showtime_id)
    assert books.bookings == {}
    assert books.holds[hold_id].status == HoldStatus.ACTIVE
    taken = {
        label: (s.status, s.hold_id, s.booking_id)
        for label, s in books.seats.items()
        if s.status != "available"
    }
    assert taken == {"A1": ("held", hold_id, None), "A2": ("held", hold_id, None)}
    assert key not in books.keys  # the key is free: a retry runs the booking again
    assert_whole(books)

    # A new server: the customer retries with the same key and gets one booking, twice.
    server = await start_server(**QUIET)
    pay_key = str(uuid.uuid4())
    async with server.client() as http:
        created = ok(await http.post("/api/bookings", **book_args(user, held, key)), 201)
        again = ok(await http.post("/api/bookings", **book_args(user, held, key)), 201)
        assert again == created
        booking_id = uuid.UUID(created["booking"]["id"])
        intent = created["paymentIntentId"]
        books = await read_books(app, show.showtime_id)
        assert list(books.bookings) == [booking_id]
        assert sorted(line.seat_label for line in books.lines[booking_id]) == ["A1", "A2"]
        assert_whole(books)

        # Confirming marks the payment succeeded, then sells the booking's seats: it stops
        # there, with the money captured in its transaction but nothing committed.
        await kill_while_parked(
            app,
            server,
            select(ShowtimeSeat.seat_id)
            .where(ShowtimeSeat.booking_id == booking_id)
            .with_for_update(),
            http.post("/api/payments/local/confirm", **pay_args(user, intent, pay_key)),
            waits_in="showtime_seats",
        )
    assert server.logged_errors() == []

    books = await read_books(app, show.showtime_id)
    assert books.bookings[booking_id].status == "pending"
    assert [p.status for p in books.payments[booking_id]] == ["pending"]
    assert books.tickets == {}
    assert books.invoiced == set()
    assert pay_key not in books.keys
    assert_whole(books)

    server = await start_server(**QUIET)
    async with server.client() as http:
        paid = ok(await http.post("/api/payments/local/confirm", **pay_args(user, intent, pay_key)))
        again = ok(
            await http.post("/api/payments/local/confirm", **pay_args(user, intent, pay_key))
        )
    assert paid["bookingStatus"] == "confirmed"
    assert again == paid
    books = await read_books(app, show.showtime_id)
    assert books.bookings[booking_id].status == "confirmed"
    assert sorted(t.seat_label for t in books.tickets[booking_id]) == ["A1", "A2"]
    assert_whole(books)
    assert server.logged_errors() == []


@pytest.mark.backends("sqlite")
async def test_server_killed_under_load_leaves_whole_bookings(
    app: FastAPI, start_server: ServerFactory
) -> None:
    """No lock to park a request at a chosen step here: the kill lands wherever the load is."""
    await reset_database(app)
    show = await seed_showtime(app, rows=10, seats_per_row=10)
    users = [await make_user(app) for _ in range(8)]
    labels = sorted((await read_books(app, show.showtime_id)).seats)
    server = await start_server(**QUIET)
    async with server.client() as http:
        load = Load(http, show.showtime_id, labels)
        async with load.running(users, seed=7):
            await load.successes_after(time.monotonic() + 0.5, "load is under way")
            await asyncio.sleep(0.5)
            load.transport_errors_allowed = True
            kill(server)
            await asyncio.sleep(0.2)
    assert load.bad == [], load.answers
    books = await read_books(app, show.showtime_id)
    assert_whole(books, invoices_due=True)
    assert_answered_is_stored(load, books)

    # Restarted, the server issues the invoices the kill left unissued and sells on:
    # customers whose payment got no answer pay again (and are confirmed, once), and free
    # seats can still be sold.
    server = await start_server(**REPAIRING)
    await all_invoiced(app, show.showtime_id)
    async with server.client() as http:
        unanswered = [b for b in load.bookings if b not in load.confirmed]
        for booking_id in unanswered:
            user, intent = load.intents[booking_id]
            paid = ok(await http.post("/api/payments/local/confirm", **pay_args(user, intent)))
            assert paid["bookingStatus"] == "confirmed", paid
        free = await free_seats(http, show.showtime_id)
        booked = await reserve(http, users[0], show.showtime_id, free[:2])
        ok(
            await http.post(
                "/api/payments/local/confirm", **pay_args(users[0], booked["paymentIntentId"])
            )
        )
    assert_whole(await read_books(app, show.showtime_id))
    assert server.logged_errors() == []


# ---------------------------------------------------------------------------------------------
# 2. PostgreSQL restarted under load (a private cluster)


@contextlib.asynccontextmanager
async def private_database(
    tmp_path: Path,
) -> AsyncIterator[tuple[PrivatePostgres, Backend, FastAPI]]:
    """A private cluster with a migrated database, and an in-process app on it for test data."""
    with private_postgres() as pg:
        admin = create_engine(pg.url, pool_size=1)
        try:
            async with admin.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("CREATE DATABASE boxoffice"))
        finally:
            await admin.dispose()
        backend = Backend("postgres", pg.database_url("boxoffice"))
        await asyncio.to_thread(command.upgrade, alembic_config(backend.url), "head")
        application = create_app(make_settings(backend, tmp_path / "var"))
        async with LifespanManager(application):
            yield pg, backend, application


async def test_database_restart_under_load(tmp_path: Path) -> None:
    async with private_database(tmp_path) as (pg, backend, app):
        show = await seed_showtime(app, rows=20, seats_per_row=20)
        users = [await make_user(app) for _ in range(8)]
        labels = sorted((await read_books(app, show.showtime_id)).seats)
        from tests.live_server import run_server

        async with run_server(backend, tmp_path / "live", **REPAIRING) as server:
            try:
                await _restart_under_load(pg, server, show.showtime_id, users, labels, app)
            except BaseException:
                print(f"--- server output ---\n{server.log()}\n--- postgres ---\n{pg.log()}")
                raise


async def _restart_under_load(
    pg: PrivatePostgres,
    server: LiveServer,
    showtime_id: str,
    users: list[TestUser],
    labels: list[str],
    app: FastAPI,
) -> None:
    async with server.client() as http:
        load = Load(http, showtime_id, labels)
        async with load.running(users, seed=11):
            await load.successes_after(time.monotonic(), "load is under way before the restart")
            await asyncio.sleep(0.5)

            await asyncio.to_thread(pg.stop)  # every connection is cut, in mid-transaction too
            down = await http.get("/readyz")
            assert down.status_code == 503, down.text
            assert down.json()["checks"]["database"].startswith("error"), down.text
            assert (await http.get("/healthz")).status_code == 200
            await asyncio.sleep(0.5)  # the load meets the outage
            await asyncio.to_thread(pg.start)

            back = time.monotonic()
            await load.successes_after(back, "requests succeed again after the restart")
            await asyncio.sleep(0.5)
        assert load.bad == [], load.answers
        assert any(" 503 " in answer for answer in load.answers), load.answers  # it was down

        # A quiet restart: the pooled connections are all dead, and the first requests to use
        # them answer 503 (or, reconnecting, succeed), never 500; the server recovers by itself.
        await asyncio.gather(*(http.get(f"/api/showtimes/{showtime_id}/seats") for _ in range(20)))
        await asyncio.to_thread(pg.restart)
        first = Load(http, showtime_id, labels)
        rng = random.Random(5)
        for user in users[:4]:
            await first.call(
                "hold",
                "POST",
                "/api/bookings/lock-seats",
                **hold_args(user, showtime_id, [rng.choice(labels)]),
            )
        assert first.bad == [], first.answers

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(ready, "/readyz is 200 again", timeout=10)
        created = await reserve(
            http, users[0], showtime_id, (await free_seats(http, showtime_id))[:1]
        )
        ok(
            await http.post(
                "/api/payments/local/confirm", **pay_args(users[0], created["paymentIntentId"])
            )
        )

    await app.state.db.engine.dispose()  # its pooled connections died with the restart too
    await all_invoiced(app, showtime_id)
    books = await read_books(app, showtime_id)
    assert_whole(books)
    assert_answered_is_stored(load, books)
    assert_answered_is_stored(first, books)
    assert [line for line in server.logged_errors() if "unhandled_error" in line] == []


# ---------------------------------------------------------------------------------------------
# 3. Redis lost (a private redis-server)


@pytest.mark.backends("sqlite", "postgres")
async def test_redis_lost_holds_bookings_and_jobs_go_on(
    app: FastAPI, backend: Backend, tmp_path: Path
) -> None:
    await reset_database(app)
    show = await seed_showtime(app, rows=4, seats_per_row=6)
    users = [await make_user(app) for _ in range(6)]
    with private_redis() as rds:
        settings = {**QUIET, "redis_url": rds.url, "rate_limit_enabled": "true"}
        from tests.live_server import run_server

        async with run_server(backend, tmp_path / "live", **settings) as server:
            try:
                await _lose_redis(server, rds, show.showtime_id, users, app)
            except BaseException:
                print(f"--- server output ---\n{server.log()}")
                raise


async def _lose_redis(
    server: LiveServer, rds: Any, showtime_id: str, users: list[TestUser], app: FastAPI
) -> None:
    outbox = server.log_path.parent / "outbox"
    queue = redis.Redis.from_url(rds.url)
    async with server.client() as http:
        ready = ok(await http.get("/readyz"))
        assert ready["checks"] == {"database": "ok", "redis": "ok"}

        rds.kill()
        down = await http.get("/readyz")
        assert down.status_code == 503, down.text
        assert down.json()["checks"]["database"] == "ok"
        assert down.json()["checks"]["redis"].startswith("error"), down.text
        assert (await http.get("/healthz")).status_code == 200

        # Rate limits fail open: the limited route answers on its own merits.
        checked = await http.post(
            "/api/promocodes/check",
            json={"code": "NOSUCHCODE", "showtimeId": showtime_id, "subtotal": "10.00"},
            headers=users[0].headers,
        )
        assert checked.status_code < 500, checked.text
        assert checked.status_code != 429, checked.text

        # Customers race for the same seats: one wins each free pair and pays at once; a pair
        # with a seat sold already goes to no one.
        sent_before = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
        winners: list[int] = []
        for pair in (["A1", "A2"], ["A2", "A3"], ["A3", "A4"], ["B1", "B2"]):
            answers = await asyncio.gather(
                *(
                    http.post("/api/bookings/lock-seats", **hold_args(u, showtime_id, pair))
                    for u in users
                )
            )
            assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
            won = [
                (u, a.json()) for u, a in zip(users, answers, strict=True) if a.status_code == 201
            ]
            winners.append(len(won))
            for user, held in won:
                key = str(uuid.uuid4())
                created = ok(await http.post("/api/bookings", **book_args(user, held, key)), 201)
                paid = ok(
                    await http.post(
                        "/api/payments/local/confirm",
                        **pay_args(user, created["paymentIntentId"], key),
                    )
                )
                assert paid["bookingStatus"] == "confirmed"
        assert winners == [1, 0, 1, 1]

        # The confirmation mails could not be queued in Redis: they are sent all the same.
        async def mailed() -> bool:
            return outbox.exists() and len(list(outbox.glob("*.eml"))) >= sent_before + 3

        await eventually(mailed, "the confirmation mails were sent without Redis")
        books = await read_books(app, showtime_id)
        assert_whole(books)
        sold = Counter(t.seat_label for ts in books.tickets.values() for t in ts)
        assert sold
        assert max(sold.values()) == 1
        assert sum(b.status == "confirmed" for b in books.bookings.values()) == 3

        # Redis is back: ready again, and jobs go to the queue again.
        rds.start()

        async def ready_again() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(ready_again, "/readyz is 200 once Redis is back")
        user = users[0]
        created = await reserve(http, user, showtime_id, ["D5", "D6"])
        ok(
            await http.post(
                "/api/payments/local/confirm", **pay_args(user, created["paymentIntentId"])
            )
        )
        assert queue.xlen("boxoffice:jobs") >= 1  # the mail job waits there for a worker
    queue.close()
    assert not [line for line in server.logged_errors() if "unhandled" in line]
