"""PayPal: orders, captures, refunds and verified webhooks against a fake PayPal over HTTP.

The app runs with `BOXOFFICE_PAYMENT_PROVIDER=paypal` and its PayPal API base pointed at
`tests/fakes/paypal_server.py`; the customer's steps at PayPal (approving, a declined funding
source, a dashboard refund, a dispute) are the fake's methods, and its webhook deliveries are
posted to the app as PayPal would post them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from boxoffice.config import Settings
from boxoffice.payments.models import PaymentEvent, PaymentStatus
from boxoffice.payments.providers.base import EventType
from boxoffice.payments.providers.paypal import PayPalProvider
from boxoffice.payments.reconcile import ReconcileReport, reconcile_pending
from boxoffice.payments.service import PaymentContext, build_registry
from tests.booking_helpers import book, seed_showtime
from tests.conftest import Backend, make_settings
from tests.fakes.paypal_server import (
    APPROVED,
    CAPTURE,
    CAPTURE_COMPLETED,
    CAPTURE_DENIED,
    CAPTURE_REFUNDED,
    CREATE_ORDER,
    DECLINED,
    DISPUTE_CREATED,
    Delivery,
    FakePayPal,
)
from tests.helpers import TestUser, make_user
from tests.test_payments import booking_status, count, payment_of, refunds_of

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]
RETURN_URL = "https://cinema.example/checkout/paypal/return"
CANCEL_URL = "https://cinema.example/checkout/paypal/cancel"


@pytest.fixture
def paypal() -> Iterator[FakePayPal]:
    fake = FakePayPal()
    with fake.serve():
        yield fake


def paypal_settings(fake: FakePayPal, **overrides: Any) -> dict[str, Any]:
    return {
        "payment_provider": "paypal",
        "paypal_client_id": fake.client_id,
        "paypal_client_secret": fake.client_secret,
        "paypal_webhook_id": fake.webhook_id,
        "paypal_api_base": fake.base_url,
        "paypal_return_url": RETURN_URL,
        "paypal_cancel_url": CANCEL_URL,
        "reconcile_interval_seconds": 0,  # the tests reconcile when they mean to
        **overrides,
    }


@pytest.fixture
async def shop(make_client: MakeClient, paypal: FakePayPal) -> httpx.AsyncClient:
    """The app, selling with PayPal (the fake)."""
    return await make_client(**paypal_settings(paypal))


@dataclass(frozen=True)
class Purchase:
    customer: TestUser
    booking_id: str
    order_id: str  # the PayPal order, our payment intent id

    @property
    def booking_uuid(self) -> uuid.UUID:
        return uuid.UUID(self.booking_id)


async def book_seats(app: FastAPI, shop: httpx.AsyncClient) -> Purchase:
    """A customer's pending booking of two 10.00 EUR seats, with its PayPal order."""
    show = await seed_showtime(app)
    customer = await make_user(app)
    answer = await book(shop, customer.headers, show.showtime_id, "A1", "A2")
    return Purchase(customer, answer["booking"]["id"], answer["paymentIntentId"])


async def capture(shop: httpx.AsyncClient, purchase: Purchase) -> httpx.Response:
    """The customer is back from PayPal: the checkout page asks for the capture."""
    return await shop.post(
        "/api/payments/paypal/capture",
        json={"paymentIntentId": purchase.order_id},
        headers=purchase.customer.headers,
    )


async def create_intent(shop: httpx.AsyncClient, purchase: Purchase) -> httpx.Response:
    return await shop.post(
        "/api/payments/create-intent",
        json={"bookingId": purchase.booking_id},
        headers=purchase.customer.headers,
    )


async def deliver(shop: httpx.AsyncClient, delivery: Delivery) -> httpx.Response:
    return await shop.post(
        "/api/payments/webhook/paypal", content=delivery.body, headers=delivery.headers
    )


async def deliver_all(shop: httpx.AsyncClient, paypal: FakePayPal, event_type: str) -> None:
    for delivery in paypal.take_deliveries(event_type):
        response = await deliver(shop, delivery)
        assert response.status_code == 200, response.text
        assert response.json()["duplicate"] is False


async def paid(app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal) -> Purchase:
    """A booking paid with PayPal (approved and captured), its webhooks still queued."""
    purchase = await book_seats(app, shop)
    paypal.approve(purchase.order_id)
    captured = await capture(shop, purchase)
    assert captured.status_code == 200, captured.text
    return purchase


