"""Refunds of paid bookings (`POST /api/payments/refund` and cancelling a confirmed booking):
who may refund when, whole or by seat, the cancellation fee, staff money-only refunds, and
money never refunded twice or beyond what was paid."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from boxoffice.payments.models import Payment, Refund
from tests.booking_helpers import book_and_pay, hold, seat_statuses, seed_showtime
from tests.helpers import TestUser, make_user

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


async def _refund(
    client: httpx.AsyncClient, user: TestUser, booking_id: str, **fields: Any
) -> httpx.Response:
    return await client.post(
        "/api/payments/refund", json={"bookingId": booking_id, **fields}, headers=user.headers
    )


async def _booking(client: httpx.AsyncClient, user: TestUser, booking_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/bookings/{booking_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    booking: dict[str, Any] = response.json()["booking"]
    return booking


async def _tickets(client: httpx.AsyncClient, user: TestUser, booking_id: str) -> dict[str, Any]:
    """Seat label -> ticket."""
    response = await client.get(f"/api/bookings/{booking_id}/tickets", headers=user.headers)
    assert response.status_code == 200, response.text
    return {t["seatLabel"]: t for t in response.json()["tickets"]}


async def _scan(client: httpx.AsyncClient, scanner: TestUser, token: str) -> dict[str, Any]:
    response = await client.post("/api/checkin", json={"qrToken": token}, headers=scanner.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _money(app: FastAPI, booking_id: str) -> tuple[Payment, list[Refund]]:
    async with app.state.db.session(write=False) as session:
        (payment,) = (
            await session.scalars(
                select(Payment).where(Payment.booking_id == uuid.UUID(booking_id))
            )
        ).all()
        refunds = (
            await session.scalars(select(Refund).where(Refund.booking_id == uuid.UUID(booking_id)))
        ).all()
        return payment, list(refunds)


async def test_owner_refunds_the_whole_booking_before_the_cutoff(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    cashier = await make_user(app, "cashier")
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "D4", "D5")
    tickets = await _tickets(client, ann, booking["id"])

    assert (await _refund(client, bob, booking["id"])).status_code == 404
    response = await _refund(client, ann, booking["id"], reason="cannot come")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["amount"] == "20.00"
    assert body["fee"] == "0.00"
    assert body["status"] == "succeeded"
    assert body["bookingStatus"] == "refunded"
    assert sorted(body["seatNumbers"]) == ["D4", "D5"]

    after = await _booking(client, ann, booking["id"])
    assert after["status"] == "refunded"
    assert after["refundedAmount"] == "20.00"
    assert all(line["refunded"] for line in after["lines"])
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["D4"]["status"] == seats["D5"]["status"] == "available"
    assert {t["status"] for t in (await _tickets(client, ann, booking["id"])).values()} == {"void"}
    scanned = await _scan(client, cashier, tickets["D4"]["qrToken"])
    assert scanned["result"] == "invalid"
    assert scanned["reason"] == "void"
    payment, refunds = await _money(app, booking["id"])
    assert (payment.status, payment.refunded_amount) == ("refunded", Decimal("20.00"))
    assert [r.amount for r in refunds] == [Decimal("20.00")]

    again = await _refund(client, ann, booking["id"])
    assert again.status_code == 409
    assert again.json()["code"] == "refund_not_allowed"
    assert (await hold(client, bob.headers, show.showtime_id, "D4", "D5")).status_code == 201


async def test_after_the_cutoff_only_staff_may_refund(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app, starts_in=dt.timedelta(minutes=30))  # cut-off: 60 min
    ann = await make_user(app)
    operator = await make_user(app, "operator")
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "B1", "B2")

    late = await _refund(client, ann, booking["id"])
    assert late.status_code == 409
    assert late.json()["code"] == "refund_not_allowed"
    assert (await _booking(client, ann, booking["id"]))["status"] == "confirmed"
    assert (await seat_statuses(client, show.showtime_id))["B1"]["status"] == "booked"
    cancel = await client.post(f"/api/bookings/{booking['id']}/cancel", headers=ann.headers)
    assert cancel.status_code == 409

    staff = await _refund(client, operator, booking["id"], reason="goodwill")
    assert staff.status_code == 200, staff.text
    assert staff.json()["amount"] == "20.00"
    assert staff.json()["bookingStatus"] == "refunded"
    assert (await seat_statuses(client, show.showtime_id))["B1"]["status"] == "available"


async def test_the_cutoff_is_configurable(make_client: MakeClient, app: FastAPI) -> None:
    client = await make_client(refund_cutoff_minutes=10, expiry_interval_seconds=0)
    show = await seed_showtime(app, starts_in=dt.timedelta(minutes=30))
    ann = await make_user(app)
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "B1")
    response = await _refund(client, ann, booking["id"])
    assert response.status_code == 200, response.text
    assert response.json()["bookingStatus"] == "refunded"


async def test_refund_by_seat(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app, classes={"C4": "premium"})  # C4 12.00, C5 10.00
    ann = await make_user(app)
    cashier = await make_user(app, "cashier")
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "C4", "C5")
    assert booking["finalAmount"] == "22.00"
    tickets = await _tickets(client, ann, booking["id"])

    first = await _refund(client, ann, booking["id"], seatNumbers=["c4"])
    assert first.status_code == 200, first.text
    assert first.json()["amount"] == "12.00"
    assert first.json()["seatNumbers"] == ["C4"]
    assert first.json()["bookingStatus"] == "confirmed"
    after = await _booking(client, ann, booking["id"])
    assert after["status"] == "confirmed"
    assert after["refundedAmount"] == "12.00"
    assert {line["seatLabel"]: line["refunded"] for line in after["lines"]} == {
        "C4": True,
        "C5": False,
    }
    now_tickets = await _tickets(client, ann, booking["id"])
    assert (now_tickets["C4"]["status"], now_tickets["C5"]["status"]) == ("void", "valid")
    assert (await _scan(client, cashier, tickets["C4"]["qrToken"]))["result"] == "invalid"
    # The kept seat's ticket still opens the door (once doors open).
    assert (await _scan(client, cashier, tickets["C5"]["qrToken"]))["result"] == "not_yet_open"
    seats = await seat_statuses(client, show.showtime_id)
    assert (seats["C4"]["status"], seats["C5"]["status"]) == ("available", "booked")

    twice = await _refund(client, ann, booking["id"], seatNumbers=["C4"])
    assert twice.status_code == 409
    assert twice.json()["code"] == "refund_not_allowed"
    not_ours = await _refund(client, ann, booking["id"], seatNumbers=["A1"])
    assert not_ours.status_code == 422

    rest = await _refund(client, ann, booking["id"], seatNumbers=["C5"])
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == "10.00"
    assert rest.json()["bookingStatus"] == "refunded"
    after = await _booking(client, ann, booking["id"])
    assert (after["status"], after["refundedAmount"]) == ("refunded", "22.00")
    assert (await seat_statuses(client, show.showtime_id))["C5"]["status"] == "available"
    payment, refunds = await _money(app, booking["id"])
    assert (payment.status, payment.refunded_amount) == ("refunded", Decimal("22.00"))
    assert sorted(r.amount for r in refunds) == [Decimal("10.00"), Decimal("12.00")]


async def test_a_cancellation_fee_inside_the_fee_window(
    make_client: MakeClient, app: FastAPI
) -> None:
    client = await make_client(cancellation_fee_percent=10, expiry_interval_seconds=0)
    soon = await seed_showtime(app, starts_in=dt.timedelta(hours=12))  # inside 24 h
    later = await seed_showtime(app, starts_in=dt.timedelta(days=2))
    ann = await make_user(app)
    operator = await make_user(app, "operator")

    whole = await book_and_pay(client, ann.headers, soon.showtime_id, "A1", "A2")
    response = await _refund(client, ann, whole["id"])
    assert response.status_code == 200, response.text
    assert (response.json()["amount"], response.json()["fee"]) == ("18.00", "2.00")
    assert response.json()["bookingStatus"] == "refunded"
    assert (await _booking(client, ann, whole["id"]))["refundedAmount"] == "18.00"
    assert (await seat_statuses(client, soon.showtime_id))["A1"]["status"] == "available"

    by_seat = await book_and_pay(client, ann.headers, soon.showtime_id, "B1", "B2")
    response = await _refund(client, ann, by_seat["id"], seatNumbers=["B1"])
    assert (response.json()["amount"], response.json()["fee"]) == ("9.00", "1.00")

    outside = await book_and_pay(client, ann.headers, later.showtime_id, "A1", "A2")
    response = await _refund(client, ann, outside["id"])
    assert (response.json()["amount"], response.json()["fee"]) == ("20.00", "0.00")

    by_staff = await book_and_pay(client, ann.headers, soon.showtime_id, "C1", "C2")
    response = await _refund(client, operator, by_staff["id"])
    assert (response.json()["amount"], response.json()["fee"]) == ("20.00", "0.00")


async def test_staff_refund_money_only_never_more_than_is_left(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    operator = await make_user(app, "operator")
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "E1", "E2")

    owner_amount = await _refund(client, ann, booking["id"], amount="5.00")
    assert owner_amount.status_code == 403
    goodwill = await _refund(client, operator, booking["id"], amount="5.00", reason="cold hall")
    assert goodwill.status_code == 200, goodwill.text
    assert goodwill.json()["amount"] == "5.00"
    assert goodwill.json()["seatNumbers"] == []
    assert goodwill.json()["bookingStatus"] == "confirmed"
    after = await _booking(client, ann, booking["id"])
    assert (after["status"], after["refundedAmount"]) == ("confirmed", "5.00")
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["E1"]["status"] == seats["E2"]["status"] == "booked"
    tickets = await _tickets(client, ann, booking["id"])
    assert {t["status"] for t in tickets.values()} == {"valid"}

    for bad in ("0.00", "-1.00"):
        assert (await _refund(client, operator, booking["id"], amount=bad)).status_code == 422
    too_much = await _refund(client, operator, booking["id"], amount="15.01")
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "refund_exceeds_payment"
    # A seat worth 10.00 when 15.00 is left is refunded in full; the last seat gets what is
    # left (5.00) and the booking is then refunded, its seats free again.
    seat = await _refund(client, ann, booking["id"], seatNumbers=["E1"])
    assert seat.status_code == 200, seat.text
    assert seat.json()["amount"] == "10.00"
    last = await _refund(client, ann, booking["id"], seatNumbers=["E2"])
    assert last.status_code == 200, last.text
    assert (last.json()["amount"], last.json()["bookingStatus"]) == ("5.00", "refunded")
    assert (await seat_statuses(client, show.showtime_id))["E2"]["status"] == "available"

    payment, refunds = await _money(app, booking["id"])
    assert payment.refunded_amount == Decimal("20.00")
    assert sum(r.amount for r in refunds) == Decimal("20.00")
    assert (await _booking(client, ann, booking["id"]))["refundedAmount"] == "20.00"


async def test_concurrent_full_refunds_refund_once(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    operator = await make_user(app, "operator")
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "A1", "A2", "A3")

    responses = await asyncio.gather(
        *(_refund(client, user, booking["id"]) for user in (ann, operator, ann, operator, ann))
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: 4}, [r.text for r in responses]
    after = await _booking(client, ann, booking["id"])
    assert after["refundedAmount"] == after["finalAmount"] == "30.00"
    payment, refunds = await _money(app, booking["id"])
    assert payment.refunded_amount == payment.amount == Decimal("30.00")
    assert [r.amount for r in refunds] == [Decimal("30.00")]


async def test_concurrent_refunds_of_different_seats_add_up(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "B1", "B2", "B3", "B4")

    labels = ["B1", "B2", "B3", "B4", "B1", "B3"]
    responses = await asyncio.gather(
        *(_refund(client, ann, booking["id"], seatNumbers=[label]) for label in labels)
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 4, 409: 2}, [r.text for r in responses]
    refunded = sorted(r.json()["seatNumbers"][0] for r in responses if r.status_code == 200)
    assert refunded == ["B1", "B2", "B3", "B4"]
    after = await _booking(client, ann, booking["id"])
    assert (after["status"], after["refundedAmount"]) == ("refunded", "40.00")
    payment, refunds = await _money(app, booking["id"])
    assert (payment.status, payment.refunded_amount) == ("refunded", Decimal("40.00"))
    assert len(refunds) == 4


# ---------------------------------------------------------------------------------------------
# Cancelling a confirmed booking


async def test_cancelling_a_confirmed_booking_refunds_it_per_policy(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "C7", "C8")
    url = f"/api/bookings/{booking['id']}/cancel"

    assert (await client.post(url, headers=bob.headers)).status_code == 404
    cancelled = await client.post(url, headers=ann.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "refunded"
    assert cancelled.json()["refundedAmount"] == "20.00"
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["C7"]["status"] == seats["C8"]["status"] == "available"
    assert {t["status"] for t in (await _tickets(client, ann, booking["id"])).values()} == {"void"}
    payment, refunds = await _money(app, booking["id"])
    assert payment.status == "refunded"
    assert [r.amount for r in refunds] == [Decimal("20.00")]

    twice = await client.post(url, headers=ann.headers)
    assert twice.status_code == 409
    assert len((await _money(app, booking["id"]))[1]) == 1
