"""Nothing is ever sold twice: customers, scanners and refunds racing against a real server.

Every test here drives `boxoffice serve --workers 2` (tests/live_server.py) over real HTTP, so
requests really run at the same time in two processes with their own connection pools. Test
data is set up and the outcome read back through the in-process `app` (the same database).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from boxoffice.booking.models import Booking, BookingLine
from boxoffice.payments.models import Payment, Refund
from boxoffice.scheduling.models import ShowtimeSeat
from boxoffice.tickets.models import Ticket
from boxoffice.venues.models import Seat
from tests.booking_helpers import seed_showtime
from tests.conftest import reset_database
from tests.helpers import TestUser, make_user

if TYPE_CHECKING:
    from tests.live_server import LiveServer, ServerFactory

# Registered as a plugin (not imported) so pytest rewrites its asserts too.
pytest_plugins = ("tests.live_server",)
pytestmark = [pytest.mark.backends("sqlite", "postgres"), pytest.mark.slow]

GOOD_CARD = "4242424242424242"
BAD_CARD = "4000000000000002"
MONEY_TAKEN = {"succeeded", "partially_refunded", "refunded"}
ZERO = Decimal("0.00")


# ---------------------------------------------------------------------------------------------
# Client-side steps


async def hold(
    http: httpx.AsyncClient, user: TestUser, showtime_id: str, labels: Iterable[str]
) -> httpx.Response:
    return await http.post(
        "/api/bookings/lock-seats",
        json={"showtimeId": showtime_id, "seatNumbers": list(labels)},
        headers=user.headers,
    )


def book_args(held: dict[str, Any], user: TestUser, key: str | None = None) -> dict[str, Any]:
    """POST /api/bookings for a hold's answer, with an Idempotency-Key if given."""
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    body = {
        "showtimeId": held["showtimeId"],
        "seatNumbers": held["lockedSeats"],
        "lockToken": held["lockToken"],
    }
    return {"json": body, "headers": headers}


def pay_args(
    intent_id: str, user: TestUser, card: str = GOOD_CARD, key: str | None = None
) -> dict[str, Any]:
    """POST /api/payments/local/confirm of an intent."""
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    return {"json": {"paymentIntentId": intent_id, "card": card}, "headers": headers}


async def book(
    http: httpx.AsyncClient, user: TestUser, held: dict[str, Any], key: str | None = None
) -> httpx.Response:
    return await http.post("/api/bookings", **book_args(held, user, key))


async def pay(
    http: httpx.AsyncClient, user: TestUser, intent_id: str, key: str | None = None
) -> httpx.Response:
    return await http.post("/api/payments/local/confirm", **pay_args(intent_id, user, key=key))


async def refund(http: httpx.AsyncClient, user: TestUser, **body: Any) -> httpx.Response:
    return await http.post("/api/payments/refund", json=body, headers=user.headers)


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def reserve(
    http: httpx.AsyncClient, user: TestUser, showtime_id: str, labels: Iterable[str]
) -> dict[str, Any]:
    """Hold and book: `{booking, paymentIntentId, ...}` of a pending booking."""
    held = ok(await hold(http, user, showtime_id, labels), 201)
    return ok(await book(http, user, held), 201)


async def buy(
    http: httpx.AsyncClient, user: TestUser, showtime_id: str, labels: Iterable[str]
) -> dict[str, Any]:
    """Hold, book and pay: the confirmed booking."""
    created = await reserve(http, user, showtime_id, labels)
    paid = ok(await pay(http, user, created["paymentIntentId"]))
    assert paid["bookingStatus"] == "confirmed", paid
    booking: dict[str, Any] = created["booking"]
    return booking


async def seat_map(http: httpx.AsyncClient, showtime_id: str) -> dict[str, str]:
    body = ok(await http.get(f"/api/showtimes/{showtime_id}/seats"))
    return {seat["label"]: seat["status"] for row in body["rows"] for seat in row["seats"]}


async def warm_up(http: httpx.AsyncClient, connections: int) -> None:
    """Open the connections first, so the racing requests leave at the same moment."""
    await asyncio.gather(*(http.get("/healthz") for _ in range(connections)))