async def tickets_of(shop: httpx.AsyncClient, purchase: Purchase) -> list[dict[str, Any]]:
    response = await shop.get(
        f"/api/bookings/{purchase.booking_id}/tickets", headers=purchase.customer.headers
    )
    assert response.status_code == 200, response.text
    tickets: list[dict[str, Any]] = response.json()["tickets"]
    return tickets


# ---------------------------------------------------------------------------------------------
# Orders and captures


async def test_create_intent_answers_the_approval_link_of_one_order(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)

    first = await create_intent(shop, purchase)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["provider"] == "paypal"
    assert body["paymentIntentId"] == purchase.order_id
    assert body["approvalUrl"] == paypal.approval_url(purchase.order_id)
    assert body["clientSecret"] is None
    assert (body["amount"], body["currency"]) == ("20.00", "EUR")

    order = paypal.order(purchase.order_id)
    assert order.body["intent"] == "CAPTURE"
    (unit,) = order.body["purchase_units"]
    assert unit["amount"] == {"currency_code": "EUR", "value": "20.00"}
    assert unit["custom_id"] == purchase.booking_id
    assert order.experience_context["return_url"] == RETURN_URL
    assert order.experience_context["cancel_url"] == CANCEL_URL

    again = await create_intent(shop, purchase)
    assert again.json() == body
    assert paypal.order_count == 1
    assert paypal.calls[CREATE_ORDER] == 1


async def test_capture_on_return_confirms_and_later_webhooks_change_nothing(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)
    paypal.approve(purchase.order_id)

    captured = await capture(shop, purchase)
    assert captured.status_code == 200, captured.text
    assert captured.json() == {
        "status": "succeeded",
        "paymentIntentId": purchase.order_id,
        "bookingId": purchase.booking_id,
        "bookingStatus": "confirmed",
    }
    assert paypal.capture_count == 1
    assert len(await tickets_of(shop, purchase)) == 2

    # PayPal's events arrive after the capture: the approval (which captures again, answered
    # by the first capture) and the capture's completion.
    await deliver_all(shop, paypal, APPROVED)
    (completed,) = paypal.take_deliveries(CAPTURE_COMPLETED)
    first = await deliver(shop, completed)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    redelivered = await deliver(shop, completed)
    assert redelivered.status_code == 200
    assert redelivered.json()["duplicate"] is True

    assert paypal.capture_count == 1
    assert (await payment_of(app, purchase.order_id)).status == PaymentStatus.SUCCEEDED
    assert len(await tickets_of(shop, purchase)) == 2
    again = await capture(shop, purchase)
    assert again.status_code == 200
    assert again.json()["bookingStatus"] == "confirmed"
    assert paypal.capture_count == 1


async def test_capture_before_approval_is_refused_and_the_booking_stays_pending(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)

    early = await capture(shop, purchase)
    assert early.status_code == 409, early.text
    assert early.json()["code"] == "payment_not_approved"
    assert await booking_status(app, purchase.booking_uuid) == "pending"
    assert (await payment_of(app, purchase.order_id)).status == PaymentStatus.PENDING
    assert paypal.capture_count == 0

    # Approved now: the same capture (same PayPal-Request-Id) goes through.
    paypal.approve(purchase.order_id)
    later = await capture(shop, purchase)
    assert later.status_code == 200, later.text
    assert later.json()["bookingStatus"] == "confirmed"


async def test_approval_webhook_alone_captures_and_confirms(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)
    approval = paypal.approve(purchase.order_id)  # the customer closes the tab at PayPal

    response = await deliver(shop, approval)
    assert response.status_code == 200, response.text
    assert paypal.capture_count == 1
    assert await booking_status(app, purchase.booking_uuid) == "confirmed"
    assert len(await tickets_of(shop, purchase)) == 2

    # Should they come back after all, nothing is captured twice.
    back = await capture(shop, purchase)
    assert back.status_code == 200
    assert back.json()["bookingStatus"] == "confirmed"
    assert paypal.capture_count == 1


async def test_return_capture_and_approval_webhook_racing_capture_once(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)
    approval = paypal.approve(purchase.order_id)

    # The customer's browser comes back while PayPal's webhook arrives, twice each.
    answers = await asyncio.gather(
        capture(shop, purchase),
        deliver(shop, approval),
        capture(shop, purchase),
        deliver(shop, approval),
    )
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert paypal.capture_count == 1
    assert await booking_status(app, purchase.booking_uuid) == "confirmed"
    assert len(await tickets_of(shop, purchase)) == 2


