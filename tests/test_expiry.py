"""Unpaid bookings past their deadline: expired on read, recorded by the expiry job (safe to
run twice or concurrently), and a payment that arrives afterwards, both ways."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from boxoffice.booking.models import Booking
from boxoffice.booking.service import expire_due_bookings
from boxoffice.payments.models import Payment, Refund
from boxoffice.payments.service import PaymentContext
from boxoffice.scheduling.models import ShowtimeSeat
from tests.booking_helpers import book, book_and_pay, hold, pay, seat_statuses, seed_showtime
from tests.helpers import make_user

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]
# Bookings (and holds) of `short` expire after a second; nothing expires them in the background.
SHORT = {"booking_ttl": 1, "hold_ttl": 1, "expiry_interval_seconds": 0}


async def _booking_row(app: FastAPI, booking_id: str) -> Booking:
    async with app.state.db.session(write=False) as session:
        booking = await session.get(Booking, uuid.UUID(booking_id))
        assert booking is not None
        return booking


async def _payments(app: FastAPI, booking_id: str) -> list[Payment]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(Payment).where(Payment.booking_id == uuid.UUID(booking_id))
        )
        return list(rows)


async def _inventory(app: FastAPI, booking_id: str) -> list[Any]:
    """The inventory rows that still point at the booking."""
    async with app.state.db.session(write=False) as session:
        rows = await session.execute(
            select(ShowtimeSeat.status).where(ShowtimeSeat.booking_id == uuid.UUID(booking_id))
        )
        return list(rows.scalars())


async def _run_job(app: FastAPI) -> int:
    async with app.state.db.session() as session:
        return await expire_due_bookings(session, PaymentContext.of(app))


async def test_a_pending_booking_past_its_deadline_reads_as_expired(
    make_client: MakeClient, app: FastAPI
) -> None:
    short = await make_client(**SHORT)
    show = await seed_showtime(app)
    ann = await make_user(app)
    booking = (await book(short, ann.headers, show.showtime_id, "A1"))["booking"]
    await asyncio.sleep(1.2)

    read = await short.get(f"/api/bookings/{booking['id']}", headers=ann.headers)
    assert read.json()["booking"]["status"] == "expired"
    mine = await short.get("/api/me/bookings", headers=ann.headers)
    assert [b["status"] for b in mine.json()["bookings"]] == ["expired"]
    assert (await seat_statuses(short, show.showtime_id))["A1"]["status"] == "available"
    # Read lazily: no job has recorded it yet.
    assert (await _booking_row(app, booking["id"])).status == "pending"


async def test_a_payment_after_expiry_confirms_when_the_seats_are_still_free(
    make_client: MakeClient, app: FastAPI
) -> None:
    short = await make_client(**SHORT)
    show = await seed_showtime(app)
    ann = await make_user(app)
    answer = await book(short, ann.headers, show.showtime_id, "C3", "C4")
    booking_id = answer["booking"]["id"]
    await asyncio.sleep(1.2)
    assert (await seat_statuses(short, show.showtime_id))["C3"]["status"] == "available"

    paid = await pay(short, ann.headers, answer["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["bookingStatus"] == "confirmed"
    read = await short.get(f"/api/bookings/{booking_id}", headers=ann.headers)
    assert read.json()["booking"]["status"] == "confirmed"
    seats = await seat_statuses(short, show.showtime_id)
    assert seats["C3"]["status"] == seats["C4"]["status"] == "booked"
    tickets = await short.get(f"/api/bookings/{booking_id}/tickets", headers=ann.headers)
    assert sorted(t["seatLabel"] for t in tickets.json()["tickets"]) == ["C3", "C4"]


@pytest.mark.parametrize("bob_went", ["held", "booked", "paid"])
async def test_a_payment_after_expiry_is_refunded_when_the_seats_went_elsewhere(
    make_client: MakeClient, app: FastAPI, bob_went: str
) -> None:
    short = await make_client(**SHORT)
    normal = await make_client(expiry_interval_seconds=0)  # Bob's hold and booking last
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    answer = await book(short, ann.headers, show.showtime_id, "C3", "C4")
    booking_id = answer["booking"]["id"]
    await asyncio.sleep(1.2)

    # Bob takes C4 (and C5) after Ann's deadline, before her money arrives.
    if bob_went == "held":
        assert (await hold(normal, bob.headers, show.showtime_id, "C4", "C5")).status_code == 201
    elif bob_went == "booked":
        await book(normal, bob.headers, show.showtime_id, "C4", "C5")
    else:
        await book_and_pay(normal, bob.headers, show.showtime_id, "C4", "C5")

    paid = await pay(short, ann.headers, answer["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["bookingStatus"] == "refunded"
    read = (await short.get(f"/api/bookings/{booking_id}", headers=ann.headers)).json()
    assert read["booking"]["status"] == "refunded"
    assert read["booking"]["refundedAmount"] == read["booking"]["finalAmount"] == "20.00"
    (payment,) = await _payments(app, booking_id)
    assert payment.status == "refunded"
    assert payment.refunded_amount == payment.amount
    async with app.state.db.session(write=False) as session:
        refunds = list(
            await session.scalars(select(Refund).where(Refund.booking_id == payment.booking_id))
        )
    assert [r.amount for r in refunds] == [payment.amount]

    tickets = await short.get(f"/api/bookings/{booking_id}/tickets", headers=ann.headers)
    assert tickets.json()["tickets"] == []
    seats = await seat_statuses(normal, show.showtime_id, bob.headers)
    assert seats["C3"]["status"] == "available"  # Ann's other seat is not kept either
    expected = "booked" if bob_went == "paid" else "held"
    assert seats["C4"]["status"] == seats["C5"]["status"] == expected
    assert await _inventory(app, booking_id) == []
    if bob_went == "booked":  # Bob can still pay for his seats
        bobs = (await normal.get("/api/me/bookings", headers=bob.headers)).json()["bookings"]
        (bobs_booking,) = bobs
        intent = (
            await normal.post(
                "/api/payments/create-intent",
                json={"bookingId": bobs_booking["id"]},
                headers=bob.headers,
            )
        ).json()["paymentIntentId"]
        confirmed = await pay(normal, bob.headers, intent)
        assert confirmed.json()["bookingStatus"] == "confirmed"
        seats = await seat_statuses(normal, show.showtime_id)
        assert seats["C4"]["status"] == seats["C5"]["status"] == "booked"


# ---------------------------------------------------------------------------------------------
# The expiry job


async def test_the_expiry_job_records_expiries_frees_seats_and_cancels_intents(
    make_client: MakeClient, app: FastAPI
) -> None:
    short = await make_client(**SHORT)
    normal = await make_client(expiry_interval_seconds=0)
    show = await seed_showtime(app)
    ann, bob, cy = await make_user(app), await make_user(app), await make_user(app)
    due = [
        (ann, await book(short, ann.headers, show.showtime_id, "A1", "A2")),
        (bob, await book(short, bob.headers, show.showtime_id, "B1")),
    ]
    live = await book(normal, cy.headers, show.showtime_id, "C1")
    paid = await book_and_pay(short, cy.headers, show.showtime_id, "D1")
    await asyncio.sleep(1.2)

    assert await _run_job(app) == 2
    for user, answer in due:
        booking_id = answer["booking"]["id"]
        assert (await _booking_row(app, booking_id)).status == "expired"
        assert await _inventory(app, booking_id) == []
        assert [p.status for p in await _payments(app, booking_id)] == ["cancelled"]
        late = await pay(short, user.headers, answer["paymentIntentId"])
        assert late.status_code == 409  # the intent is cancelled: nothing can be charged
    assert (await _booking_row(app, live["booking"]["id"])).status == "pending"
    assert await _inventory(app, live["booking"]["id"]) == ["held"]
    assert (await _booking_row(app, paid["id"])).status == "confirmed"
    assert await _inventory(app, paid["id"]) == ["booked"]
    seats = await seat_statuses(short, show.showtime_id)
    assert [seats[label]["status"] for label in ("A1", "A2", "B1", "C1", "D1")] == [
        "available",
        "available",
        "available",
        "held",
        "booked",
    ]

    # Running it again changes nothing.
    assert await _run_job(app) == 0
    assert (await _booking_row(app, due[0][1]["booking"]["id"])).status == "expired"
    assert (await _booking_row(app, live["booking"]["id"])).status == "pending"


async def test_the_expiry_job_does_not_free_seats_someone_took_since(
    make_client: MakeClient, app: FastAPI
) -> None:
    short = await make_client(**SHORT)
    normal = await make_client(expiry_interval_seconds=0)
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    answer = await book(short, ann.headers, show.showtime_id, "E1", "E2")
    await asyncio.sleep(1.2)
    bobs = await book(normal, bob.headers, show.showtime_id, "E2", "E3")

    assert await _run_job(app) == 1
    assert (await _booking_row(app, answer["booking"]["id"])).status == "expired"
    assert sorted(await _inventory(app, bobs["booking"]["id"])) == ["held", "held"]
    seats = await seat_statuses(normal, show.showtime_id)
    assert seats["E1"]["status"] == "available"
    assert seats["E2"]["status"] == seats["E3"]["status"] == "held"
    assert (await pay(normal, bob.headers, bobs["paymentIntentId"])).json()[
        "bookingStatus"
    ] == "confirmed"


async def test_concurrent_expiry_jobs_expire_each_booking_once(
    make_client: MakeClient, app: FastAPI
) -> None:
    short = await make_client(**SHORT)
    show = await seed_showtime(app)
    users = [await make_user(app) for _ in range(6)]
    answers = [
        await book(short, user.headers, show.showtime_id, f"B{n}")
        for n, user in enumerate(users, start=1)
    ]
    await asyncio.sleep(1.2)

    counts = await asyncio.gather(_run_job(app), _run_job(app), _run_job(app))
    assert sum(counts) == len(answers), counts
    for answer in answers:
        booking_id = answer["booking"]["id"]
        assert (await _booking_row(app, booking_id)).status == "expired"
        assert [p.status for p in await _payments(app, booking_id)] == ["cancelled"]
        assert await _inventory(app, booking_id) == []
    assert await _run_job(app) == 0


async def test_the_in_process_job_expires_bookings_by_itself(
    make_client: MakeClient, app: FastAPI
) -> None:
    client = await make_client(booking_ttl=1, expiry_interval_seconds=1)
    show = await seed_showtime(app)
    ann = await make_user(app)
    answer = await book(client, ann.headers, show.showtime_id, "A5", "A6")
    booking_id = answer["booking"]["id"]

    deadline = time.monotonic() + 3.5
    while (await _booking_row(app, booking_id)).status != "expired":
        assert time.monotonic() < deadline, "the expiry job did not run"
        await asyncio.sleep(0.1)
    assert await _inventory(app, booking_id) == []
    assert [p.status for p in await _payments(app, booking_id)] == ["cancelled"]