# ---------------------------------------------------------------------------------------------
# The invariants, read back from the database and the API


@dataclass
class Ledger:
    bookings: dict[uuid.UUID, Booking]
    lines: dict[uuid.UUID, list[BookingLine]]
    payments: dict[uuid.UUID, list[Payment]]
    refunds: dict[uuid.UUID, list[Refund]]
    tickets: dict[uuid.UUID, list[Ticket]]
    booked_rows: dict[str, uuid.UUID | None]  # label -> booking_id of 'booked' inventory rows


async def read_ledger(app: FastAPI, showtime_id: str) -> Ledger:
    sid = uuid.UUID(showtime_id)
    async with app.state.db.session() as session:
        bookings = {
            b.id: b
            for b in (await session.scalars(select(Booking).where(Booking.showtime_id == sid)))
        }
        ids = list(bookings)
        ledger = Ledger(bookings, {i: [] for i in ids}, {i: [] for i in ids}, {}, {}, {})
        for line in await session.scalars(
            select(BookingLine).where(BookingLine.booking_id.in_(ids))
        ):
            ledger.lines[line.booking_id].append(line)
        for payment in await session.scalars(select(Payment).where(Payment.booking_id.in_(ids))):
            ledger.payments[payment.booking_id].append(payment)
        for item in await session.scalars(select(Refund).where(Refund.booking_id.in_(ids))):
            ledger.refunds.setdefault(item.booking_id, []).append(item)
        for ticket in await session.scalars(select(Ticket).where(Ticket.showtime_id == sid)):
            ledger.tickets.setdefault(ticket.booking_id, []).append(ticket)
        rows = await session.execute(
            select(Seat.label, ShowtimeSeat.booking_id)
            .join(Seat, Seat.id == ShowtimeSeat.seat_id)
            .where(ShowtimeSeat.showtime_id == sid, ShowtimeSeat.status == "booked")
        )
        ledger.booked_rows = {row.label: row.booking_id for row in rows}
    return ledger


async def assert_never_sold_twice(app: FastAPI) -> None:
    async with app.state.db.session() as session:
        doubles = (
            await session.execute(
                text(
                    "SELECT showtime_id, seat_id, count(*) FROM tickets WHERE status != 'void' "
                    "GROUP BY showtime_id, seat_id HAVING count(*) > 1"
                )
            )
        ).all()
    assert doubles == []


async def assert_consistent(app: FastAPI, http: httpx.AsyncClient, showtime_id: str) -> Ledger:
    """Seats, tickets, bookings and money agree. Call it when no hold can lapse meanwhile."""
    await assert_never_sold_twice(app)
    ledger = await read_ledger(app, showtime_id)
    seats = await seat_map(http, showtime_id)
    showtime = ok(await http.get(f"/api/showtimes/{showtime_id}"))

    # One seat map, one count: the map's booked seats are the valid tickets are the seats of
    # confirmed bookings (less the seats refunded one by one).
    booked_on_map = sorted(label for label, status in seats.items() if status == "booked")
    live_tickets = sorted(
        t.seat_label for ts in ledger.tickets.values() for t in ts if t.status != "void"
    )
    confirmed = {i: b for i, b in ledger.bookings.items() if b.status in ("confirmed", "used")}
    sold_lines = sorted(
        line.seat_label for i in confirmed for line in ledger.lines[i] if not line.refunded
    )
    assert booked_on_map == live_tickets == sold_lines
    assert sorted(ledger.booked_rows) == booked_on_map
    for label, booking_id in ledger.booked_rows.items():
        assert booking_id in confirmed, label
    available = sum(status == "available" for status in seats.values())
    assert showtime["availableSeats"] == available
    assert showtime["totalSeats"] == len(seats)

    taken_total = ZERO
    refunded_total = ZERO
    confirmed_total = ZERO
    for booking_id, booking in ledger.bookings.items():
        payments = ledger.payments[booking_id]
        paid = [p for p in payments if p.status in MONEY_TAKEN]
        refunds = ledger.refunds.get(booking_id, [])
        tickets = ledger.tickets.get(booking_id, [])
        assert all(r.status == "succeeded" for r in refunds)
        refunded = sum((r.amount for r in refunds), ZERO)
        taken_total += sum((p.amount for p in paid), ZERO)
        refunded_total += refunded
        # Never more back than was paid, and the payment's books agree with its refunds.
        assert refunded == sum((p.refunded_amount for p in paid), ZERO), booking_id
        for p in paid:
            assert p.refunded_amount <= p.amount
        assert booking.final_amount == sum(line.unit_price for line in ledger.lines[booking_id])
        if booking.status in ("confirmed", "used"):
            assert len(paid) == 1, (booking_id, [p.status for p in payments])
            assert paid[0].amount == booking.final_amount
            assert paid[0].status in ("succeeded", "partially_refunded")
            assert booking.refunded_amount == refunded < booking.final_amount
            open_lines = sorted(
                line.seat_label for line in ledger.lines[booking_id] if not line.refunded
            )
            assert sorted(t.seat_label for t in tickets if t.status != "void") == open_lines
            confirmed_total += booking.final_amount - booking.refunded_amount
        elif booking.status == "refunded":
            assert booking.refunded_amount == booking.final_amount, booking_id
            assert [p.status for p in paid] == ["refunded"], booking_id
            assert refunded == paid[0].amount == booking.final_amount, booking_id
            assert all(t.status == "void" for t in tickets), booking_id
        else:  # pending, expired, cancelled: nothing sold, and any money that came is back
            assert booking.status in ("pending", "expired", "cancelled"), booking.status
            assert tickets == [], booking_id
            assert all(p.status == "refunded" and p.refunded_amount == p.amount for p in paid)
    assert taken_total - refunded_total == confirmed_total
    return ledger