async def test_expired_order_fails_for_good_and_a_new_order_can_be_paid(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)
    paypal.approve(purchase.order_id)
    paypal.expire(purchase.order_id)

    refused = await capture(shop, purchase)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "payment_failed"
    assert refused.json()["reason"] == "order_expired"
    assert (await payment_of(app, purchase.order_id)).status == "failed"
    assert await booking_status(app, purchase.booking_uuid) == "pending"

    again = await create_intent(shop, purchase)
    assert again.status_code == 200, again.text
    new_order = again.json()["paymentIntentId"]
    assert new_order != purchase.order_id
    assert paypal.order_count == 2
    paypal.approve(new_order)
    retry = Purchase(purchase.customer, purchase.booking_id, new_order)
    assert (await capture(shop, retry)).json()["bookingStatus"] == "confirmed"


async def test_declined_funding_source_leaves_the_booking_pending_until_paid_another_way(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)
    paypal.approve(purchase.order_id)
    paypal.decline_next_capture(purchase.order_id)

    declined = await capture(shop, purchase)
    assert declined.status_code == 402, declined.text
    assert declined.json()["code"] == "instrument_declined"
    payment = await payment_of(app, purchase.order_id)
    assert (payment.status, payment.failure_code) == (PaymentStatus.PENDING, "instrument_declined")
    assert await booking_status(app, purchase.booking_uuid) == "pending"
    assert paypal.capture_count == 0

    # The customer picked another funding source at PayPal; the order is still approved.
    paid_now = await capture(shop, purchase)
    assert paid_now.status_code == 200, paid_now.text
    assert paid_now.json()["bookingStatus"] == "confirmed"


async def test_denied_capture_is_recorded_and_reconciliation_gives_up_the_spent_order(
    app: FastAPI,
    shop: httpx.AsyncClient,
    paypal: FakePayPal,
    backend: Backend,
    tmp_path: Path,
) -> None:
    purchase = await book_seats(app, shop)
    paypal.approve(purchase.order_id)
    paypal.decline_next_capture(purchase.order_id, DECLINED)

    declined = await capture(shop, purchase)
    assert declined.status_code == 402, declined.text
    assert declined.json()["code"] == "capture_declined"
    await deliver_all(shop, paypal, CAPTURE_DENIED)
    payment = await payment_of(app, purchase.order_id)
    assert (payment.status, payment.failure_code) == (PaymentStatus.PENDING, "capture_denied")

    report = await reconcile(app, paypal, backend, tmp_path)
    assert report.cancelled == 1
    assert (await payment_of(app, purchase.order_id)).status == PaymentStatus.CANCELLED
    # The booking can still be paid, with a new order.
    fresh = await create_intent(shop, purchase)
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["paymentIntentId"] != purchase.order_id
    assert fresh.json()["approvalUrl"] == paypal.approval_url(fresh.json()["paymentIntentId"])
    assert paypal.order_count == 2


# ---------------------------------------------------------------------------------------------
# Webhook verification


async def test_forged_or_altered_events_are_refused(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)
    other = await book_seats(app, shop)
    genuine = paypal.approve(purchase.order_id)
    other_approval = paypal.approve(other.order_id)

    def retarget(event: dict[str, Any]) -> None:
        event["resource"]["id"] = other.order_id

    forgeries = [
        genuine.altered(retarget),  # the signature does not cover another body
        Delivery(other_approval.body, genuine.headers),  # a signature moved to another event
        Delivery(
            genuine.body,
            {**genuine.headers, "PAYPAL-TRANSMISSION-SIG": "bm90IGEgc2lnbmF0dXJl"},
        ),
        Delivery(genuine.body, {"Content-Type": "application/json"}),  # not signed at all
    ]
    for forgery in forgeries:
        refused = await deliver(shop, forgery)
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "invalid_signature"
    garbage = await deliver(shop, Delivery(b"{not json", genuine.headers))
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "invalid_webhook_payload"

    assert await count(app, PaymentEvent) == 0
    assert paypal.capture_count == 0
    assert await booking_status(app, other.booking_uuid) == "pending"
    accepted = await deliver(shop, genuine)
    assert accepted.status_code == 200, accepted.text
    assert await booking_status(app, purchase.booking_uuid) == "confirmed"


# ---------------------------------------------------------------------------------------------
# Access tokens


