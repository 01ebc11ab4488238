"""Payments: intents, the local provider's cards, signed webhooks applied once, the payment
state machine and provider-level refunds."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.audit.models import AuditEntry
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.core.db import after_commit
from boxoffice.payments import service
from boxoffice.payments.exceptions import (
    BookingNotPaid,
    IllegalPaymentTransition,
    InvalidRefundAmount,
    RefundExceedsPayment,
)
from boxoffice.payments.models import Payment, PaymentEvent, PaymentStatus, Refund
from boxoffice.payments.providers.base import from_minor_units, to_minor_units
from boxoffice.payments.providers.local import LocalProvider, signature_header
from boxoffice.payments.service import PaymentContext
from boxoffice.scheduling.models import ShowtimeSeat
from boxoffice.tickets.models import Ticket
from boxoffice.venues.models import Screen, Seat
from tests.conftest import TEST_SECRET
from tests.factories import make_pending_booking, make_showtime, seed_venue, set_seat_state
from tests.helpers import TestUser, make_user

AMOUNT = Decimal("25.00")
SUCCESS_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"


# ---------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
async def confirmations(app: FastAPI) -> AsyncIterator[list[uuid.UUID]]:
    """A success handler standing in for booking's: confirms the booking; the list gets the
    booking id of every *committed* run."""
    committed: list[uuid.UUID] = []

    async def handler(
        session: AsyncSession, ctx: service.PaymentContext, booking_id: uuid.UUID, payment: Payment
    ) -> bool:
        assert payment.status == PaymentStatus.SUCCEEDED
        await session.execute(
            update(Booking)
            .where(Booking.id == booking_id)
            .values(status=BookingStatus.CONFIRMED, confirmed_at=utcnow())
        )

        async def done() -> None:
            committed.append(booking_id)

        after_commit(session, done)
        return True

    previous = service.get_success_handler()
    service.set_success_handler(handler)
    yield committed
    service.set_success_handler(previous)


async def new_showtime(app: FastAPI) -> uuid.UUID:
    venue = await seed_venue(app)
    async with app.state.db.session() as session:
        screen = await session.get(Screen, venue.screen_id)
        movie = await session.get(Movie, venue.movie_id)
        assert screen is not None
        assert movie is not None
        showtime = await make_showtime(session, screen, movie)
        return showtime.id


async def pending_booking(
    app: FastAPI,
    user: TestUser,
    *,
    showtime_id: uuid.UUID | None = None,
    labels: tuple[str, ...] = ("A1", "A2"),
    amount: Decimal = AMOUNT,
    expires_in: dt.timedelta = dt.timedelta(minutes=15),
) -> uuid.UUID:
    showtime_id = showtime_id or await new_showtime(app)
    async with app.state.db.session() as session:
        booking = await make_pending_booking(
            session, user.id, showtime_id, list(labels), amount, expires_in=expires_in
        )
        return booking.id


async def create_intent(client: httpx.AsyncClient, user: TestUser, booking_id: uuid.UUID) -> str:
    response = await client.post(
        "/api/payments/create-intent", json={"bookingId": str(booking_id)}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    intent_id: str = response.json()["paymentIntentId"]
    return intent_id


async def confirm(
    client: httpx.AsyncClient,
    user: TestUser,
    intent_id: str,
    card: str | None = None,
    key: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"paymentIntentId": intent_id}
    if card is not None:
        body["card"] = card
    headers = dict(user.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/api/payments/local/confirm", json=body, headers=headers)


def local_provider(app: FastAPI) -> LocalProvider:
    provider = PaymentContext.of(app).provider("local")
    assert isinstance(provider, LocalProvider)
    return provider


def event_body(
    event_type: str, intent_id: str, *, event_id: str | None = None, **data: Any
) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "type": event_type,
            "data": {"paymentIntentId": intent_id, **data},
        }
    ).encode()


async def post_webhook(
    client: httpx.AsyncClient, body: bytes, signature: str | None
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Boxoffice-Signature"] = signature
    return await client.post("/api/payments/webhook/local", content=body, headers=headers)


async def send_event(
    client: httpx.AsyncClient, app: FastAPI, event_type: str, intent_id: str, **kwargs: Any
) -> httpx.Response:
    body = event_body(event_type, intent_id, **kwargs)
    return await post_webhook(client, body, local_provider(app).signature_header(body))


async def payment_of(app: FastAPI, intent_id: str) -> Payment:
    async with app.state.db.session(write=False) as session:
        payment = await session.scalar(select(Payment).where(Payment.provider_ref == intent_id))
        assert payment is not None
        return payment


async def booking_status(app: FastAPI, booking_id: uuid.UUID) -> str:
    async with app.state.db.session(write=False) as session:
        status = await session.scalar(select(Booking.status).where(Booking.id == booking_id))
        assert status is not None
        return status


async def count(app: FastAPI, model: Any, *where: Any) -> int:
    async with app.state.db.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def refunds_of(app: FastAPI, booking_id: uuid.UUID) -> list[Refund]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(select(Refund).where(Refund.booking_id == booking_id))
        return list(rows)


async def paid_booking(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, amount: Decimal = AMOUNT
) -> tuple[uuid.UUID, str]:
    booking_id = await pending_booking(app, user, amount=amount)
    intent_id = await create_intent(client, user, booking_id)
    assert (await confirm(client, user, intent_id)).status_code == 200
    return booking_id, intent_id


async def service_refund(app: FastAPI, booking_id: uuid.UUID, amount: Decimal) -> Refund:
    async with app.state.db.session() as session:
        booking = await session.get(Booking, booking_id)
        assert booking is not None
        return await service.refund(
            session,
            PaymentContext.of(app),
            booking,
            amount,
            reason="test",
            seat_labels=[],
            requested_by=None,
        )


# ---------------------------------------------------------------------------------------------
# Intents


async def test_create_intent_makes_one_local_intent_per_booking(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)

    first = await client.post(
        "/api/payments/create-intent",
        json={"bookingId": str(booking_id)},
        headers=customer.headers,
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["provider"] == "local"
    assert body["amount"] == "25.00"
    assert body["currency"] == "EUR"
    assert body["paymentIntentId"].startswith("pi_local_")
    assert body["clientSecret"].startswith(body["paymentIntentId"] + "_secret_")

    again = await client.post(
        "/api/payments/create-intent",
        json={"bookingId": str(booking_id)},
        headers=customer.headers,
    )
    assert again.json()["paymentIntentId"] == body["paymentIntentId"]
    assert await count(app, Payment, Payment.booking_id == booking_id) == 1
    payment = await payment_of(app, body["paymentIntentId"])
    assert payment.status == PaymentStatus.PENDING
    assert payment.amount == AMOUNT


async def test_create_intent_only_for_the_owners_payable_booking(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    owner = await make_user(app)
    stranger = await make_user(app)
    booking_id = await pending_booking(app, owner)
    url = "/api/payments/create-intent"
    payload = {"bookingId": str(booking_id)}

    assert (await client.post(url, json=payload)).status_code == 401
    other = await client.post(url, json=payload, headers=stranger.headers)
    assert other.status_code == 404
    assert other.json()["code"] == "not_found"
    unknown = await client.post(url, json={"bookingId": str(uuid.uuid4())}, headers=owner.headers)
    assert unknown.status_code == 404

    expired_id = await pending_booking(app, owner, expires_in=dt.timedelta(seconds=-1))
    expired = await client.post(url, json={"bookingId": str(expired_id)}, headers=owner.headers)
    assert expired.status_code == 410
    assert expired.json()["code"] == "booking_expired"

    intent_id = await create_intent(client, owner, booking_id)
    assert (await confirm(client, owner, intent_id)).status_code == 200
    paid = await client.post(url, json=payload, headers=owner.headers)
    assert paid.status_code == 409
    assert paid.json()["code"] == "booking_not_payable"


async def test_create_intent_answers_503_when_the_provider_is_not_configured(
    make_client: Callable[..., Any], app: FastAPI
) -> None:
    stripe_client: httpx.AsyncClient = await make_client(payment_provider="stripe")
    customer = await make_user(app)  # same database, same signing key
    booking_id = await pending_booking(app, customer)

    response = await stripe_client.post(
        "/api/payments/create-intent",
        json={"bookingId": str(booking_id)},
        headers=customer.headers,
    )
    assert response.status_code == 503
    assert response.json()["code"] == "payment_provider_not_configured"
    # The test cards are not accepted on a server that takes real money.
    local = await stripe_client.post(
        "/api/payments/local/confirm", json={"paymentIntentId": "pi_x"}, headers=customer.headers
    )
    assert local.status_code == 404
    assert local.json()["code"] == "unknown_provider"
    hook = await stripe_client.post("/api/payments/webhook/local", content=b"{}")
    assert hook.status_code == 404


# ---------------------------------------------------------------------------------------------
# Local confirm


async def test_local_confirm_with_the_default_card_confirms_the_booking(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)

    response = await confirm(client, customer, intent_id)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "succeeded",
        "paymentIntentId": intent_id,
        "bookingId": str(booking_id),
        "bookingStatus": "confirmed",
    }
    assert confirmations == [booking_id]
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.succeeded_at is not None

    # Confirming again charges nothing and runs nothing: it reports the state.
    again = await confirm(client, customer, intent_id, card=SUCCESS_CARD)
    assert again.status_code == 200
    assert again.json()["status"] == "succeeded"
    assert confirmations == [booking_id]


async def test_declined_card_keeps_the_intent_pending_and_it_can_be_paid_again(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)

    declined = await confirm(client, customer, intent_id, card="4000 0000 0000 0002")
    assert declined.status_code == 402
    assert declined.headers["content-type"].startswith("application/problem+json")
    assert declined.json()["code"] == "card_declined"
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.PENDING
    assert payment.failure_code == "card_declined"  # recorded although the request failed
    assert await booking_status(app, booking_id) == BookingStatus.PENDING
    assert confirmations == []

    unknown_card = await confirm(client, customer, intent_id, card="5555555555554444")
    assert unknown_card.status_code == 402
    assert unknown_card.json()["code"] == "invalid_card"
    malformed = await confirm(client, customer, intent_id, card="not a card")
    assert malformed.status_code == 422

    paid = await confirm(client, customer, intent_id, card=SUCCESS_CARD)
    assert paid.status_code == 200
    assert paid.json()["bookingStatus"] == "confirmed"
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.failure_code is None
    assert confirmations == [booking_id]


async def test_local_confirm_of_unknown_or_foreign_intent_is_404(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    owner = await make_user(app)
    stranger = await make_user(app)
    intent_id = await create_intent(client, owner, await pending_booking(app, owner))

    assert (await confirm(client, owner, "pi_local_nope")).status_code == 404
    foreign = await confirm(client, stranger, intent_id)
    assert foreign.status_code == 404
    assert (await payment_of(app, intent_id)).status == PaymentStatus.PENDING
    assert confirmations == []


# ---------------------------------------------------------------------------------------------
# Idempotency-Key


async def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    other_booking = await pending_booking(app, customer)
    headers = {**customer.headers, "Idempotency-Key": "intent-1"}
    url = "/api/payments/create-intent"

    first = await client.post(url, json={"bookingId": str(booking_id)}, headers=headers)
    replay = await client.post(url, json={"booking_id": str(booking_id)}, headers=headers)
    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json()
    reused = await client.post(url, json={"bookingId": str(other_booking)}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert await count(app, Payment, Payment.booking_id == other_booking) == 0

    intent_id = first.json()["paymentIntentId"]
    declined = await confirm(client, customer, intent_id, card=DECLINE_CARD, key="pay-1")
    declined_again = await confirm(client, customer, intent_id, card=DECLINE_CARD, key="pay-1")
    assert declined.status_code == declined_again.status_code == 402
    assert declined_again.headers["content-type"].startswith("application/problem+json")
    assert declined_again.json()["code"] == "card_declined"
    other_card = await confirm(client, customer, intent_id, card=SUCCESS_CARD, key="pay-1")
    assert other_card.status_code == 422
    assert (await payment_of(app, intent_id)).status == PaymentStatus.PENDING

    paid = await confirm(client, customer, intent_id, card=SUCCESS_CARD, key="pay-2")
    paid_again = await confirm(client, customer, intent_id, card=SUCCESS_CARD, key="pay-2")
    assert paid.status_code == paid_again.status_code == 200
    assert paid_again.json() == paid.json()
    assert confirmations == [booking_id]


# ---------------------------------------------------------------------------------------------
# Webhooks


async def test_signed_success_webhook_confirms_once_however_often_delivered(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)
    body = event_body("payment_intent.succeeded", intent_id, event_id="evt_once")
    signature = local_provider(app).signature_header(body)

    first = await post_webhook(client, body, signature)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "duplicate": False}
    second = await post_webhook(client, body, signature)
    assert second.json() == {"received": True, "duplicate": True}

    assert confirmations == [booking_id]
    assert (await payment_of(app, intent_id)).status == PaymentStatus.SUCCEEDED
    assert await booking_status(app, booking_id) == BookingStatus.CONFIRMED
    assert await count(app, PaymentEvent, PaymentEvent.event_id == "evt_once") == 1


async def test_concurrent_redeliveries_apply_once(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)
    body = event_body("payment_intent.succeeded", intent_id)
    signature = local_provider(app).signature_header(body)

    answers = await asyncio.gather(*(post_webhook(client, body, signature) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True]
    assert confirmations == [booking_id]


async def test_webhook_signatures_are_checked(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    intent_id = await create_intent(client, customer, await pending_booking(app, customer))
    provider = local_provider(app)
    body = event_body("payment_intent.succeeded", intent_id)
    now = int(time.time())

    cases = {
        "missing": None,
        "forged with the app's own key": signature_header(TEST_SECRET, body),
        "for another body": provider.signature_header(body.replace(b"succeeded", b"canceled")),
        "stale": provider.signature_header(body, now - 301),
        # Well past the tolerance: the check runs a moment after `now` on a busy machine.
        "from the future": provider.signature_header(body, now + 360),
        "malformed": "v1=abc",
    }
    for case, signature in cases.items():
        response = await post_webhook(client, body, signature)
        assert response.status_code == 400, case
        assert response.json()["code"] == "invalid_signature", case

    assert (await payment_of(app, intent_id)).status == PaymentStatus.PENDING
    assert await count(app, PaymentEvent) == 0
    assert confirmations == []
    # Within the tolerance, and with a rotated secret listed beside the right one: accepted.
    signature = provider.signature_header(body, now - 200) + ",v1=" + "0" * 64
    assert (await post_webhook(client, body, signature)).status_code == 200
    assert (await payment_of(app, intent_id)).status == PaymentStatus.SUCCEEDED


async def test_webhook_unknown_provider_and_bad_payload(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    for name in ("paypal", "nope"):
        response = await client.post(f"/api/payments/webhook/{name}", content=b"{}")
        assert response.status_code == 404
        assert response.json()["code"] == "unknown_provider"
    body = b'{"id": "evt_1", "type": "payment_intent.succeeded"'
    signed = await post_webhook(client, body, local_provider(app).signature_header(body))
    assert signed.status_code == 400
    assert signed.json()["code"] == "invalid_webhook_payload"
    assert await count(app, PaymentEvent) == 0


async def test_event_for_an_unknown_intent_is_stored_and_ignored(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await send_event(client, app, "payment_intent.succeeded", "pi_local_unknown")
    assert response.json() == {"received": True, "duplicate": False}
    assert await count(app, PaymentEvent, PaymentEvent.payment_id.is_(None)) == 1


async def test_webhook_and_local_confirm_racing_confirm_once(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    showtime_id = await new_showtime(app)
    bookings = []
    for labels in (("A1",), ("A2",), ("A3",)):
        booking_id = await pending_booking(app, customer, showtime_id=showtime_id, labels=labels)
        bookings.append((booking_id, await create_intent(client, customer, booking_id)))

    for _, intent_id in bookings:
        by_card, by_webhook = await asyncio.gather(
            confirm(client, customer, intent_id),
            send_event(client, app, "payment_intent.succeeded", intent_id),
        )
        assert by_card.status_code == 200, by_card.text
        assert by_card.json()["status"] == "succeeded"
        assert by_webhook.status_code == 200, by_webhook.text
        assert (await payment_of(app, intent_id)).status == PaymentStatus.SUCCEEDED
    assert sorted(confirmations) == sorted(b for b, _ in bookings)


async def test_payment_failed_event_only_records_the_failure(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    intent_id = await create_intent(client, customer, await pending_booking(app, customer))

    await send_event(
        client, app, "payment_intent.payment_failed", intent_id, failureCode="expired_card"
    )
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.PENDING
    assert payment.failure_code == "expired_card"
    assert (await confirm(client, customer, intent_id)).status_code == 200


# ---------------------------------------------------------------------------------------------
# State machine


async def test_cancelled_intent_cannot_be_confirmed(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)
    async with app.state.db.session() as session:
        await service.cancel_intent(session, PaymentContext.of(app), booking_id)
    assert (await payment_of(app, intent_id)).status == PaymentStatus.CANCELLED

    response = await confirm(client, customer, intent_id)
    assert response.status_code == 409
    assert response.json()["code"] == "illegal_payment_transition"
    assert (await payment_of(app, intent_id)).status == PaymentStatus.CANCELLED
    assert confirmations == []


async def test_transitions_are_conditional(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    _, intent_id = await paid_booking(client, app, customer)

    async with app.state.db.session() as session:
        payment = await session.scalar(select(Payment).where(Payment.provider_ref == intent_id))
        assert payment is not None
        with pytest.raises(IllegalPaymentTransition) as illegal:
            await service.transition(session, payment, PaymentStatus.CANCELLED)
        assert illegal.value.status == 409
        assert illegal.value.code == "illegal_payment_transition"
        assert await service.transition(session, payment, PaymentStatus.SUCCEEDED) is False
        assert payment.status == PaymentStatus.SUCCEEDED

    # A late `canceled` event for a paid intent is stored, answered 200 and changes nothing.
    response = await send_event(client, app, "payment_intent.canceled", intent_id)
    assert response.status_code == 200
    assert (await payment_of(app, intent_id)).status == PaymentStatus.SUCCEEDED


async def test_success_after_cancellation_is_refunded(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)

    assert (await send_event(client, app, "payment_intent.canceled", intent_id)).status_code == 200
    assert (await payment_of(app, intent_id)).status == PaymentStatus.CANCELLED
    await send_event(client, app, "payment_intent.succeeded", intent_id)

    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refunded_amount == AMOUNT
    assert [r.amount for r in await refunds_of(app, booking_id)] == [AMOUNT]
    assert confirmations == []
    assert await booking_status(app, booking_id) == BookingStatus.PENDING


async def test_refund_reported_before_success_is_applied_with_it(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    partial_id = await pending_booking(app, customer)
    partial = await create_intent(client, customer, partial_id)
    full_id = await pending_booking(app, customer)
    full = await create_intent(client, customer, full_id)

    await send_event(client, app, "charge.refunded", partial, amount="5.00")
    await send_event(client, app, "charge.refunded", full)  # no amount: all of it
    assert (await payment_of(app, partial)).status == PaymentStatus.PENDING
    await send_event(client, app, "payment_intent.succeeded", partial)
    await send_event(client, app, "payment_intent.succeeded", full)

    paid = await payment_of(app, partial)
    assert paid.status == PaymentStatus.PARTIALLY_REFUNDED
    assert paid.refunded_amount == Decimal("5.00")
    # Refunded in full before we heard of the success: the booking is not confirmed.
    refunded = await payment_of(app, full)
    assert refunded.status == PaymentStatus.REFUNDED
    assert refunded.refunded_amount == AMOUNT
    assert confirmations == [partial_id]


async def test_refund_made_at_the_provider_is_recorded_once(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await paid_booking(client, app, customer)

    await send_event(client, app, "charge.refunded", intent_id, amount="10.00")
    await send_event(client, app, "charge.refunded", intent_id, amount="10.00")  # another event
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.PARTIALLY_REFUNDED
    assert payment.refunded_amount == Decimal("10.00")
    assert [r.amount for r in await refunds_of(app, booking_id)] == [Decimal("10.00")]

    # The echo of our own refund changes nothing either.
    await service_refund(app, booking_id, Decimal("15.00"))
    await send_event(client, app, "charge.refunded", intent_id, amount="25.00")
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refunded_amount == AMOUNT
    assert len(await refunds_of(app, booking_id)) == 2


# ---------------------------------------------------------------------------------------------
# Provider-level refunds


async def test_partial_refund_then_the_rest_then_nothing(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await paid_booking(client, app, customer)

    with pytest.raises(RefundExceedsPayment):
        await service_refund(app, booking_id, Decimal("25.01"))
    with pytest.raises(InvalidRefundAmount):
        await service_refund(app, booking_id, Decimal("0"))

    first = await service_refund(app, booking_id, Decimal("10.00"))
    assert first.status == "succeeded"
    assert first.provider_ref is not None
    assert first.provider_ref.startswith("re_local_")
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.PARTIALLY_REFUNDED
    assert payment.refunded_amount == Decimal("10.00")

    with pytest.raises(RefundExceedsPayment) as exceeded:
        await service_refund(app, booking_id, Decimal("15.01"))
    assert exceeded.value.status == 409
    assert exceeded.value.extra["refundable"] == "15.00"

    await service_refund(app, booking_id, Decimal("15.00"))
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refunded_amount == AMOUNT
    with pytest.raises(RefundExceedsPayment):
        await service_refund(app, booking_id, Decimal("0.01"))
    assert sum(r.amount for r in await refunds_of(app, booking_id)) == AMOUNT


async def test_refund_needs_a_payment_that_took_money(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    customer = await make_user(app)
    unpaid = await pending_booking(app, customer)
    with pytest.raises(BookingNotPaid):
        await service_refund(app, unpaid, Decimal("1.00"))
    await create_intent(client, customer, unpaid)
    with pytest.raises(IllegalPaymentTransition):
        await service_refund(app, unpaid, Decimal("1.00"))


async def test_concurrent_full_refunds_refund_once(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await paid_booking(client, app, customer)

    async def attempt() -> str:
        try:
            await service_refund(app, booking_id, AMOUNT)
        except RefundExceedsPayment:
            return "exceeds"
        return "refunded"

    outcomes = await asyncio.gather(*(attempt() for _ in range(5)))
    assert sorted(outcomes) == ["exceeds"] * 4 + ["refunded"]
    payment = await payment_of(app, intent_id)
    assert payment.refunded_amount == AMOUNT
    assert payment.status == PaymentStatus.REFUNDED
    assert sum(r.amount for r in await refunds_of(app, booking_id)) == AMOUNT


# ---------------------------------------------------------------------------------------------
# Money helpers


def test_minor_units_follow_the_currency_exponent() -> None:
    assert to_minor_units(Decimal("12.50"), "EUR") == 1250
    assert to_minor_units(Decimal("1000"), "jpy") == 1000
    assert to_minor_units(Decimal("1.234"), "KWD") == 1234
    with pytest.raises(ValueError, match="smallest unit"):
        to_minor_units(Decimal("1000.50"), "JPY")
    with pytest.raises(ValueError, match="smallest unit"):
        to_minor_units(Decimal("0.005"), "EUR")
    assert from_minor_units(1250, "EUR") == Decimal("12.50")
    assert str(from_minor_units(1250, "EUR")) == "12.50"
    assert from_minor_units(1000, "JPY") == Decimal("1000")
    assert from_minor_units(1234, "KWD") == Decimal("1.234")


# ---------------------------------------------------------------------------------------------
# The refund route (booking's refund use case over this feature's money movement)


@pytest.fixture
def real_confirmation() -> Iterator[None]:
    from boxoffice.booking.service import confirm_paid_booking

    previous = service.get_success_handler()
    service.set_success_handler(confirm_paid_booking)
    yield
    service.set_success_handler(previous)


async def test_refund_route_refunds_a_paid_booking_once(
    client: httpx.AsyncClient, app: FastAPI, real_confirmation: None
) -> None:
    customer = await make_user(app)
    stranger = await make_user(app)
    booking_id, intent_id = await paid_booking(client, app, customer)
    assert await booking_status(app, booking_id) == BookingStatus.CONFIRMED
    url = "/api/payments/refund"
    headers = {**customer.headers, "Idempotency-Key": "refund-1"}

    foreign = await client.post(url, json={"bookingId": str(booking_id)}, headers=stranger.headers)
    assert foreign.status_code == 404
    first = await client.post(url, json={"bookingId": str(booking_id)}, headers=headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["amount"] == "25.00"
    assert body["status"] == "succeeded"
    assert body["bookingStatus"] == "refunded"
    assert sorted(body["seatNumbers"]) == ["A1", "A2"]
    replay = await client.post(url, json={"bookingId": str(booking_id)}, headers=headers)
    assert replay.json() == body

    again = await client.post(url, json={"bookingId": str(booking_id)}, headers=customer.headers)
    assert again.status_code == 409
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.REFUNDED
    assert [r.amount for r in await refunds_of(app, booking_id)] == [AMOUNT]


async def test_late_payment_for_seats_sold_elsewhere_is_refunded(
    client: httpx.AsyncClient, app: FastAPI, real_confirmation: None
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)
    async with app.state.db.session() as session:  # the deadline passed, A1 went to another
        booking = await session.get(Booking, booking_id)
        assert booking is not None
        booking.expires_at = utcnow() - dt.timedelta(seconds=1)
        showtime_id = booking.showtime_id
    other_booking = uuid.uuid4()
    await set_seat_state(app, showtime_id, "A1", "booked", booking_id=other_booking)

    response = await send_event(client, app, "payment_intent.succeeded", intent_id)
    assert response.status_code == 200, response.text
    payment = await payment_of(app, intent_id)
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refunded_amount == AMOUNT
    assert await booking_status(app, booking_id) == BookingStatus.REFUNDED
    # All seats or none: A1 stays the other buyer's, A2 (still this booking's) is free again.
    async with app.state.db.session(write=False) as session:
        rows = (
            await session.execute(
                select(Seat.label, ShowtimeSeat.status, ShowtimeSeat.booking_id)
                .join(ShowtimeSeat, ShowtimeSeat.seat_id == Seat.id)
                .where(ShowtimeSeat.showtime_id == showtime_id, Seat.label.in_(["A1", "A2"]))
                .order_by(Seat.label)
            )
        ).all()
        tickets = await session.scalar(
            select(func.count()).select_from(Ticket).where(Ticket.booking_id == booking_id)
        )
    assert [tuple(row) for row in rows] == [
        ("A1", "booked", other_booking),
        ("A2", "available", None),
    ]
    assert tickets == 0


# ---------------------------------------------------------------------------------------------
# Audit


async def audit_trail(app: FastAPI, intent_id: str) -> list[AuditEntry]:
    payment = await payment_of(app, intent_id)
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "payment", AuditEntry.entity_id == str(payment.id))
            .order_by(AuditEntry.created_at, AuditEntry.id)
        )
        return list(rows)


async def test_every_money_movement_writes_an_audit_entry(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)
    assert (await confirm(client, customer, intent_id, DECLINE_CARD)).status_code == 402
    assert (await confirm(client, customer, intent_id)).status_code == 200
    await service_refund(app, booking_id, Decimal("5.00"))
    await send_event(client, app, "charge.refunded", intent_id, amount="8.00")  # dashboard
    await send_event(client, app, "charge.dispute.created", intent_id, amount="17.00")

    trail = await audit_trail(app, intent_id)
    assert [(e.action, e.actor_kind) for e in trail] == [
        ("payment.intent_created", "customer"),
        ("payment.attempt_failed", "customer"),
        ("payment.succeeded", "customer"),
        ("payment.refunded", "system"),
        ("payment.refunded", "provider"),
        ("payment.disputed", "provider"),
    ]
    assert trail[0].actor_id == customer.id
    assert trail[1].data["failureCode"] == "card_declined"
    assert trail[2].data["amount"] == "25.00"
    assert [e.data["amount"] for e in trail[3:5]] == ["5.00", "3.00"]
    assert all(e.data["bookingId"] == str(booking_id) for e in trail)
    assert all(e.request_id for e in trail[:3])  # made by requests: traceable in the logs


async def test_audit_entry_commits_or_rolls_back_with_its_change(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await paid_booking(client, app, customer)

    class Abort(Exception):
        pass

    async def refund_then_fail() -> None:
        async with app.state.db.session() as session:
            booking = await session.get(Booking, booking_id)
            assert booking is not None
            await service.refund(
                session,
                PaymentContext.of(app),
                booking,
                Decimal("5.00"),
                reason="rolled back",
                seat_labels=[],
                requested_by=customer.id,
            )
            raise Abort

    with pytest.raises(Abort):
        await refund_then_fail()

    assert (await payment_of(app, intent_id)).refunded_amount == 0
    assert "payment.refunded" not in [e.action for e in await audit_trail(app, intent_id)]


async def test_success_after_cancellation_is_refunded_and_audited(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)
    await send_event(client, app, "payment_intent.canceled", intent_id)
    await send_event(client, app, "payment_intent.succeeded", intent_id)

    trail = await audit_trail(app, intent_id)
    assert [(e.action, e.actor_kind) for e in trail] == [
        ("payment.intent_created", "customer"),
        ("payment.cancelled", "provider"),
        ("payment.refunded", "system"),
    ]
    assert trail[2].data["amount"] == "25.00"
    assert booking_id not in confirmations


async def test_admin_reads_the_audit_log_filtered_and_paginated(
    client: httpx.AsyncClient, app: FastAPI, confirmations: list[uuid.UUID]
) -> None:
    customer = await make_user(app)
    admin = await make_user(app, role="admin")
    cashier = await make_user(app, role="cashier")
    _, first_intent = await paid_booking(client, app, customer)
    await paid_booking(client, app, customer)
    first_payment = await payment_of(app, first_intent)

    async def read(**params: Any) -> httpx.Response:
        return await client.get("/api/admin/audit-log", params=params, headers=admin.headers)

    everything = (await read(limit=3)).json()
    assert everything["pagination"] == {"page": 1, "limit": 3, "total": 4, "totalPages": 2}
    times = [e["createdAt"] for e in everything["entries"]]
    assert times == sorted(times, reverse=True)  # newest first

    one = (await read(entityType="payment", entityId=str(first_payment.id))).json()
    assert [e["action"] for e in one["entries"]] == ["payment.succeeded", "payment.intent_created"]
    assert one["entries"][1]["actorId"] == str(customer.id)
    assert one["entries"][1]["data"]["providerRef"] == first_intent

    by_prefix = (await read(action="payment.")).json()["pagination"]["total"]
    exact = (await read(action="payment.succeeded")).json()["pagination"]["total"]
    assert (by_prefix, exact) == (4, 2)
    assert (await read(actorId=str(admin.id))).json()["pagination"]["total"] == 0
    future = (utcnow() + dt.timedelta(hours=1)).isoformat()
    assert (await read(**{"from": future})).json()["entries"] == []
    assert (await read(to=future)).json()["pagination"]["total"] == 4

    assert (await read(**{"from": "yesterday"})).status_code == 422
    forbidden = await client.get("/api/admin/audit-log", headers=cashier.headers)
    assert forbidden.status_code == 403
    assert (await client.get("/api/admin/audit-log")).status_code == 401


@pytest.mark.backends("postgres", "mysql")
async def test_a_payment_is_locked_after_its_booking(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Everything that changes a booking and its payment locks the booking first (the expiry
    job, refunds, cancellation), so lock_by_ref must too, whether it takes both rows in one
    statement (PostgreSQL) or two (MariaDB). While it waits for the payment's row, the booking's
    row is already its own: a third transaction cannot take it."""
    customer = await make_user(app)
    booking_id = await pending_booking(app, customer)
    intent_id = await create_intent(client, customer, booking_id)

    payment_locked = asyncio.Event()
    release_payment = asyncio.Event()

    async def hold_the_payment() -> None:
        async with app.state.db.session() as session:
            await session.execute(
                select(Payment.id).where(Payment.provider_ref == intent_id).with_for_update()
            )
            payment_locked.set()
            await release_payment.wait()

    async def lock_by_ref() -> Payment | None:
        await payment_locked.wait()
        async with app.state.db.session() as session:
            return await service.lock_by_ref(session, "local", intent_id)

    holder = asyncio.create_task(hold_the_payment())
    waiter = asyncio.create_task(lock_by_ref())
    try:
        await payment_locked.wait()
        await asyncio.sleep(0.5)  # lock_by_ref is waiting for the payment's row by now
        assert not waiter.done()
        with pytest.raises(DBAPIError):
            async with app.state.db.session() as session:
                await session.execute(
                    select(Booking.id).where(Booking.id == booking_id).with_for_update(nowait=True)
                )
    finally:
        release_payment.set()
        await holder
    payment = await waiter
    assert payment is not None
    assert payment.booking_id == booking_id
