"""The Stripe provider against a fake Stripe API on loopback: the app books and pays through
the official SDK, the customer pays at the fake (the browser's part), and the fake's events are
delivered to the webhook signed as Stripe signs them."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from boxoffice.booking.models import Booking
from boxoffice.booking.service import expire_due_bookings
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.payments.exceptions import InvalidSignature, ProviderError, RefundFailed
from boxoffice.payments.models import Payment, PaymentEvent, Refund
from boxoffice.payments.providers.base import IntentStatus, RefundStatus
from boxoffice.payments.providers.stripe import StripeProvider
from boxoffice.payments.reconcile import reconcile_pending
from boxoffice.payments.service import PaymentContext
from tests.booking_helpers import book, book_hold, hold, seed_showtime
from tests.conftest import TEST_SECRET, Backend, make_settings
from tests.fakes.stripe_server import (
    CANCEL_INTENT,
    CREATE_INTENT,
    CREATE_REFUND,
    PM_3DS_REQUIRED,
    PM_DECLINED,
    PM_SUCCEEDS,
    FakeStripe,
    serve_fake_stripe,
)
from tests.helpers import TestUser, make_user

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]

SECRET_KEY = "sk_test_boxoffice_4eC39HqLyjWDarjtT1zdp7dc"
WEBHOOK_SECRET = "whsec_boxoffice_test_9f86d081884c7d659a2feaa0c55ad015"
WEBHOOK_URL = "/api/payments/webhook/stripe"
# Two seats at the seeded showtime's base price of 10.00 EUR.
SEATS = ("C3", "C4")
AMOUNT = Decimal("20.00")
AMOUNT_MINOR = 2000


def stripe_settings(fake: FakeStripe, **overrides: Any) -> dict[str, Any]:
    return {
        "payment_provider": "stripe",
        "stripe_secret_key": SECRET_KEY,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": fake.base_url,
        # Generous against a loaded machine; the timeout test sets its own.
        "payment_provider_timeout": 5.0,
        # One retry: the SDK's back-off sleeps at least half a second before each.
        "payment_provider_retries": 1,
        "reconcile_interval_seconds": 0,
        **overrides,
    }


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[FakeStripe]:
    with serve_fake_stripe(SECRET_KEY, WEBHOOK_SECRET) as fake:
        yield fake


@pytest.fixture
def fake(stripe_server: FakeStripe) -> FakeStripe:
    stripe_server.reset()
    return stripe_server


@pytest.fixture
async def api(make_client: MakeClient, fake: FakeStripe) -> httpx.AsyncClient:
    """The app with Stripe as its payment provider (on an emptied database)."""
    return await make_client(**stripe_settings(fake))


@pytest.fixture
async def stripe_ctx(
    backend: Backend, tmp_path: Path, fake: FakeStripe
) -> AsyncIterator[PaymentContext]:
    """Payment settings and providers like the app's, for the jobs tests run themselves."""
    ctx = PaymentContext(make_settings(backend, tmp_path / "jobs", **stripe_settings(fake)))
    yield ctx
    await ctx.registry.aclose()


# ---------------------------------------------------------------------------------------------
# Helpers


async def stripe_booking(
    api: httpx.AsyncClient, app: FastAPI, customer: TestUser
) -> tuple[str, str]:
    """A pending booking of SEATS made over HTTP; its id and Stripe PaymentIntent id."""
    show = await seed_showtime(app)
    answer = await book(api, customer.headers, show.showtime_id, *SEATS)
    return answer["booking"]["id"], answer["paymentIntentId"]


async def deliver(
    api: httpx.AsyncClient, fake: FakeStripe, event: dict[str, Any], **signing: Any
) -> httpx.Response:
    body, headers = fake.signed(event, **signing)
    return await api.post(WEBHOOK_URL, content=body, headers=headers)


async def deliver_ok(
    api: httpx.AsyncClient, fake: FakeStripe, event: dict[str, Any]
) -> dict[str, Any]:
    response = await deliver(api, fake, event)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def customer_pays(fake: FakeStripe, intent_id: str, payment_method: str) -> int:
    response = await fake.customer_confirms(intent_id, payment_method)
    return response.status_code