async def test_one_token_serves_every_call_and_is_renewed_when_refused(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await book_seats(app, shop)  # creates the order
    await create_intent(shop, purchase)
    await capture(shop, purchase)  # refused: not approved
    paypal.approve(purchase.order_id)
    assert (await capture(shop, purchase)).status_code == 200
    await deliver_all(shop, paypal, APPROVED)  # verification, and a capture replayed
    assert paypal.token_requests == 1

    paypal.expire_tokens()  # PayPal forgets the token early
    await deliver_all(shop, paypal, CAPTURE_COMPLETED)
    assert paypal.rejected_tokens == 1
    assert paypal.token_requests == 2


async def test_token_is_renewed_before_it_expires(
    app: FastAPI, make_client: MakeClient, paypal: FakePayPal
) -> None:
    paypal.token_expires_in = 1
    shop = await make_client(**paypal_settings(paypal))
    purchase = await book_seats(app, shop)
    assert paypal.token_requests == 1

    await asyncio.sleep(1.0)
    paypal.approve(purchase.order_id)
    assert (await capture(shop, purchase)).status_code == 200
    assert paypal.token_requests == 2
    assert paypal.rejected_tokens == 0  # renewed in time, never sent dead


async def test_concurrent_calls_share_one_token_request(paypal: FakePayPal) -> None:
    settings = Settings(_env_file=None, **paypal_settings(paypal))
    provider = PayPalProvider(settings)
    try:
        orders = await asyncio.gather(
            *(
                provider.create_intent(Decimal("12.50"), "EUR", uuid.uuid4(), f"booking-{n}")
                for n in range(5)
            )
        )
    finally:
        await provider.aclose()
    assert len({order.provider_ref for order in orders}) == 5
    assert paypal.token_requests == 1


# ---------------------------------------------------------------------------------------------
# Faults


async def test_order_creation_survives_5xx_and_timeouts_with_one_order(
    app: FastAPI, make_client: MakeClient, paypal: FakePayPal
) -> None:
    shop = await make_client(
        **paypal_settings(paypal, payment_provider_timeout=0.5, payment_provider_retries=2)
    )
    # Both failed attempts created the order at PayPal before their answer was lost.
    paypal.fail_next(CREATE_ORDER, status=503)
    paypal.delay_next(CREATE_ORDER, seconds=1.0)

    purchase = await book_seats(app, shop)
    assert paypal.calls[CREATE_ORDER] == 3
    assert paypal.replays[CREATE_ORDER] == 2
    assert paypal.order_count == 1
    assert list(paypal.orders) == [purchase.order_id]


async def test_capture_survives_a_timeout_with_one_capture(
    app: FastAPI, make_client: MakeClient, paypal: FakePayPal
) -> None:
    shop = await make_client(**paypal_settings(paypal, payment_provider_timeout=0.5))
    purchase = await book_seats(app, shop)
    paypal.approve(purchase.order_id)
    paypal.delay_next(CAPTURE, seconds=1.0)

    captured = await capture(shop, purchase)
    assert captured.status_code == 200, captured.text
    assert captured.json()["bookingStatus"] == "confirmed"
    assert paypal.calls[CAPTURE] == 2
    assert paypal.replays[CAPTURE] == 1  # the retry carried the first attempt's request id
    assert paypal.capture_count == 1


async def test_a_capture_waiting_for_paypal_gives_its_admission_place_to_others(
    app: FastAPI, make_client: MakeClient, paypal: FakePayPal
) -> None:
    """One unit of work at a time (core.admission): while a capture waits for PayPal, another
    request gets the place; the capture then confirms without queueing again."""
    shop = await make_client(**paypal_settings(paypal, database_concurrency=1))
    purchase = await book_seats(app, shop)
    someone = await make_user(app)
    paypal.approve(purchase.order_id)
    paypal.delay_next(CAPTURE, seconds=2.0)

    captured = asyncio.create_task(capture(shop, purchase))
    while not paypal.calls[CAPTURE]:
        await asyncio.sleep(0.01)
    meanwhile = await asyncio.wait_for(shop.get("/api/me/bookings", headers=someone.headers), 1.5)
    assert meanwhile.status_code == 200, meanwhile.text
    assert not captured.done()
    answer = await asyncio.wait_for(captured, 10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["bookingStatus"] == "confirmed"


async def test_capture_lost_after_every_retry_is_confirmed_by_its_webhook(
    app: FastAPI, make_client: MakeClient, paypal: FakePayPal
) -> None:
    shop = await make_client(**paypal_settings(paypal, payment_provider_retries=2))
    purchase = await book_seats(app, shop)
    paypal.approve(purchase.order_id)
    paypal.fail_next(CAPTURE, times=3)  # PayPal captures, every answer is a 500

    failed = await capture(shop, purchase)
    assert failed.status_code == 502, failed.text
    assert failed.json()["code"] == "payment_provider_error"
    assert await booking_status(app, purchase.booking_uuid) == "pending"
    assert paypal.calls[CAPTURE] == 3
    assert paypal.capture_count == 1

    await deliver_all(shop, paypal, CAPTURE_COMPLETED)
    assert await booking_status(app, purchase.booking_uuid) == "confirmed"
    assert len(await tickets_of(shop, purchase)) == 2
    retried = await capture(shop, purchase)
    assert retried.status_code == 200
    assert paypal.capture_count == 1


# ---------------------------------------------------------------------------------------------
# Refunds and disputes


async def test_staff_refund_refunds_the_capture_once(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await paid(app, shop, paypal)
    paypal.take_deliveries()
    operator = await make_user(app, "operator")

    response = await shop.post(
        "/api/payments/refund",
        json={"bookingId": purchase.booking_id, "amount": "5.00", "reason": "goodwill"},
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["amount"], response.json()["status"]) == ("5.00", "succeeded")
    capture_at_paypal = paypal.order(purchase.order_id).capture
    assert capture_at_paypal is not None
    assert [r.amount for r in capture_at_paypal.refunds] == [Decimal("5.00")]
    assert capture_at_paypal.status == "PARTIALLY_REFUNDED"

    # PayPal's echo of our own refund records nothing more.
    await deliver_all(shop, paypal, CAPTURE_REFUNDED)
    payment = await payment_of(app, purchase.order_id)
    assert (payment.status, payment.refunded_amount) == (
        PaymentStatus.PARTIALLY_REFUNDED,
        Decimal("5.00"),
    )
    assert [r.amount for r in await refunds_of(app, purchase.booking_uuid)] == [Decimal("5.00")]


async def test_dashboard_refunds_and_disputes_are_recorded(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal
) -> None:
    purchase = await paid(app, shop, paypal)
    paypal.take_deliveries()

    await deliver(shop, paypal.refund_in_dashboard(purchase.order_id, Decimal("5.00")))
    await deliver(shop, paypal.refund_in_dashboard(purchase.order_id, Decimal("3.00")))
    payment = await payment_of(app, purchase.order_id)
    # Each event carries the total refunded so far: 5.00, then 8.00.
    assert (payment.status, payment.refunded_amount) == (
        PaymentStatus.PARTIALLY_REFUNDED,
        Decimal("8.00"),
    )
    refunds = await refunds_of(app, purchase.booking_uuid)
    assert sorted(r.amount for r in refunds) == [Decimal("3.00"), Decimal("5.00")]

    disputed = await deliver(shop, paypal.open_dispute(purchase.order_id))
    assert disputed.status_code == 200, disputed.text
    assert (
        await count(
            app,
            PaymentEvent,
            PaymentEvent.event_type == EventType.DISPUTE_CREATED,
            PaymentEvent.payment_id == payment.id,
        )
        == 1
    )
    assert len(paypal.take_deliveries(DISPUTE_CREATED)) == 1  # queued as well as returned


# ---------------------------------------------------------------------------------------------
# Reconciliation


async def reconcile(
    app: FastAPI, paypal: FakePayPal, backend: Backend, tmp_path: Path
) -> ReconcileReport:
    """One reconciliation run over every pending payment, as the job runs it."""
    settings = make_settings(backend, tmp_path / "reconcile", **paypal_settings(paypal))
    ctx = PaymentContext(settings, build_registry(settings))
    try:
        return await reconcile_pending(app.state.db, ctx, older_than=dt.timedelta(0))
    finally:
        await ctx.registry.aclose()


async def test_reconciliation_captures_an_approved_order_whose_webhook_was_lost(
    app: FastAPI, shop: httpx.AsyncClient, paypal: FakePayPal, backend: Backend, tmp_path: Path
) -> None:
    approved = await book_seats(app, shop)
    waiting = await book_seats(app, shop)
    paypal.approve(approved.order_id)
    paypal.take_deliveries()  # lost on the way

    report = await reconcile(app, paypal, backend, tmp_path)
    assert (report.checked, report.confirmed, report.still_pending) == (2, 1, 1)
    assert paypal.capture_count == 1
    assert await booking_status(app, approved.booking_uuid) == "confirmed"
    assert len(await tickets_of(shop, approved)) == 2
    assert await booking_status(app, waiting.booking_uuid) == "pending"

    again = await reconcile(app, paypal, backend, tmp_path)
    assert again.confirmed == 0
    assert paypal.capture_count == 1
