"""The money of a booking (booking/checkout.py) over HTTP: seat prices frozen from the pricing
rules, snacks, the tier discount, promo codes, points and the VAT contained in the final
amount; a booking paid in full by its discounts; what expiry, cancellation and refunds give
back (once); refunds by seat of a discounted booking; points earned at the door; refunded
snack preorders; late payments; and customers racing for a promo code's last uses."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from boxoffice.booking import checkout
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.booking.service import expire_due_bookings
from boxoffice.core.clock import utcnow
from boxoffice.loyalty import service as loyalty
from boxoffice.payments import service as payments
from boxoffice.payments.models import Payment, Refund
from boxoffice.payments.providers.local import LocalProvider
from boxoffice.payments.service import PaymentContext
from boxoffice.scheduling.models import ShowtimeSeat
from tests.booking_helpers import book_hold, hold, pay, seat_statuses, seed_showtime
from tests.factories import make_pending_booking
from tests.helpers import TestUser as AppUser  # aliased: pytest would collect "Test*"
from tests.helpers import make_user

RULES = "/api/admin/pricing-rules"
PROMOS = "/api/admin/promocodes"
SNACKS = "/api/admin/snacks"
CENT = Decimal("0.01")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------------------------------------
# Helpers: set-up through the admin API where there is one


async def add_rule(client: httpx.AsyncClient, admin: AppUser, **fields: Any) -> dict[str, Any]:
    body = {"name": "rule", "kind": "surcharge", "value": "1.00", **fields}
    response = await client.post(RULES, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


async def add_promo(
    client: httpx.AsyncClient, admin: AppUser, code: str, **fields: Any
) -> dict[str, Any]:
    body = {"code": code, "kind": "percentage", "value": "10", **fields}
    response = await client.post(PROMOS, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    promo: dict[str, Any] = response.json()
    return promo


async def uses(client: httpx.AsyncClient, admin: AppUser, promo: dict[str, Any]) -> int:
    response = await client.get(f"{PROMOS}/{promo['id']}", headers=admin.headers)
    assert response.status_code == 200, response.text
    count: int = response.json()["uses"]
    return count


async def add_snack(client: httpx.AsyncClient, admin: AppUser, **fields: Any) -> dict[str, Any]:
    body = {"name": "Popcorn", "category": "popcorn", "price": "6.50", **fields}
    response = await client.post(SNACKS, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    snack: dict[str, Any] = response.json()
    return snack


async def stock(client: httpx.AsyncClient, admin: AppUser, snack: dict[str, Any]) -> int | None:
    response = await client.get(f"{SNACKS}/{snack['id']}", headers=admin.headers)
    assert response.status_code == 200, response.text
    left: int | None = response.json()["stock"]
    return left


def order(snack: dict[str, Any], quantity: int) -> dict[str, Any]:
    return {"snackId": snack["id"], "quantity": quantity}


async def points(client: httpx.AsyncClient, user: AppUser) -> dict[str, Any]:
    response = await client.get("/api/me/points", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def balance(client: httpx.AsyncClient, user: AppUser) -> int:
    value: int = (await points(client, user))["balance"]
    return value


async def give_points(app: FastAPI, user: AppUser, paid: str) -> None:
    """The customer earns 10% of `paid` as points on an earlier paid booking (of a showtime of
    its own): there is no API to grant points that count towards a tier."""
    other = await seed_showtime(app)
    async with app.state.db.session() as session:
        booking = await make_pending_booking(
            session, user.id, uuid.UUID(other.showtime_id), ["E8"], Decimal(paid)
        )
        booking.status = BookingStatus.CONFIRMED
        booking_id = booking.id
    async with app.state.db.session() as session:
        assert await loyalty.earn_for_booking(session, booking_id) > 0


async def set_vat(client: httpx.AsyncClient, admin: AppUser, theater_id: str, rate: str) -> None:
    response = await client.patch(
        f"/api/admin/theaters/{theater_id}", json={"vatRate": rate}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


async def hold_token(
    client: httpx.AsyncClient, user: AppUser, showtime_id: str, *labels: str
) -> str:
    response = await hold(client, user.headers, showtime_id, *labels)
    assert response.status_code == 201, response.text
    token: str = response.json()["lockToken"]
    return token


async def book_with(
    client: httpx.AsyncClient, user: AppUser, showtime_id: str, *labels: str, **extra: Any
) -> dict[str, Any]:
    """Hold and book the seats with extras (snacks, promoCode, pointsToRedeem); the answer."""
    token = await hold_token(client, user, showtime_id, *labels)
    response = await book_hold(client, user.headers, showtime_id, token, *labels, **extra)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def read_booking(client: httpx.AsyncClient, user: AppUser, booking_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/bookings/{booking_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    booking: dict[str, Any] = response.json()["booking"]
    return booking


async def paid(client: httpx.AsyncClient, user: AppUser, answer: dict[str, Any]) -> None:
    response = await pay(client, user.headers, answer["paymentIntentId"])
    assert response.status_code == 200, response.text
    assert response.json()["bookingStatus"] == "confirmed", response.text


async def refund(
    client: httpx.AsyncClient, user: AppUser, booking_id: str, **fields: Any
) -> httpx.Response:
    return await client.post(
        "/api/payments/refund", json={"bookingId": booking_id, **fields}, headers=user.headers
    )


async def tickets(client: httpx.AsyncClient, user: AppUser, booking_id: str) -> list[Any]:
    response = await client.get(f"/api/bookings/{booking_id}/tickets", headers=user.headers)
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()["tickets"]
    return found


async def payments_of(app: FastAPI, booking_id: str) -> list[Payment]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(Payment).where(Payment.booking_id == uuid.UUID(booking_id))
        )
        return list(rows)


async def refunds_of(app: FastAPI, booking_id: str) -> list[Refund]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(Refund).where(Refund.booking_id == uuid.UUID(booking_id))
        )
        return list(rows)


async def count_bookings(app: FastAPI, user: AppUser) -> int:
    async with app.state.db.session(write=False) as session:
        found = await session.scalar(
            select(func.count()).select_from(Booking).where(Booking.user_id == user.id)
        )
        return int(found or 0)


async def past_deadline(app: FastAPI, booking_id: str) -> None:
    """The booking's payment deadline (and its seats' hold) passed a second ago."""
    past = utcnow() - dt.timedelta(seconds=1)
    async with app.state.db.session() as session:
        await session.execute(
            update(Booking).where(Booking.id == uuid.UUID(booking_id)).values(expires_at=past)
        )
        await session.execute(
            update(ShowtimeSeat)
            .where(ShowtimeSeat.booking_id == uuid.UUID(booking_id))
            .values(held_until=past)
        )


async def run_expiry(app: FastAPI) -> int:
    async with app.state.db.session() as session:
        return await expire_due_bookings(session, PaymentContext.of(app))


async def provider_says_succeeded(client: httpx.AsyncClient, app: FastAPI, intent_id: str) -> None:
    """The local provider's signed `payment_intent.succeeded` webhook for the intent."""
    provider = PaymentContext.of(app).provider("local")
    assert isinstance(provider, LocalProvider)
    body = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "payment_intent.succeeded",
            "data": {"paymentIntentId": intent_id},
        }
    ).encode()
    response = await client.post(
        "/api/payments/webhook/local",
        content=body,
        headers={
            "Content-Type": "application/json",
            "Boxoffice-Signature": provider.signature_header(body),
        },
    )
    assert response.status_code == 200, response.text