async def booking_of(api: httpx.AsyncClient, customer: TestUser, booking_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/bookings/{booking_id}", headers=customer.headers)
    assert response.status_code == 200, response.text
    booking: dict[str, Any] = response.json()["booking"]
    return booking


async def ticket_count(api: httpx.AsyncClient, customer: TestUser, booking_id: str) -> int:
    response = await api.get(f"/api/bookings/{booking_id}/tickets", headers=customer.headers)
    if response.status_code != 200:
        return 0
    return len(response.json()["tickets"])


async def payment_of(app: FastAPI, intent_id: str) -> Payment:
    async with app.state.db.session(write=False) as session:
        payment = await session.scalar(select(Payment).where(Payment.provider_ref == intent_id))
        assert payment is not None
        return payment


async def refunds_of(app: FastAPI, booking_id: str) -> list[Refund]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(Refund)
            .where(Refund.booking_id == uuid.UUID(booking_id))
            .order_by(Refund.created_at)
        )
        return list(rows)


async def pass_deadline(app: FastAPI, booking_id: str) -> None:
    async with app.state.db.session() as session:
        await session.execute(
            update(Booking)
            .where(Booking.id == uuid.UUID(booking_id))
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )


async def paid_booking(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe, customer: TestUser
) -> tuple[str, str]:
    """A booking confirmed by Stripe's success webhook."""
    booking_id, intent_id = await stripe_booking(api, app, customer)
    assert await customer_pays(fake, intent_id, PM_SUCCEEDS) == 200
    await deliver_ok(api, fake, fake.last_event("payment_intent.succeeded", intent_id))
    assert (await booking_of(api, customer, booking_id))["status"] == "confirmed"
    return booking_id, intent_id


# ---------------------------------------------------------------------------------------------
# Intents