# ---------------------------------------------------------------------------------------------
# a. The rush


@dataclass
class Rush:
    http: httpx.AsyncClient
    showtime_id: str
    labels: list[str]
    short: bool  # short TTLs: holds lapse and payments arrive after their booking expired
    hold_ttl: float
    booking_ttl: float
    deadline: float
    sold_out: asyncio.Event = field(default_factory=asyncio.Event)
    outcomes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    told: dict[str, str] = field(default_factory=dict)  # booking id -> last status we were told
    latency: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def over(self) -> bool:
        return self.sold_out.is_set() or time.monotonic() > self.deadline

    def time_for(self, seconds: float) -> bool:
        """Room left in the budget to wait this long (and a little more)."""
        return time.monotonic() + seconds + 1 < self.deadline

    async def call(self, step: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        response = await self.http.request(method, url, **kwargs)
        self.latency[step].append(time.monotonic() - started)
        if response.status_code >= 500:
            self.server_errors.append(f"{step} {method} {url}: {response.text}")
        self.outcomes[f"{step} {response.status_code} {problem_code(response) or ''}".strip()] += 1
        return response

    def expect(self, response: httpx.Response, *allowed: tuple[int, str | None]) -> None:
        """The answer is one of the allowed (status, problem code) pairs."""
        assert (response.status_code, problem_code(response)) in allowed, response.text


def problem_code(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        code: str | None = response.json().get("code")
    except ValueError:  # not even problem+json: a crash
        return "(no problem body)"
    return code


async def customer(rush: Rush, user: TestUser, rng: random.Random, persona: str = "") -> None:
    """One customer's loop. A `lapse` customer leaves the first hold to run out, a `late` one
    pays the first booking after its deadline (with short TTLs), whatever the dice say."""
    headers = user.headers
    sid = rush.showtime_id
    refunds_left = 1
    idle_hold: str | None = None  # a hold this customer walked away from (long TTLs)
    while not rush.over():
        started = time.monotonic()
        seats = await seat_map(rush.http, sid)
        rush.latency["seat-map"].append(time.monotonic() - started)
        free = [label for label, status in seats.items() if status == "available"]
        if not free:
            if all(status == "booked" for status in seats.values()):
                rush.sold_out.set()
                return
            if idle_hold:  # give back what we sit on, or the hall never sells out
                response = await rush.call(
                    "release", "DELETE", f"/api/bookings/lock-seats/{idle_hold}", headers=headers
                )
                rush.expect(response, (204, None))
                idle_hold = None
            await asyncio.sleep(0.05)
            continue

        # Hold: best available, random seats (conflicts are the point) or seats the map shows.
        quantity = rng.randint(1, 4)
        roll = rng.random()
        if roll < 0.15:
            response = await rush.call(
                "lock-best",
                "POST",
                "/api/bookings/lock-best",
                json={"showtimeId": sid, "quantity": quantity},
                headers=headers,
            )
            rush.expect(response, (201, None), (409, "no_seats_available"))
        else:
            pool = rush.labels if roll < 0.35 else free
            wanted = rng.sample(pool, min(quantity, len(pool)))
            response = await rush.call(
                "hold",
                "POST",
                "/api/bookings/lock-seats",
                json={"showtimeId": sid, "seatNumbers": wanted},
                headers=headers,
            )
            rush.expect(response, (201, None), (409, "seats_unavailable"))
        if response.status_code != 201:
            continue
        held = response.json()
        idle_hold = None  # the new hold replaced it

        roll = rng.random()
        if persona == "lapse":
            roll, persona = 0.15, ""
        if roll < 0.1:
            response = await rush.call(
                "release",
                "DELETE",
                f"/api/bookings/lock-seats/{held['lockToken']}",
                headers=headers,
            )
            rush.expect(response, (204, None))
            continue
        if roll < 0.2:
            if not (rush.short and rush.time_for(rush.hold_ttl)):
                idle_hold = held["lockToken"]
                continue
            await asyncio.sleep(rush.hold_ttl + rng.uniform(0.1, 0.5))
            response = await rush.call(
                "book-late", "POST", "/api/bookings", **book_args(held, user)
            )
            rush.expect(response, (410, "hold_expired"))
            continue

        response = await rush.call(
            "book", "POST", "/api/bookings", **book_args(held, user, str(uuid.uuid4()))
        )
        if rush.short:  # a slow moment can outlast a two-second hold
            rush.expect(response, (201, None), (410, "hold_expired"))
        else:
            rush.expect(response, (201, None))
        if response.status_code != 201:
            continue
        created = response.json()
        booking = created["booking"]
        intent = created["paymentIntentId"]
        rush.told[booking["id"]] = "pending"

        roll = rng.random()
        if persona == "late":
            roll, persona = 0.2, ""
        if roll < 0.08:
            response = await rush.call(
                "cancel", "POST", f"/api/bookings/{booking['id']}/cancel", headers=headers
            )
            if rush.short:  # the expiry job may have been first
                rush.expect(
                    response,
                    (200, None),
                    (409, "booking_not_cancellable"),
                    (409, "refund_not_allowed"),
                )
            else:
                rush.expect(response, (200, None))
            if response.status_code == 200:
                assert response.json()["status"] == "cancelled"
                rush.told[booking["id"]] = "cancelled"
            continue
        late = rush.short and roll < 0.25 and rush.time_for(rush.booking_ttl + 1.5)
        if late:  # pay after the booking expired: confirmed if the seats are still free
            await asyncio.sleep(rush.booking_ttl + rng.uniform(0.05, 1.5))
        elif roll < 0.35:
            response = await rush.call(
                "pay-declined",
                "POST",
                "/api/payments/local/confirm",
                **pay_args(intent, user, BAD_CARD),
            )
            if rush.short:
                rush.expect(response, (402, "card_declined"), (409, "illegal_payment_transition"))
            else:
                rush.expect(response, (402, "card_declined"))
        # Now and then the pay button is pressed twice: both answer, one payment.
        clicks = 2 if roll > 0.9 else 1
        step = "pay-late" if late else "pay-twice" if clicks == 2 else "pay"
        responses = await asyncio.gather(
            *(
                rush.call(step, "POST", "/api/payments/local/confirm", **pay_args(intent, user))
                for _ in range(clicks)
            )
        )
        statuses = set()
        for response in responses:
            if rush.short:
                # Late (or slow): the expiry job may have cancelled the intent first.
                rush.expect(response, (200, None), (409, "illegal_payment_transition"))
            else:
                rush.expect(response, (200, None))
            if response.status_code == 200:
                statuses.add(response.json()["bookingStatus"])
        assert len(statuses) <= 1, statuses
        if not statuses:
            continue
        status = statuses.pop()
        assert status in (("confirmed", "refunded") if rush.short else ("confirmed",)), status
        rush.told[booking["id"]] = status

        if status == "confirmed" and refunds_left and rng.random() < 0.2:
            refunds_left -= 1
            seat_labels = booking["seatNumbers"]
            if len(seat_labels) > 1 and rng.random() < 0.5:
                response = await rush.call(
                    "refund-seat",
                    "POST",
                    "/api/payments/refund",
                    json={"bookingId": booking["id"], "seatNumbers": [seat_labels[0]]},
                    headers=headers,
                )
                rush.expect(response, (200, None))
                assert response.json()["bookingStatus"] == "confirmed"
            else:
                response = await rush.call(
                    "refund",
                    "POST",
                    "/api/payments/refund",
                    json={"bookingId": booking["id"]},
                    headers=headers,
                )
                rush.expect(response, (200, None))
                assert response.json()["bookingStatus"] == "refunded"
                rush.told[booking["id"]] = "refunded"


RUSH_BUDGET = 15.0  # seconds; the hall usually sells out sooner
SHORT_TTLS = {"hold_ttl": 2, "booking_ttl": 3, "expiry_interval_seconds": 1}


@pytest.mark.parametrize("ttls", ["default", "short"])
async def test_the_rush_never_sells_a_seat_twice(
    app: FastAPI, live: LiveServer, start_server: ServerFactory, ttls: str
) -> None:
    """40 customers race for a hall of 10 rows of 12 through hold → book → pay (with
    releases, lapses, cancellations, declined cards, double clicks, late payments and
    refunds) until it is sold out; then every count agrees and nothing was sold twice."""
    await reset_database(app)
    server = await start_server(**SHORT_TTLS) if ttls == "short" else live
    short = ttls == "short"
    show = await seed_showtime(app, rows=10, seats_per_row=12)
    users = await asyncio.gather(*(make_user(app) for _ in range(40)))
    async with server.client() as http:
        labels = sorted(await seat_map(http, show.showtime_id))
        assert len(labels) == 120
        rush = Rush(
            http,
            show.showtime_id,
            labels,
            short=short,
            hold_ttl=SHORT_TTLS["hold_ttl"] if short else 600,
            booking_ttl=SHORT_TTLS["booking_ttl"] if short else 900,
            deadline=time.monotonic() + RUSH_BUDGET,
        )
        seed = random.randrange(1 << 30)
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for n, user in enumerate(users):
                persona = {0: "lapse", 1: "late"}.get(n % 10, "")
                group.create_task(customer(rush, user, random.Random(seed + n), persona))
        took = time.monotonic() - started
        print(
            f"rush ({ttls}, seed {seed}) took {took:.1f} s: {dict(sorted(rush.outcomes.items()))}"
        )
        for step, values in sorted(rush.latency.items()):
            values.sort()
            print(
                f"  {step}: n={len(values)} p50={values[len(values) // 2] * 1000:.0f} ms "
                f"max={values[-1] * 1000:.0f} ms"
            )
        assert rush.server_errors == []
        if short:  # let every hold and unpaid booking lapse, so the counts hold still
            await asyncio.sleep(SHORT_TTLS["booking_ttl"] + 0.5)
        ledger = await assert_consistent(app, http, show.showtime_id)
    print(f"  sold {len(ledger.booked_rows)} of 120 seats in {len(ledger.bookings)} bookings")
    assert server.logged_errors() == []

    # What every customer was last told is what the database says.
    for booking_id, status in rush.told.items():
        stored = ledger.bookings[uuid.UUID(booking_id)].status
        if status == "pending":
            assert stored in ("pending", "expired"), (booking_id, stored)
        else:
            assert stored == status, (booking_id, stored, status)
    # The race really happened: seats were fought over and sold.
    assert rush.outcomes["hold 409 seats_unavailable"] > 0
    assert sum(b.status == "confirmed" for b in ledger.bookings.values()) >= 10
    if short:  # and holds ran out, and payments came after their deadline
        assert rush.outcomes["book-late 410 hold_expired"] > 0
        assert sum(n for step, n in rush.outcomes.items() if step.startswith("pay-late")) > 0


# ---------------------------------------------------------------------------------------------
# b. Scanners racing on one ticket


@pytest.mark.parametrize("scanners", [2, 10])
async def test_scanners_racing_on_one_ticket_admit_it_once(
    app: FastAPI, live: LiveServer, scanners: int
) -> None:
    await reset_database(app)
    show = await seed_showtime(app, rows=2, seats_per_row=6, starts_in=dt.timedelta(minutes=10))
    customer = await make_user(app)
    staff = [await make_user(app, "cashier") for _ in range(scanners)]
    async with live.client() as http:
        booking = await buy(http, customer, show.showtime_id, ["A1", "A2", "A3", "A4"])
        tickets = ok(
            await http.get(f"/api/bookings/{booking['id']}/tickets", headers=customer.headers)
        )
        tokens = [t["qrToken"] for t in tickets["tickets"]]
        assert len(tokens) == 4
        await warm_up(http, 4 * scanners)

        async def scan(user: TestUser, token: str) -> dict[str, Any]:
            return ok(
                await http.post("/api/checkin", json={"qrToken": token}, headers=user.headers)
            )

        # Every ticket of the booking is read by every scanner at once.
        results = await asyncio.gather(*(scan(user, token) for token in tokens for user in staff))
        stored = ok(await http.get(f"/api/bookings/{booking['id']}", headers=customer.headers))
    for i in range(4):
        per_ticket = results[i * scanners : (i + 1) * scanners]
        assert sorted(r["result"] for r in per_ticket) == ["already_used"] * (scanners - 1) + [
            "valid"
        ]
        assert len({r["usedAt"] for r in per_ticket}) == 1  # all name the one admission
    async with app.state.db.session() as session:
        statuses = (
            await session.scalars(
                select(Ticket.status).where(Ticket.booking_id == uuid.UUID(booking["id"]))
            )
        ).all()
    assert statuses == ["used"] * 4
    assert live.logged_errors() == []
    assert stored["booking"]["status"] == "used"


# ---------------------------------------------------------------------------------------------
# c. Concurrent refunds of one booking


async def test_concurrent_refunds_of_one_booking_refund_once(
    app: FastAPI, live: LiveServer
) -> None:
    await reset_database(app)
    show = await seed_showtime(app, rows=3, seats_per_row=8)
    owner = await make_user(app)
    operator = await make_user(app, "operator")
    async with live.client() as http:
        whole = await buy(http, owner, show.showtime_id, ["A1", "A2", "A3", "A4"])
        by_amount = await buy(http, owner, show.showtime_id, ["B1", "B2", "B3", "B4"])
        by_seat = await buy(http, owner, show.showtime_id, ["C1", "C2"])
        await warm_up(http, 30)

        # The whole booking: the owner, the box office and cancel buttons, all at once.
        calls = [refund(http, owner, bookingId=whole["id"]) for _ in range(4)]
        calls += [refund(http, operator, bookingId=whole["id"], reason="desk") for _ in range(4)]
        calls += [
            http.post(f"/api/bookings/{whole['id']}/cancel", headers=owner.headers)
            for _ in range(2)
        ]
        # Staff goodwill amounts: ten of 3/8 of the price at once; two fit, a third would not.
        part = (Decimal(by_amount["finalAmount"]) * 3 / 8).quantize(Decimal("0.01"))
        calls += [
            refund(http, operator, bookingId=by_amount["id"], amount=str(part)) for _ in range(10)
        ]
        # One seat refunded ten times at once.
        calls += [
            refund(http, owner, bookingId=by_seat["id"], seatNumbers=["C1"]) for _ in range(10)
        ]
        answers = await asyncio.gather(*calls)
        ledger = await assert_consistent(app, http, show.showtime_id)
        seats = await seat_map(http, show.showtime_id)

    assert all(a.status_code < 500 for a in answers), [
        a.text for a in answers if a.status_code >= 500
    ]
    whole_answers, amount_answers, seat_answers = answers[:10], answers[10:20], answers[20:]
    assert sorted(a.status_code for a in whole_answers) == [200] + [409] * 9, [
        a.text for a in whole_answers
    ]
    assert {a.json()["code"] for a in whole_answers if a.status_code == 409} <= {
        "refund_not_allowed",
        "booking_not_cancellable",
        "refund_exceeds_payment",
    }
    assert sorted(a.status_code for a in amount_answers) == [200] * 2 + [409] * 8
    assert {a.json()["code"] for a in amount_answers if a.status_code == 409} == {
        "refund_exceeds_payment"
    }
    assert sorted(a.status_code for a in seat_answers) == [200] + [409] * 9

    for booking_id, refunded, status in (
        (whole["id"], Decimal(whole["finalAmount"]), "refunded"),
        (by_amount["id"], 2 * part, "confirmed"),
        (by_seat["id"], Decimal(by_seat["lines"][0]["unitPrice"]), "confirmed"),
    ):
        stored = ledger.bookings[uuid.UUID(booking_id)]
        payment = ledger.payments[stored.id][0]
        assert stored.status == status
        assert stored.refunded_amount == payment.refunded_amount == refunded <= payment.amount
        assert sum(r.amount for r in ledger.refunds[stored.id]) == refunded
    assert [seats[label] for label in ("A1", "A2", "A3", "A4", "C1")] == ["available"] * 5
    assert [seats[label] for label in ("B1", "B2", "B3", "B4", "C2")] == ["booked"] * 5
    assert live.logged_errors() == []


# ---------------------------------------------------------------------------------------------
# d. Idempotent replays


async def test_concurrent_replays_of_one_idempotency_key_book_once(
    app: FastAPI, live: LiveServer
) -> None:
    await reset_database(app)
    show = await seed_showtime(app, rows=3, seats_per_row=8)
    ann, bob = await make_user(app), await make_user(app)
    async with live.client() as http:
        await warm_up(http, 20)
        # Ten identical POST /api/bookings with one key: one booking, ten equal answers.
        held = ok(await hold(http, ann, show.showtime_id, ["A1", "A2"]), 201)
        key = str(uuid.uuid4())
        answers = await asyncio.gather(*(book(http, ann, held, key) for _ in range(10)))
        assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers]
        assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
        created = answers[0].json()
        intent = created["paymentIntentId"]

        # The same key with another body is refused.
        other = ok(await hold(http, ann, show.showtime_id, ["C1"]), 201)
        reused = await book(http, ann, other, key)
        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"

        # Ten payments of it with one key: one charge, ten equal answers.
        pay_key = str(uuid.uuid4())
        paid = await asyncio.gather(*(pay(http, ann, intent, key=pay_key) for _ in range(10)))
        assert [p.status_code for p in paid] == [200] * 10, [p.text for p in paid]
        assert {p.json()["bookingStatus"] for p in paid} == {"confirmed"}

        # Without a key, the hold itself makes a double booking impossible.
        held = ok(await hold(http, bob, show.showtime_id, ["B1", "B2", "B3"]), 201)
        plain = await asyncio.gather(*(book(http, bob, held) for _ in range(10)))
        assert sorted(a.status_code for a in plain) == [201] + [409] * 9, [a.text for a in plain]
        assert {a.json()["code"] for a in plain if a.status_code == 409} == {"hold_already_booked"}
        bob_intent = next(a for a in plain if a.status_code == 201).json()["paymentIntentId"]
        paid = await asyncio.gather(*(pay(http, bob, bob_intent) for _ in range(10)))
        assert [p.status_code for p in paid] == [200] * 10, [p.text for p in paid]

        ledger = await assert_consistent(app, http, show.showtime_id)
    by_user = Counter(b.user_id for b in ledger.bookings.values())
    assert by_user == {ann.id: 1, bob.id: 1}
    for booking in ledger.bookings.values():
        assert booking.status == "confirmed"
        assert [p.status for p in ledger.payments[booking.id]] == ["succeeded"]
        assert len(ledger.tickets[booking.id]) == len(ledger.lines[booking.id])
    async with app.state.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 2
    assert live.logged_errors() == []


# ---------------------------------------------------------------------------------------------
# e. A payment after expiry, both ways


async def _wait_past(deadline: str) -> None:
    left = dt.datetime.fromisoformat(deadline) - dt.datetime.now(dt.UTC)
    await asyncio.sleep(max(0.0, left.total_seconds()) + 0.2)


async def test_a_payment_after_expiry_confirms_or_refunds(
    app: FastAPI, start_server: ServerFactory
) -> None:
    """Late payments: confirmed when the seats are still free, refunded at once when someone
    else holds them, and of a late payment and a new hold racing, exactly one wins."""
    await reset_database(app)
    # The expiry job is off: the late payment finds its intent still pending.
    server = await start_server(booking_ttl=2, hold_ttl=60, expiry_interval_seconds=0)
    show = await seed_showtime(app, rows=10, seats_per_row=12)
    late, rival = await make_user(app), await make_user(app)
    pairs = [(await make_user(app), await make_user(app)) for _ in range(8)]
    async with server.client() as http:
        # Book: A1-A2 (stay free), B1-B2 (B2 goes to a rival), and one pair per row C..J.
        free_b = await reserve(http, late, show.showtime_id, ["A1", "A2"])
        lost_b = await reserve(http, late, show.showtime_id, ["B1", "B2"])
        raced = [
            await reserve(http, payer, show.showtime_id, [f"{row}5", f"{row}6"])
            for (payer, _), row in zip(pairs, "CDEFGHIJ", strict=True)
        ]
        await _wait_past(raced[-1]["booking"]["expiresAt"])

        detail = ok(
            await http.get(f"/api/bookings/{free_b['booking']['id']}", headers=late.headers)
        )
        assert detail["booking"]["status"] == "expired"
        seats = await seat_map(http, show.showtime_id)
        assert seats["A1"] == seats["B2"] == seats["C5"] == "available"

        # The seats are still free: the late payment is honoured.
        paid = ok(await pay(http, late, free_b["paymentIntentId"]))
        assert paid["bookingStatus"] == "confirmed"
        tickets = ok(
            await http.get(f"/api/bookings/{free_b['booking']['id']}/tickets", headers=late.headers)
        )
        assert sorted(t["seatLabel"] for t in tickets["tickets"]) == ["A1", "A2"]

        # Someone else holds B2 now: the late payment is refunded in full at once.
        await buy(http, rival, show.showtime_id, ["B2", "B3"])
        paid = ok(await pay(http, late, lost_b["paymentIntentId"]))
        assert paid["bookingStatus"] == "refunded"
        assert paid["status"] == "refunded"
        lost = ok(await http.get(f"/api/bookings/{lost_b['booking']['id']}", headers=late.headers))
        assert lost["booking"]["status"] == "refunded"
        assert lost["booking"]["refundedAmount"] == lost["booking"]["finalAmount"]

        # A late payment and a new hold of the same seats at the same moment: one wins.
        await warm_up(http, 16)
        outcomes = await asyncio.gather(
            *(
                asyncio.gather(
                    pay(http, payer, booking["paymentIntentId"]),
                    hold(http, grabber, show.showtime_id, booking["booking"]["seatNumbers"]),
                )
                for (payer, grabber), booking in zip(pairs, raced, strict=True)
            )
        )
        for paid_answer, hold_answer in outcomes:
            status = ok(paid_answer)["bookingStatus"]
            if status == "confirmed":
                assert hold_answer.status_code == 409, hold_answer.text
                assert hold_answer.json()["code"] == "seats_unavailable"
            else:
                assert status == "refunded"
                assert hold_answer.status_code == 201, hold_answer.text
        print(
            "late payment won",
            sum(ok(p)["bookingStatus"] == "confirmed" for p, _ in outcomes),
            "of 8",
        )

        seats = await seat_map(http, show.showtime_id)
        ledger = await assert_consistent(app, http, show.showtime_id)
    assert seats["B1"] == "available"  # freed by the refunded booking
    assert seats["B2"] == seats["A1"] == "booked"
    lost_id = uuid.UUID(lost_b["booking"]["id"])
    assert ledger.tickets.get(lost_id, []) == []
    assert [r.amount for r in ledger.refunds[lost_id]] == [Decimal(lost["booking"]["finalAmount"])]
    assert server.logged_errors() == []