async def release_again(app: FastAPI, booking_id: str) -> None:
    async with app.state.db.session() as session:
        await checkout.release_commerce(session, uuid.UUID(booking_id))


# ---------------------------------------------------------------------------------------------
# 1. Seat prices from the pricing rules, frozen on the booking


async def test_rule_prices_are_frozen_on_the_booking(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app, classes={"A1": "premium"})  # A1 12.00, A2 10.00 by default
    plus = await add_rule(client, admin, kind="surcharge", value="1.75", priority=0)
    times = await add_rule(
        client, admin, kind="multiplier", value="1.1", seatClasses=["premium"], priority=1
    )
    ann = await make_user(app)

    answer = await book_with(client, ann, show.showtime_id, "A1", "A2")
    booking = answer["booking"]
    # A1: (12.00 + 1.75) x 1.1 = 15.125 -> 15.13 (half up, once); A2: 10.00 + 1.75 = 11.75.
    assert {line["seatLabel"]: line["unitPrice"] for line in booking["lines"]} == {
        "A1": "15.13",
        "A2": "11.75",
    }
    assert booking["breakdown"]["tickets"] == "26.88"
    assert booking["breakdown"]["ruleAdjustments"] == "4.88"  # 26.88 - (12.00 + 10.00)
    assert (booking["totalAmount"], booking["finalAmount"]) == ("26.88", "26.88")

    # The rules change: the booking does not.
    changed = await client.patch(
        f"{RULES}/{plus['id']}", json={"value": "5.00"}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    deleted = await client.delete(f"{RULES}/{times['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    prices = (await client.get(f"/api/showtimes/{show.showtime_id}/prices")).json()["prices"]
    assert {p["seatClass"]: p["price"] for p in prices} == {"standard": "15.00", "premium": "17.00"}

    again = await read_booking(client, ann, booking["id"])
    assert again["lines"] == booking["lines"]
    assert again["breakdown"] == booking["breakdown"]
    assert again["finalAmount"] == "26.88"
    await paid(client, ann, answer)
    (payment,) = await payments_of(app, booking["id"])
    assert payment.amount == Decimal("26.88")
    assert (await read_booking(client, ann, booking["id"]))["breakdown"] == booking["breakdown"]


async def test_a_discount_rule_books_with_a_negative_adjustment(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    await add_rule(client, admin, name="matinee", kind="surcharge", value="-2.50")
    ann = await make_user(app)
    token = await hold_token(client, ann, show.showtime_id, "B1")

    response = await book_hold(client, ann.headers, show.showtime_id, token, "B1")
    assert response.status_code == 201, response.text
    booking = response.json()["booking"]
    assert booking["lines"][0]["unitPrice"] == "7.50"
    assert booking["breakdown"]["tickets"] == "7.50"
    assert booking["breakdown"]["ruleAdjustments"] == "-2.50"  # the rule took 2.50 off
    assert booking["finalAmount"] == "7.50"


# ---------------------------------------------------------------------------------------------
# 2. Everything at once


async def test_a_tier_discount_on_seats_only_is_what_the_payment_asks(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # No snacks, promo code or points: on PostgreSQL the booking, its payment and its lines
    # are written by one statement, with the standing read along with the hold.
    show = await seed_showtime(app, base_price=Decimal("11.25"))
    ann = await make_user(app)
    await give_points(app, ann, "200.00")  # silver: 5% off tickets
    booking = (await book_with(client, ann, show.showtime_id, "C4", "C5"))["booking"]
    assert booking["breakdown"]["tierDiscount"] == "1.13"  # 22.50 x 5%, half up
    assert booking["finalAmount"] == "21.37"
    [payment] = await payments_of(app, booking["id"])
    assert (payment.amount, payment.status) == (Decimal("21.37"), "pending")


async def test_snacks_tier_promo_and_points_together(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app, base_price=Decimal("11.25"))
    await set_vat(client, admin, show.theater_id, "0.19")
    ann = await make_user(app)
    await give_points(app, ann, "200.00")  # 2,000 points earned: silver (5% off tickets)
    assert (await points(client, ann))["tier"] == "silver"
    popcorn = await add_snack(client, admin, name="Popcorn", price="6.45", stock=10)
    soda = await add_snack(client, admin, name="Soda", category="drinks", price="3.35")
    promo = await add_promo(client, admin, "QUARTER", value="25")

    answer = await book_with(
        client,
        ann,
        show.showtime_id,
        "C4",
        "C5",
        snacks=[order(soda, 1), order(popcorn, 2)],
        promoCode="quarter",
        pointsToRedeem=1000,
    )
    booking = answer["booking"]
    # tickets  2 x 11.25                                  = 22.50
    # snacks   2 x 6.45 + 3.35                            = 16.25
    # total                                               = 38.75
    # tier     22.50 x 5%        = 1.125  -> 1.13 (half up)
    # promo    (38.75 - 1.13) x 25% = 37.62 x 25% = 9.405 -> 9.41 (half up)
    # points   1000 x 0.01       = 10.00 (cap: (37.62 - 9.41) / 2 = 14.105)
    # discount 1.13 + 9.41 + 10.00                        = 20.54
    # final    38.75 - 20.54                              = 18.21
    # tax      18.21 x 0.19 / 1.19 = 2.9075  -> 2.91
    assert booking["breakdown"] == {
        "tickets": "22.50",
        "ruleAdjustments": "0.00",
        "snacks": "16.25",
        "total": "38.75",
        "tierDiscount": "1.13",
        "promoDiscount": "9.41",
        "pointsRedeemed": 1000,
        "pointsDiscount": "10.00",
        "discount": "20.54",
        "tax": "2.91",
        "final": "18.21",
    }
    assert (booking["totalAmount"], booking["discountAmount"], booking["finalAmount"]) == (
        "38.75",
        "20.54",
        "18.21",
    )
    assert Decimal(booking["totalAmount"]) - Decimal(booking["discountAmount"]) == Decimal(
        booking["finalAmount"]
    )
    rate = Decimal("0.19")
    final = Decimal(booking["finalAmount"])
    assert Decimal(booking["breakdown"]["tax"]) == cents(final * rate / (1 + rate))
    assert sorted(booking["snacks"], key=lambda line: line["name"]) == [
        {
            "snackId": popcorn["id"],
            "name": "Popcorn",
            "quantity": 2,
            "unitPrice": "6.45",
            "totalPrice": "12.90",
        },
        {
            "snackId": soda["id"],
            "name": "Soda",
            "quantity": 1,
            "unitPrice": "3.35",
            "totalPrice": "3.35",
        },
    ]
    assert booking["pickupCode"]
    assert booking["refundedAmount"] == "0.00"
    assert answer["paymentClientSecret"]
    (payment,) = await payments_of(app, booking["id"])
    assert payment.amount == Decimal("18.21")  # the customer pays the final amount

    assert await stock(client, admin, popcorn) == 8
    assert await stock(client, admin, soda) is None  # not counted
    assert await uses(client, admin, promo) == 1
    assert await balance(client, ann) == 1000
    assert (await read_booking(client, ann, booking["id"]))["breakdown"] == booking["breakdown"]


# ---------------------------------------------------------------------------------------------
# 3. What expiry, cancellation and a full refund give back, once


@pytest.mark.parametrize("undo", ["expiry", "cancellation", "refund"])
async def test_an_undone_booking_gives_back_promo_stock_and_points_once(
    app: FastAPI, client: httpx.AsyncClient, undo: str
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    ann = await make_user(app)
    await give_points(app, ann, "100.00")  # 1,000 points
    nachos = await add_snack(client, admin, name="Nachos", price="4.00", stock=5)
    promo = await add_promo(client, admin, "TENOFF", totalLimit=10)
    answer = await book_with(
        client,
        ann,
        show.showtime_id,
        "A1",
        "A2",
        snacks=[order(nachos, 2)],
        promoCode="TENOFF",
        pointsToRedeem=300,
    )
    booking_id = answer["booking"]["id"]
    assert (await stock(client, admin, nachos), await uses(client, admin, promo)) == (3, 1)
    assert await balance(client, ann) == 700

    if undo == "expiry":
        await past_deadline(app, booking_id)
        assert await run_expiry(app) == 1
        assert await run_expiry(app) == 0
        status = "expired"
    elif undo == "cancellation":
        url = f"/api/bookings/{booking_id}/cancel"
        cancelled = await client.post(url, headers=ann.headers)
        assert cancelled.status_code == 200, cancelled.text
        assert (await client.post(url, headers=ann.headers)).status_code == 409
        status = "cancelled"
    else:
        await paid(client, ann, answer)
        whole = await refund(client, ann, booking_id)
        assert whole.status_code == 200, whole.text
        assert whole.json()["amount"] == answer["booking"]["finalAmount"]
        assert (await refund(client, ann, booking_id)).status_code == 409
        status = "refunded"

    assert (await read_booking(client, ann, booking_id))["status"] == status
    assert await stock(client, admin, nachos) == 5
    assert await uses(client, admin, promo) == 0
    assert await balance(client, ann) == 1000
    # Releasing again (a repeated job, a retried request) gives nothing more back.
    await release_again(app, booking_id)
    await release_again(app, booking_id)
    assert await stock(client, admin, nachos) == 5
    assert await uses(client, admin, promo) == 0
    assert await balance(client, ann) == 1000
    entries = (await points(client, ann))["entries"]
    assert Counter(e["kind"] for e in entries if e["bookingId"] == booking_id) == {
        "redeem": 1,
        "restore": 1,
    }


async def test_the_cancel_answer_shows_the_bookings_snacks(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    ann = await make_user(app)
    nachos = await add_snack(client, admin, name="Nachos", price="4.00")
    answer = await book_with(client, ann, show.showtime_id, "A1", snacks=[order(nachos, 2)])
    booking_id = answer["booking"]["id"]

    cancelled = await client.post(f"/api/bookings/{booking_id}/cancel", headers=ann.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["snacks"] == answer["booking"]["snacks"]
    assert cancelled.json()["snacks"] == (await read_booking(client, ann, booking_id))["snacks"]


# ---------------------------------------------------------------------------------------------
# 4. Refunds by seat of a discounted booking


async def test_a_seat_of_a_discounted_booking_refunds_its_share(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app, classes={"A1": "premium"})  # A1 12.00, A2 and A3 10.00
    promo = await add_promo(client, admin, "FIVE55", kind="fixed", value="5.55", currency="EUR")
    ann = await make_user(app)
    answer = await book_with(client, ann, show.showtime_id, "A1", "A2", "A3", promoCode="FIVE55")
    booking_id = answer["booking"]["id"]
    assert (answer["booking"]["totalAmount"], answer["booking"]["finalAmount"]) == (
        "32.00",
        "26.45",
    )
    await paid(client, ann, answer)
    share = Decimal("26.45") / Decimal("32.00")

    first = await refund(client, ann, booking_id, seatNumbers=["A1"])
    assert first.status_code == 200, first.text
    assert first.json()["amount"] == "9.92"  # 12.00 x 26.45 / 32.00 = 9.91875
    assert Decimal(first.json()["amount"]) == cents(Decimal("12.00") * share)
    assert first.json()["bookingStatus"] == "confirmed"
    assert await uses(client, admin, promo) == 1  # a partial refund keeps the code's use

    second = await refund(client, ann, booking_id, seatNumbers=["A2"])
    assert second.status_code == 200, second.text
    assert second.json()["amount"] == "8.27"  # 10.00 x 26.45 / 32.00 = 8.265625

    # The last seat's share (8.27) is more than is left of the payment (8.26): never beyond it.
    last = await refund(client, ann, booking_id, seatNumbers=["A3"])
    assert last.status_code == 200, last.text
    assert last.json()["amount"] == "8.26"
    assert last.json()["bookingStatus"] == "refunded"

    (payment,) = await payments_of(app, booking_id)
    refunded = [r.amount for r in await refunds_of(app, booking_id)]
    assert sorted(refunded) == [Decimal("8.26"), Decimal("8.27"), Decimal("9.92")]
    assert sum(refunded) == payment.amount == payment.refunded_amount == Decimal("26.45")
    after = await read_booking(client, ann, booking_id)
    assert (after["status"], after["refundedAmount"]) == ("refunded", "26.45")
    assert await uses(client, admin, promo) == 0  # refunded in full: the use came back


# ---------------------------------------------------------------------------------------------
# 5. Paid in full by discounts


async def test_a_booking_paid_by_its_discounts_is_confirmed_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    await add_promo(client, admin, "FREE", value="100")
    await add_promo(client, admin, "FIFTY", kind="fixed", value="50.00", currency="EUR")
    ann, bob = await make_user(app), await make_user(app)

    for user, code, labels in ((ann, "FREE", ("B1", "B2")), (bob, "FIFTY", ("C1", "C2"))):
        answer = await book_with(client, user, show.showtime_id, *labels, promoCode=code)
        booking = answer["booking"]
        assert answer["paymentClientSecret"] is None
        assert answer["paymentIntentId"] is None
        assert booking["status"] == "confirmed"
        assert booking["confirmedAt"] is not None
        assert booking["breakdown"]["promoDiscount"] == "20.00"  # at most the order
        assert (booking["totalAmount"], booking["finalAmount"]) == ("20.00", "0.00")
        assert booking["breakdown"]["tax"] == "0.00"
        assert await payments_of(app, booking["id"]) == []
        issued = await tickets(client, user, booking["id"])
        assert sorted(t["seatLabel"] for t in issued) == list(labels)
        assert {t["status"] for t in issued} == {"valid"}
        assert (await read_booking(client, user, booking["id"]))["status"] == "confirmed"
        seats = await seat_statuses(client, show.showtime_id)
        assert {seats[label]["status"] for label in labels} == {"booked"}


async def test_a_booking_of_free_seats_is_confirmed_at_once_without_a_payment(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # A free screening, no extras: on PostgreSQL such a booking would otherwise be written in
    # one statement with its payment (booking.service); with nothing to pay it has none.
    show = await seed_showtime(app, base_price=Decimal("0.00"))
    ann = await make_user(app)
    answer = await book_with(client, ann, show.showtime_id, "A1", "A2")
    booking = answer["booking"]
    assert (answer["paymentClientSecret"], answer["paymentIntentId"]) == (None, None)
    assert (booking["status"], booking["finalAmount"]) == ("confirmed", "0.00")
    assert await payments_of(app, booking["id"]) == []
    issued = await tickets(client, ann, booking["id"])
    assert sorted(t["seatLabel"] for t in issued) == ["A1", "A2"]
    seats = await seat_statuses(client, show.showtime_id)
    assert {seats[label]["status"] for label in ("A1", "A2")} == {"booked"}


async def test_a_free_booking_can_be_cancelled(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    promo = await add_promo(client, admin, "FREE", value="100")
    ann = await make_user(app)
    answer = await book_with(client, ann, show.showtime_id, "B1", promoCode="FREE")
    booking_id = answer["booking"]["id"]
    assert answer["booking"]["status"] == "confirmed"

    cancelled = await client.post(f"/api/bookings/{booking_id}/cancel", headers=ann.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert (await seat_statuses(client, show.showtime_id))["B1"]["status"] == "available"
    assert await uses(client, admin, promo) == 0


# ---------------------------------------------------------------------------------------------
# 6. Points: at most half of what is left after the tier and the promo


async def test_points_over_the_cap_are_refused_and_take_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    ann = await make_user(app)
    await give_points(app, ann, "150.00")  # 1,500 points, bronze
    cola = await add_snack(client, admin, name="Cola", category="drinks", price="5.00", stock=3)
    promo = await add_promo(client, admin, "THREE", kind="fixed", value="3.00", currency="EUR")
    token = await hold_token(client, ann, show.showtime_id, "D1", "D2")
    extras: dict[str, Any] = {"snacks": [order(cola, 1)], "promoCode": "THREE"}

    # 20.00 tickets + 5.00 cola - 3.00 promo = 22.00: points may pay 11.00 (1,100 points).
    over = await book_hold(
        client, ann.headers, show.showtime_id, token, "D1", "D2", pointsToRedeem=1101, **extras
    )
    assert over.status_code == 422, over.text
    assert over.json()["code"] == "points_exceed_cap"
    assert over.json()["maxPoints"] == 1100
    assert await balance(client, ann) == 1500
    assert await stock(client, admin, cola) == 3
    assert await uses(client, admin, promo) == 0
    assert await count_bookings(app, ann) == 1  # only the booking the points were earned on

    ok = await book_hold(
        client, ann.headers, show.showtime_id, token, "D1", "D2", pointsToRedeem=1100, **extras
    )
    assert ok.status_code == 201, ok.text
    breakdown = ok.json()["booking"]["breakdown"]
    assert (breakdown["pointsRedeemed"], breakdown["pointsDiscount"]) == (1100, "11.00")
    assert breakdown["final"] == "11.00"
    assert await balance(client, ann) == 400


async def test_points_never_pay_more_than_half(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app, base_price=Decimal("20.01"))
    ann = await make_user(app)
    await give_points(app, ann, "150.00")  # 1,500 points
    token = await hold_token(client, ann, show.showtime_id, "A1")

    # Half of 20.01 is 10.005: 1,001 points (10.01) would pay more than half.
    over = await book_hold(client, ann.headers, show.showtime_id, token, "A1", pointsToRedeem=1001)
    assert over.status_code == 422, over.text
    assert over.json()["code"] == "points_exceed_cap"
    assert over.json()["maxPoints"] == 1000
    assert await balance(client, ann) == 1500


# ---------------------------------------------------------------------------------------------
# 7. Refused promo codes and snacks take nothing


async def test_an_invalid_promo_code_is_refused_with_its_reason(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    inactive = await add_promo(client, admin, "SLEEPY", active=False)
    big = await add_promo(client, admin, "BIGSPENDER", minOrder="50.00")
    ann = await make_user(app)
    token = await hold_token(client, ann, show.showtime_id, "A5")

    for code, reason in (
        ("NOSUCH", "not_found"),
        ("sleepy", "inactive"),
        ("BIGSPENDER", "min_order"),
    ):
        response = await book_hold(
            client, ann.headers, show.showtime_id, token, "A5", promoCode=code
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "promo_invalid"
        assert response.json()["reason"] == reason
        assert response.json()["detail"]
    assert await count_bookings(app, ann) == 0
    assert await uses(client, admin, inactive) == 0
    assert await uses(client, admin, big) == 0

    response = await book_hold(client, ann.headers, show.showtime_id, token, "A5")
    assert response.status_code == 201, response.text
    assert response.json()["booking"]["finalAmount"] == "10.00"


async def test_an_out_of_stock_snack_is_refused_and_takes_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    ann = await make_user(app)
    await give_points(app, ann, "100.00")  # 1,000 points
    popcorn = await add_snack(client, admin, name="Popcorn", price="6.00", stock=10)
    candy = await add_snack(client, admin, name="Candy", category="sweets", price="2.00", stock=1)
    promo = await add_promo(client, admin, "TENOFF")
    token = await hold_token(client, ann, show.showtime_id, "A6")

    response = await book_hold(
        client,
        ann.headers,
        show.showtime_id,
        token,
        "A6",
        snacks=[order(popcorn, 2), order(candy, 2)],
        promoCode="TENOFF",
        pointsToRedeem=100,
    )
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "out_of_stock"
    assert (response.json()["available"], response.json()["requested"]) == (1, 2)
    assert await stock(client, admin, popcorn) == 10
    assert await stock(client, admin, candy) == 1
    assert await uses(client, admin, promo) == 0
    assert await balance(client, ann) == 1000
    assert await count_bookings(app, ann) == 1  # only the booking the points were earned on

    booked = await book_hold(
        client, ann.headers, show.showtime_id, token, "A6", snacks=[order(candy, 1)]
    )
    assert booked.status_code == 201, booked.text
    assert await stock(client, admin, candy) == 0


# ---------------------------------------------------------------------------------------------
# 8. Points earned at the door


async def test_checking_in_credits_ten_percent_of_what_was_paid_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    cashier = await make_user(app, "cashier")
    show = await seed_showtime(app, starts_in=dt.timedelta(minutes=10))  # doors are open
    await add_promo(client, admin, "OFF255", kind="fixed", value="2.55", currency="EUR")
    ann = await make_user(app)
    answer = await book_with(client, ann, show.showtime_id, "C1", "C2", promoCode="OFF255")
    booking_id = answer["booking"]["id"]
    assert answer["booking"]["finalAmount"] == "17.45"
    await paid(client, ann, answer)
    assert await balance(client, ann) == 0  # paying earns nothing yet

    issued = await tickets(client, ann, booking_id)
    scans = []
    for token in [t["qrToken"] for t in issued] + [issued[0]["qrToken"]]:
        response = await client.post(
            "/api/checkin", json={"qrToken": token}, headers=cashier.headers
        )
        assert response.status_code == 200, response.text
        scans.append(response.json()["result"])
    assert scans == ["valid", "valid", "already_used"]

    account = await points(client, ann)
    assert account["balance"] == 174  # 10% of 17.45 = 174.5 points, rounded down
    assert [(e["kind"], e["points"], e["bookingId"]) for e in account["entries"]] == [
        ("earn", 174, booking_id)
    ]


# ---------------------------------------------------------------------------------------------
# 9. A snack preorder refunded in full


async def test_a_snack_preorder_is_refunded_in_full(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    nachos = await add_snack(client, admin, name="Nachos", price="4.35", stock=4)
    ann = await make_user(app)
    created = await client.post(
        "/api/concessions/preorders",
        json={"showtimeId": show.showtime_id, "snacks": [order(nachos, 3)]},
        headers=ann.headers,
    )
    assert created.status_code == 201, created.text
    booking_id = created.json()["booking"]["id"]
    assert created.json()["booking"]["finalAmount"] == "13.05"
    await paid(client, ann, created.json())
    assert await stock(client, admin, nachos) == 1

    response = await refund(client, ann, booking_id)
    assert response.status_code == 200, response.text
    assert response.json()["amount"] == "13.05"
    assert response.json()["bookingStatus"] == "refunded"
    after = await read_booking(client, ann, booking_id)
    assert (after["status"], after["refundedAmount"]) == ("refunded", "13.05")
    (payment,) = await payments_of(app, booking_id)
    assert (payment.status, payment.refunded_amount) == ("refunded", Decimal("13.05"))
    assert await stock(client, admin, nachos) == 4

    assert (await refund(client, ann, booking_id)).status_code == 409
    assert await stock(client, admin, nachos) == 4


# ---------------------------------------------------------------------------------------------
# 10. Late payments for expired bookings


async def _expire_with_payment_in_flight(
    app: FastAPI, booking_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expiry job records the booking's expiry while its payment is still under way at the
    provider: its intent stays payable, so the payment's success reaches the booking."""

    async def leave_intent(*args: Any, **kwargs: Any) -> None:
        return None

    await past_deadline(app, booking_id)
    with monkeypatch.context() as patched:
        patched.setattr(payments, "cancel_intent", leave_intent)
        assert await run_expiry(app) == 1


async def test_a_late_payment_of_an_expired_booking_with_extras_is_refunded(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    ann = await make_user(app)
    await give_points(app, ann, "100.00")  # 1,000 points
    popcorn = await add_snack(client, admin, name="Popcorn", price="6.00", stock=5)
    promo = await add_promo(client, admin, "TENOFF", totalLimit=1)
    answer = await book_with(
        client,
        ann,
        show.showtime_id,
        "A1",
        snacks=[order(popcorn, 1)],
        promoCode="TENOFF",
        pointsToRedeem=200,
    )
    booking_id = answer["booking"]["id"]
    await _expire_with_payment_in_flight(app, booking_id, monkeypatch)
    # Given back at the expiry: the code's only use is free again (and someone takes it).
    assert (await stock(client, admin, popcorn), await uses(client, admin, promo)) == (5, 0)
    assert await balance(client, ann) == 1000
    bob = await make_user(app)
    await book_with(client, bob, show.showtime_id, "B1", promoCode="TENOFF")
    assert await uses(client, admin, promo) == 1

    late = await pay(client, ann.headers, answer["paymentIntentId"])
    assert late.status_code == 200, late.text
    assert late.json()["bookingStatus"] == "refunded"
    after = await read_booking(client, ann, booking_id)
    assert after["status"] == "refunded"
    assert after["refundedAmount"] == after["finalAmount"] == answer["booking"]["finalAmount"]
    (payment,) = await payments_of(app, booking_id)
    assert (payment.status, payment.refunded_amount) == ("refunded", payment.amount)
    assert await tickets(client, ann, booking_id) == []
    assert (await seat_statuses(client, show.showtime_id))["A1"]["status"] == "available"
    # Nothing given back a second time.
    assert (await stock(client, admin, popcorn), await uses(client, admin, promo)) == (5, 1)
    assert await balance(client, ann) == 1000


async def test_a_success_after_the_expiry_cancelled_the_intent_is_refunded_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    ann = await make_user(app)
    await give_points(app, ann, "100.00")  # 1,000 points
    popcorn = await add_snack(client, admin, name="Popcorn", price="6.00", stock=5)
    promo = await add_promo(client, admin, "TENOFF")
    answer = await book_with(
        client,
        ann,
        show.showtime_id,
        "A1",
        snacks=[order(popcorn, 1)],
        promoCode="TENOFF",
        pointsToRedeem=200,
    )
    booking_id = answer["booking"]["id"]
    await past_deadline(app, booking_id)
    assert await run_expiry(app) == 1  # records the expiry and cancels the intent
    assert (await stock(client, admin, popcorn), await uses(client, admin, promo)) == (5, 0)
    assert await balance(client, ann) == 1000

    # The provider took the money all the same and says so.
    await provider_says_succeeded(client, app, answer["paymentIntentId"])
    (payment,) = await payments_of(app, booking_id)
    assert (payment.status, payment.refunded_amount) == ("refunded", payment.amount)
    assert [r.amount for r in await refunds_of(app, booking_id)] == [payment.amount]
    assert (await read_booking(client, ann, booking_id))["status"] == "expired"
    assert (await stock(client, admin, popcorn), await uses(client, admin, promo)) == (5, 0)
    assert await balance(client, ann) == 1000


async def test_a_late_payment_of_an_expired_seats_only_booking_still_confirms(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    answer = await book_with(client, ann, show.showtime_id, "A1", "A2")
    booking_id = answer["booking"]["id"]
    await _expire_with_payment_in_flight(app, booking_id, monkeypatch)
    assert (await read_booking(client, ann, booking_id))["status"] == "expired"
    assert (await seat_statuses(client, show.showtime_id))["A1"]["status"] == "available"

    late = await pay(client, ann.headers, answer["paymentIntentId"])
    assert late.status_code == 200, late.text
    assert late.json()["bookingStatus"] == "confirmed"
    assert (await read_booking(client, ann, booking_id))["status"] == "confirmed"
    assert sorted(t["seatLabel"] for t in await tickets(client, ann, booking_id)) == ["A1", "A2"]
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["A1"]["status"] == seats["A2"]["status"] == "booked"
    assert await refunds_of(app, booking_id) == []


# ---------------------------------------------------------------------------------------------
# 11. Customers racing for a promo code's last uses


async def test_customers_racing_for_a_codes_last_uses_get_exactly_that_many(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    limit = 5
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    promo = await add_promo(client, admin, "RUSH", value="20", totalLimit=limit)
    racers = [await make_user(app) for _ in range(limit + 3)]
    tokens = [
        await hold_token(client, user, show.showtime_id, f"A{n}")
        for n, user in enumerate(racers, start=1)
    ]

    responses = await asyncio.gather(
        *(
            book_hold(client, user.headers, show.showtime_id, token, f"A{n}", promoCode="RUSH")
            for n, (user, token) in enumerate(zip(racers, tokens, strict=True), start=1)
        )
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {201: limit, 422: 3}, [r.text for r in responses]
    for response in responses:
        if response.status_code == 201:
            breakdown = response.json()["booking"]["breakdown"]
            assert (breakdown["promoDiscount"], breakdown["final"]) == ("2.00", "8.00")
        else:
            assert (response.json()["code"], response.json()["reason"]) == (
                "promo_invalid",
                "exhausted",
            )
    assert await uses(client, admin, promo) == limit
    async with app.state.db.session(write=False) as session:
        booked = await session.scalar(select(func.count()).select_from(Booking))
    assert booked == limit