async def test_booking_creates_one_stripe_intent_in_minor_units_with_metadata(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    show = await seed_showtime(app)
    answer = await book(api, customer.headers, show.showtime_id, *SEATS)
    booking_id, intent_id = answer["booking"]["id"], answer["paymentIntentId"]

    intent = fake.intent(intent_id)
    assert answer["paymentClientSecret"] == intent["client_secret"]
    (created,) = fake.requests_to(CREATE_INTENT)
    assert created.authorization == f"Bearer {SECRET_KEY}"
    assert created.content_type == "application/x-www-form-urlencoded"
    assert created.params == {
        "amount": str(AMOUNT_MINOR),
        "currency": "eur",
        "metadata": {"booking_id": booking_id},
        "automatic_payment_methods": {"enabled": "true"},
    }
    assert created.idempotency_key == f"booking-{booking_id}-intent-1"

    for _ in range(2):
        again = await api.post(
            "/api/payments/create-intent", json={"bookingId": booking_id}, headers=customer.headers
        )
        assert again.status_code == 200, again.text
        body = again.json()
        assert (body["clientSecret"], body["paymentIntentId"]) == (
            intent["client_secret"],
            intent_id,
        )
        assert (body["provider"], body["amount"], body["currency"]) == ("stripe", "20.00", "EUR")
    assert fake.intents_created == 1


async def test_create_intent_retries_a_5xx_with_the_same_idempotency_key(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    show = await seed_showtime(app)
    fake.fail_next(CREATE_INTENT, 1, status=500)

    answer = await book(api, customer.headers, show.showtime_id, *SEATS)

    attempts = fake.requests_to(CREATE_INTENT)
    assert len(attempts) == 2
    assert attempts[0].idempotency_key == attempts[1].idempotency_key
    assert fake.intents_created == 1
    assert answer["paymentIntentId"] in fake.intents


async def test_stripe_still_failing_after_the_retries_is_a_502_and_books_nothing(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    show = await seed_showtime(app)
    held = await hold(api, customer.headers, show.showtime_id, *SEATS)
    lock_token = held.json()["lockToken"]
    fake.fail_next(CREATE_INTENT, 2, status=503)  # the first try and its one retry

    failed = await book_hold(api, customer.headers, show.showtime_id, lock_token, *SEATS)
    assert failed.status_code == 502, failed.text
    assert failed.json()["code"] == "payment_provider_error"
    assert SECRET_KEY not in failed.text
    assert fake.intents_created == 0
    mine = await api.get("/api/me/bookings", headers=customer.headers)
    assert mine.json()["bookings"] == []

    # Nothing was kept of the failed attempt: the same hold books once Stripe is back.
    booked = await book_hold(api, customer.headers, show.showtime_id, lock_token, *SEATS)
    assert booked.status_code == 201, booked.text
    assert fake.intents_created == 1


async def test_a_booking_refused_at_its_last_step_cancels_the_intent_it_made(
    make_client: MakeClient, app: FastAPI, fake: FakeStripe, backend: Backend
) -> None:
    """The hold runs out while its booking waits for Stripe and another customer takes one
    of its seats. On PostgreSQL the intent is made before the statement that writes the
    booking and extends the hold, which then finds a seat gone: the booking is refused (410)
    and the intent cancelled at Stripe. Elsewhere the hold is extended (its seats locked)
    before the intent is made: the booking stands and the other customer is refused."""
    api = await make_client(**stripe_settings(fake, hold_ttl=2, expiry_interval_seconds=0))
    ann, bob = await make_user(app), await make_user(app)
    show = await seed_showtime(app)
    held = await hold(api, ann.headers, show.showtime_id, *SEATS)
    expires = dt.datetime.fromisoformat(held.json()["expiresAt"])
    fake.delay_next(CREATE_INTENT, 3.5)
    booking = asyncio.create_task(
        book_hold(api, ann.headers, show.showtime_id, held.json()["lockToken"], *SEATS)
    )
    while fake.intents_created == 0:
        assert not booking.done(), (await booking).text  # booked too late to race
        await asyncio.sleep(0.02)
    await asyncio.sleep(max(0.0, (expires - utcnow()).total_seconds()) + 0.1)
    assert not booking.done()  # still waiting for Stripe's answer

    taken = await hold(api, bob.headers, show.showtime_id, SEATS[1])
    booked = await booking
    (intent,) = fake.intents.values()
    if backend.name == "postgres":
        assert taken.status_code == 201, taken.text
        assert booked.status_code == 410, booked.text
        assert booked.json()["code"] == "hold_expired"
        assert intent["status"] == "canceled"
        async with app.state.db.session() as session:
            assert (await session.scalars(select(Payment))).all() == []
    else:
        assert booked.status_code == 201, booked.text
        assert taken.status_code == 409, taken.text
        assert intent["status"] == "requires_payment_method"


async def test_create_intent_timeout_is_retried_onto_the_same_intent(
    make_client: MakeClient, app: FastAPI, fake: FakeStripe
) -> None:
    api = await make_client(**stripe_settings(fake, payment_provider_timeout=0.5))
    customer = await make_user(app)
    show = await seed_showtime(app)
    # Stripe creates the intent but its answer arrives after the client gave up.
    fake.delay_next(CREATE_INTENT, seconds=1.5)

    answer = await book(api, customer.headers, show.showtime_id, *SEATS)

    attempts = fake.requests_to(CREATE_INTENT)
    assert len(attempts) >= 2
    assert {a.idempotency_key for a in attempts} == {f"booking-{answer['booking']['id']}-intent-1"}
    assert fake.intents_created == 1
    assert answer["paymentIntentId"] in fake.intents


async def test_a_booking_waiting_for_stripe_gives_its_admission_place_to_others(
    make_client: MakeClient, app: FastAPI, fake: FakeStripe
) -> None:
    """One unit of work at a time (core.admission): while a booking waits for Stripe, another
    request gets the place; the booking then finishes without queueing again."""
    api = await make_client(**stripe_settings(fake, database_concurrency=1))
    customer, other = await make_user(app), await make_user(app)
    show = await seed_showtime(app)
    held = await hold(api, customer.headers, show.showtime_id, *SEATS)
    assert held.status_code == 201, held.text
    fake.delay_next(CREATE_INTENT, seconds=2.0)

    booking = asyncio.create_task(
        book_hold(api, customer.headers, show.showtime_id, held.json()["lockToken"], *SEATS)
    )
    while not fake.requests_to(CREATE_INTENT):
        await asyncio.sleep(0.01)
    meanwhile = await asyncio.wait_for(api.get("/api/me/bookings", headers=other.headers), 1.5)
    assert meanwhile.status_code == 200, meanwhile.text
    assert not booking.done()
    booked = await asyncio.wait_for(booking, 10)
    assert booked.status_code == 201, booked.text
    assert fake.intents_created == 1


# ---------------------------------------------------------------------------------------------
# Paying


async def test_success_webhook_confirms_the_booking_once_however_often_delivered(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await stripe_booking(api, app, customer)
    assert await customer_pays(fake, intent_id, PM_SUCCEEDS) == 200
    succeeded = fake.last_event("payment_intent.succeeded", intent_id)

    assert await deliver_ok(api, fake, succeeded) == {"received": True, "duplicate": False}
    assert await deliver_ok(api, fake, succeeded) == {"received": True, "duplicate": True}

    assert (await booking_of(api, customer, booking_id))["status"] == "confirmed"
    assert await ticket_count(api, customer, booking_id) == len(SEATS)
    payment = await payment_of(app, intent_id)
    assert (payment.provider, payment.status) == ("stripe", "succeeded")
    async with app.state.db.session(write=False) as session:
        stored = (
            await session.scalars(
                select(PaymentEvent).where(PaymentEvent.event_id == succeeded["id"])
            )
        ).all()
    assert len(stored) == 1
    assert stored[0].payload["amount"] == "20.00"  # amount_received, from minor units


async def test_declined_card_leaves_the_booking_pending_and_a_later_success_confirms_it(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await stripe_booking(api, app, customer)

    assert await customer_pays(fake, intent_id, PM_DECLINED) == 402
    failed = await deliver_ok(api, fake, fake.last_event("payment_intent.payment_failed"))
    assert failed["duplicate"] is False
    assert (await booking_of(api, customer, booking_id))["status"] == "pending"
    payment = await payment_of(app, intent_id)
    assert (payment.status, payment.failure_code) == ("pending", "generic_decline")

    assert await customer_pays(fake, intent_id, PM_SUCCEEDS) == 200
    await deliver_ok(api, fake, fake.last_event("payment_intent.succeeded", intent_id))
    assert (await booking_of(api, customer, booking_id))["status"] == "confirmed"
    payment = await payment_of(app, intent_id)
    assert (payment.status, payment.failure_code) == ("succeeded", None)


async def test_three_d_secure_requires_action_until_the_customer_authenticates(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await stripe_booking(api, app, customer)

    assert await customer_pays(fake, intent_id, PM_3DS_REQUIRED) == 200
    await deliver_ok(api, fake, fake.last_event("payment_intent.requires_action", intent_id))
    assert (await booking_of(api, customer, booking_id))["status"] == "pending"

    fake.customer_authenticates(intent_id, succeed=False)
    await deliver_ok(api, fake, fake.last_event("payment_intent.payment_failed", intent_id))
    payment = await payment_of(app, intent_id)
    assert (payment.status, payment.failure_code) == (
        "pending",
        "payment_intent_authentication_failure",
    )

    assert await customer_pays(fake, intent_id, PM_3DS_REQUIRED) == 200
    fake.customer_authenticates(intent_id, succeed=True)
    await deliver_ok(api, fake, fake.last_event("payment_intent.succeeded", intent_id))
    assert (await booking_of(api, customer, booking_id))["status"] == "confirmed"
    assert await ticket_count(api, customer, booking_id) == len(SEATS)


# ---------------------------------------------------------------------------------------------
# Events out of order


async def test_refund_reported_before_the_success_is_applied_with_it(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    partly_id, partly = await stripe_booking(api, app, customer)
    fully_id, fully = await stripe_booking(api, app, customer)
    for intent_id, refunded in ((partly, 500), (fully, None)):
        assert await customer_pays(fake, intent_id, PM_SUCCEEDS) == 200
        fake.dashboard_refund(intent_id, refunded)

    for intent_id in (partly, fully):  # the refund's event overtakes the success's
        await deliver_ok(api, fake, fake.last_event("charge.refunded", intent_id))
        assert (await payment_of(app, intent_id)).status == "pending"
        await deliver_ok(api, fake, fake.last_event("payment_intent.succeeded", intent_id))

    payment = await payment_of(app, partly)
    assert (payment.status, payment.refunded_amount) == ("partially_refunded", Decimal("5.00"))
    assert (await booking_of(api, customer, partly_id))["status"] == "confirmed"
    # Refunded in full before its success reached us: nobody paid, nothing is confirmed.
    payment = await payment_of(app, fully)
    assert (payment.status, payment.refunded_amount) == ("refunded", AMOUNT)
    assert (await booking_of(api, customer, fully_id))["status"] != "confirmed"
    assert await ticket_count(api, customer, fully_id) == 0


async def test_success_after_the_booking_expired_is_refunded_at_stripe(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe, stripe_ctx: PaymentContext
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await stripe_booking(api, app, customer)
    # The customer pays at the last moment; the expiry job runs before the webhook arrives
    # (and Stripe refuses to cancel the paid intent).
    assert await customer_pays(fake, intent_id, PM_SUCCEEDS) == 200
    await pass_deadline(app, booking_id)
    async with app.state.db.session() as session:
        assert await expire_due_bookings(session, stripe_ctx) == 1
    assert len(fake.requests_to(CANCEL_INTENT)) == 1
    assert (await payment_of(app, intent_id)).status == "cancelled"

    await deliver_ok(api, fake, fake.last_event("payment_intent.succeeded", intent_id))

    (refund,) = fake.refunds_of(intent_id)
    assert (refund["amount"], refund["status"]) == (AMOUNT_MINOR, "succeeded")
    payment = await payment_of(app, intent_id)
    assert (payment.status, payment.refunded_amount) == ("refunded", AMOUNT)
    assert [r.provider_ref for r in await refunds_of(app, booking_id)] == [refund["id"]]
    assert (await booking_of(api, customer, booking_id))["status"] == "expired"
    assert await ticket_count(api, customer, booking_id) == 0


async def test_payment_failed_after_the_success_changes_nothing(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await stripe_booking(api, app, customer)
    assert await customer_pays(fake, intent_id, PM_DECLINED) == 402
    assert await customer_pays(fake, intent_id, PM_SUCCEEDS) == 200

    await deliver_ok(api, fake, fake.last_event("payment_intent.succeeded", intent_id))
    late = await deliver_ok(api, fake, fake.last_event("payment_intent.payment_failed", intent_id))
    assert late["duplicate"] is False

    payment = await payment_of(app, intent_id)
    assert (payment.status, payment.failure_code) == ("succeeded", None)
    assert (await booking_of(api, customer, booking_id))["status"] == "confirmed"


# ---------------------------------------------------------------------------------------------
# Signatures


async def test_webhook_signature_is_verified(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await stripe_booking(api, app, customer)
    assert await customer_pays(fake, intent_id, PM_SUCCEEDS) == 200
    event = fake.last_event("payment_intent.succeeded", intent_id)
    body, headers = fake.signed(event)
    now = int(time.time())

    forged = {**headers, "Stripe-Signature": headers["Stripe-Signature"][:-4] + "0000"}
    tampered_body = body.replace(b'"amount_received": 2000', b'"amount_received": 1')
    assert tampered_body != body
    unsigned = {k: v for k, v in headers.items() if k != "Stripe-Signature"}
    cases: dict[str, tuple[bytes, dict[str, str]]] = {
        "forged signature": (body, forged),
        "body changed after signing": (tampered_body, headers),
        "signed with another secret": fake.signed(event, secret="whsec_someone_else"),
        "missing header": (body, unsigned),
        "stale timestamp": fake.signed(event, timestamp=now - 301),
        "malformed header": (body, {**headers, "Stripe-Signature": "v1=abc"}),
    }
    for case, (case_body, case_headers) in cases.items():
        response = await api.post(WEBHOOK_URL, content=case_body, headers=case_headers)
        assert response.status_code == 400, case
        assert response.json()["code"] == "invalid_signature", case
        assert WEBHOOK_SECRET not in response.text

    async with app.state.db.session(write=False) as session:
        assert (await session.scalars(select(PaymentEvent))).all() == []
    assert (await booking_of(api, customer, booking_id))["status"] == "pending"

    not_json = b"{not json"
    garbage = await api.post(WEBHOOK_URL, content=not_json, headers=fake.webhook_headers(not_json))
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "invalid_webhook_payload"

    # Within the tolerance: accepted.
    assert (await deliver(api, fake, event, timestamp=now - 200)).status_code == 200
    assert (await booking_of(api, customer, booking_id))["status"] == "confirmed"


# ---------------------------------------------------------------------------------------------
# Refunds and disputes


async def test_staff_refund_goes_through_the_refunds_api(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    operator = await make_user(app, "operator")
    booking_id, intent_id = await paid_booking(api, app, fake, customer)

    response = await api.post(
        "/api/payments/refund",
        json={"bookingId": booking_id, "amount": "7.50", "reason": "goodwill"},
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["amount"], response.json()["status"]) == ("7.50", "succeeded")

    (request,) = fake.requests_to(CREATE_REFUND)
    assert request.params == {"payment_intent": intent_id, "amount": "750"}
    assert request.idempotency_key
    assert fake.refunds_created == 1
    (refund,) = fake.refunds_of(intent_id)
    assert refund["amount"] == 750
    assert [r.provider_ref for r in await refunds_of(app, booking_id)] == [refund["id"]]

    # Stripe's echo of our own refund records nothing more.
    await deliver_ok(api, fake, fake.last_event("charge.refunded", intent_id))
    payment = await payment_of(app, intent_id)
    assert (payment.status, payment.refunded_amount) == ("partially_refunded", Decimal("7.50"))
    assert len(await refunds_of(app, booking_id)) == 1


async def test_dashboard_refunds_are_recorded_from_the_cumulative_amount(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await paid_booking(api, app, fake, customer)

    fake.dashboard_refund(intent_id, 700)
    await deliver_ok(api, fake, fake.last_event("charge.refunded", intent_id))
    fake.dashboard_refund(intent_id, 300)  # Stripe reports 1000 refunded so far
    await deliver_ok(api, fake, fake.last_event("charge.refunded", intent_id))

    assert fake.requests_to(CREATE_REFUND) == []
    payment = await payment_of(app, intent_id)
    assert (payment.status, payment.refunded_amount) == ("partially_refunded", Decimal("10.00"))
    amounts = [r.amount for r in await refunds_of(app, booking_id)]
    assert amounts == [Decimal("7.00"), Decimal("3.00")]


async def test_dispute_event_is_stored_with_its_payment(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> None:
    customer = await make_user(app)
    _, intent_id = await paid_booking(api, app, fake, customer)

    dispute = fake.open_dispute(intent_id)
    event = fake.last_event("charge.dispute.created", intent_id)
    assert await deliver_ok(api, fake, event) == {"received": True, "duplicate": False}

    payment = await payment_of(app, intent_id)
    async with app.state.db.session(write=False) as session:
        stored = await session.scalar(
            select(PaymentEvent).where(PaymentEvent.event_type == "charge.dispute.created")
        )
    assert stored is not None
    assert stored.payment_id == payment.id
    assert stored.payload["amount"] == "20.00"
    assert stored.payload["event"]["data"]["object"]["id"] == dispute["id"]
    assert payment.status == "succeeded"


# ---------------------------------------------------------------------------------------------
# Expiry and reconciliation


async def test_expired_booking_cancels_its_intent_at_stripe(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe, stripe_ctx: PaymentContext
) -> None:
    customer = await make_user(app)
    booking_id, intent_id = await stripe_booking(api, app, customer)
    await pass_deadline(app, booking_id)

    async with app.state.db.session() as session:
        assert await expire_due_bookings(session, stripe_ctx) == 1

    assert fake.intent(intent_id)["status"] == "canceled"
    assert (await payment_of(app, intent_id)).status == "cancelled"
    # Stripe's own news of it changes nothing more.
    await deliver_ok(api, fake, fake.last_event("payment_intent.canceled", intent_id))
    assert (await payment_of(app, intent_id)).status == "cancelled"
    assert (await booking_of(api, customer, booking_id))["status"] == "expired"


async def test_reconciliation_confirms_a_payment_whose_webhook_was_lost(
    api: httpx.AsyncClient, app: FastAPI, fake: FakeStripe, stripe_ctx: PaymentContext
) -> None:
    customer = await make_user(app)
    paid_id, paid = await stripe_booking(api, app, customer)
    unpaid_id, _ = await stripe_booking(api, app, customer)
    assert await customer_pays(fake, paid, PM_SUCCEEDS) == 200  # no webhook is delivered

    await reconcile_pending(app.state.db, stripe_ctx, older_than=dt.timedelta(0))

    assert (await booking_of(api, customer, paid_id))["status"] == "confirmed"
    assert await ticket_count(api, customer, paid_id) == len(SEATS)
    assert (await booking_of(api, customer, unpaid_id))["status"] == "pending"
    # The webhook arriving after all is a no-op.
    await deliver_ok(api, fake, fake.last_event("payment_intent.succeeded", paid))
    assert await ticket_count(api, customer, paid_id) == len(SEATS)


async def test_reconcile_command_confirms_paid_and_records_cancelled_intents(
    api: httpx.AsyncClient,
    app: FastAPI,
    fake: FakeStripe,
    stripe_ctx: PaymentContext,
    backend: Backend,
    tmp_path: Path,
) -> None:
    customer = await make_user(app)
    paid_id, paid = await stripe_booking(api, app, customer)
    _, cancelled = await stripe_booking(api, app, customer)
    assert await customer_pays(fake, paid, PM_SUCCEEDS) == 200  # webhooks lost
    async with httpx.AsyncClient(base_url=fake.base_url) as dashboard:  # cancelled at Stripe
        answer = await dashboard.post(
            f"/v1/payment_intents/{cancelled}/cancel",
            data={"cancellation_reason": "abandoned"},
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
        )
        assert answer.status_code == 200, answer.text
    env = {
        **os.environ,
        "BOXOFFICE_ENV": "test",
        "BOXOFFICE_DATABASE_URL": backend.url,
        "BOXOFFICE_VAR_DIR": str(tmp_path / "cli"),
        "BOXOFFICE_SECRET_KEY": TEST_SECRET,
        "BOXOFFICE_PAYMENT_PROVIDER": "stripe",
        "BOXOFFICE_STRIPE_SECRET_KEY": SECRET_KEY,
        "BOXOFFICE_STRIPE_API_BASE": fake.base_url,
    }
    # Both are younger than the default threshold (15 minutes): nothing to do yet.
    fresh = await reconcile_pending(app.state.db, stripe_ctx, older_than=dt.timedelta(minutes=15))
    assert fresh.checked == 0

    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "boxoffice.cli",
            "payments",
            "reconcile",
            "--older-than",
            "0",
            "--since",
            "2000-01-01",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "checked=2 confirmed=1 cancelled=1 still_pending=0 errors=0" in done.stdout
    assert (await booking_of(api, customer, paid_id))["status"] == "confirmed"
    assert (await payment_of(app, cancelled)).status == "cancelled"


async def test_reconciliation_job_runs_in_the_server(
    make_client: MakeClient, app: FastAPI, fake: FakeStripe
) -> None:
    api = await make_client(**stripe_settings(fake))
    customer = await make_user(app)
    booking_id, intent_id = await stripe_booking(api, app, customer)
    assert await customer_pays(fake, intent_id, PM_SUCCEEDS) == 200  # webhook lost
    async with app.state.db.session() as session:  # pending for longer than the threshold
        await session.execute(
            update(Payment)
            .where(Payment.provider_ref == intent_id)
            .values(created_at=utcnow() - dt.timedelta(minutes=2))
        )

    # An app with the job on, as a server process would run it.
    with_job = await make_client(
        **stripe_settings(fake, reconcile_interval_seconds=1, reconcile_after_minutes=1)
    )
    for _ in range(100):
        if (await booking_of(with_job, customer, booking_id))["status"] == "confirmed":
            break
        await asyncio.sleep(0.1)
    assert (await booking_of(with_job, customer, booking_id))["status"] == "confirmed"


# ---------------------------------------------------------------------------------------------
# The provider on its own (no database)


def provider_for(fake: FakeStripe, **overrides: Any) -> StripeProvider:
    values = {**stripe_settings(fake), **overrides}
    return StripeProvider(Settings(_env_file=None, **values))


async def test_retrieve_maps_stripe_intent_states(fake: FakeStripe) -> None:
    provider = provider_for(fake)
    try:

        async def new_intent() -> str:
            result = await provider.create_intent(
                Decimal("12.50"), "EUR", uuid.uuid4(), uuid.uuid4().hex
            )
            assert result.status == IntentStatus.PENDING
            return result.provider_ref

        waiting, authenticating, paid, cancelled = [await new_intent() for _ in range(4)]
        assert await customer_pays(fake, authenticating, PM_3DS_REQUIRED) == 200
        assert await customer_pays(fake, paid, PM_SUCCEEDS) == 200
        await provider.cancel(cancelled)

        assert (await provider.retrieve(waiting)).status == IntentStatus.PENDING
        assert (await provider.retrieve(authenticating)).status == IntentStatus.REQUIRES_ACTION
        assert (await provider.retrieve(paid)).status == IntentStatus.SUCCEEDED
        assert (await provider.retrieve(cancelled)).status == IntentStatus.CANCELLED
        assert fake.intent(waiting)["amount"] == 1250
    finally:
        await provider.aclose()


async def test_cancel_accepts_cancelled_and_paid_intents(fake: FakeStripe) -> None:
    provider = provider_for(fake)
    try:
        cancelled = await provider.create_intent(Decimal("5.00"), "EUR", uuid.uuid4(), "c-1")
        paid = await provider.create_intent(Decimal("5.00"), "EUR", uuid.uuid4(), "c-2")
        await provider.cancel(cancelled.provider_ref)
        assert await customer_pays(fake, paid.provider_ref, PM_SUCCEEDS) == 200

        # Stripe answers 400 payment_intent_unexpected_state to both; neither is an error here.
        await provider.cancel(cancelled.provider_ref)
        await provider.cancel(paid.provider_ref)
        assert len(fake.requests_to(CANCEL_INTENT)) == 3
        assert fake.intent(paid.provider_ref)["status"] == "succeeded"
    finally:
        await provider.aclose()


async def test_refund_states_and_refusals_are_mapped(fake: FakeStripe) -> None:
    provider = provider_for(fake)
    try:
        intent = await provider.create_intent(Decimal("1000"), "JPY", uuid.uuid4(), "r-1")
        assert fake.intent(intent.provider_ref)["amount"] == 1000  # yen have no minor unit
        assert await customer_pays(fake, intent.provider_ref, PM_SUCCEEDS) == 200

        fake.next_refund_status = "pending"
        pending = await provider.refund(intent.provider_ref, Decimal("400"), "JPY", "r-1-a")
        assert pending.status == RefundStatus.PENDING
        fake.next_refund_status = "succeeded"
        done = await provider.refund(intent.provider_ref, Decimal("600"), "JPY", "r-1-b")
        assert done.status == RefundStatus.SUCCEEDED
        assert [r["amount"] for r in fake.refunds_of(intent.provider_ref)] == [400, 600]

        with pytest.raises(RefundFailed, match="already been refunded"):
            await provider.refund(intent.provider_ref, Decimal("1"), "JPY", "r-1-c")
    finally:
        await provider.aclose()


async def test_provider_errors_say_what_failed_without_the_secret_key(fake: FakeStripe) -> None:
    wrong_key = "sk_test_not_the_right_key_0123456789abcdef"
    provider = provider_for(fake, stripe_secret_key=wrong_key)
    try:
        with pytest.raises(ProviderError) as refused:
            await provider.create_intent(Decimal("5.00"), "EUR", uuid.uuid4(), "k-1")
        assert refused.value.status == 502
        assert "API key" in refused.value.detail
        # Stripe's own message quotes the key's last four characters.
        assert wrong_key[-4:] not in refused.value.detail
        assert wrong_key[-4:] not in repr(refused.value.extra)
        assert refused.value.__cause__ is None
    finally:
        await provider.aclose()

    provider = provider_for(fake)
    try:
        with pytest.raises(ProviderError) as missing:
            await provider.retrieve("pi_does_not_exist")
        assert "No such payment_intent" in missing.value.detail
        assert missing.value.extra["providerCode"] == "resource_missing"
    finally:
        await provider.aclose()


async def test_webhook_events_map_onto_the_services_names(fake: FakeStripe) -> None:
    provider = provider_for(fake)
    try:
        intent = await provider.create_intent(Decimal("20.00"), "EUR", uuid.uuid4(), "e-1")
        ref = intent.provider_ref
        assert await customer_pays(fake, ref, PM_DECLINED) == 402
        assert await customer_pays(fake, ref, PM_SUCCEEDS) == 200
        fake.dashboard_refund(ref, 250)
        fake.dashboard_refund(ref, 250)
        fake.open_dispute(ref, 1500)

        async def parse(event_type: str) -> Any:
            event = fake.last_event(event_type, ref)
            body, headers = fake.signed(event)
            parsed = await provider.verify_webhook(headers, body)
            assert (parsed.event_id, parsed.type, parsed.provider_ref) == (
                event["id"],
                event_type,
                ref,
            )
            assert parsed.data == event
            return parsed

        assert (await parse("payment_intent.succeeded")).amount == Decimal("20.00")
        assert (await parse("payment_intent.payment_failed")).failure_code == "generic_decline"
        assert (await parse("charge.refunded")).amount == Decimal("5.00")  # 2.50 twice
        assert (await parse("charge.dispute.created")).amount == Decimal("15.00")
        passed_through = await parse("charge.succeeded")
        assert (passed_through.amount, passed_through.failure_code) == (None, None)

        event = fake.last_event("payment_intent.created", ref)
        body, headers = fake.signed(event)
        with pytest.raises(InvalidSignature):
            await provider.verify_webhook({}, body)
        with pytest.raises(InvalidSignature):
            await provider.verify_webhook(headers, body + b" ")
    finally:
        await provider.aclose()
