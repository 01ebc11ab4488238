"""Stripe: PaymentIntents paid in the customer's browser (Stripe.js), signed webhooks, refunds.

Every call goes through one `stripe.StripeClient` on the SDK's async httpx client, with the
timeout and retry count from the settings. The SDK retries timeouts, connection errors, 409
and 5xx answers itself, sending the same `Idempotency-Key` each time, so a retry never creates
a second intent or refund; what still fails after that is a 502 `payment_provider_error`.

Webhooks are verified with the SDK's own `Stripe-Signature` check (HMAC-SHA256 over
`<t>.<body>` with the endpoint's `whsec_` secret, timestamps older than
`BOXOFFICE_STRIPE_WEBHOOK_TOLERANCE` refused) and mapped onto the service's `EventType`s.

The secret key never appears in an error message or a log line: Stripe's own messages are
passed on only for request errors, and scrubbed of the key even then.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NoReturn, TypeGuard

import stripe
import structlog

from boxoffice.config import Settings
from boxoffice.core import admission
from boxoffice.payments.exceptions import (
    InvalidSignature,
    InvalidWebhookPayload,
    ProviderError,
    ProviderNotConfigured,
    RefundFailed,
)
from boxoffice.payments.providers.base import (
    EventType,
    IntentResult,
    IntentStatus,
    PaymentProvider,
    ProviderEvent,
    RefundResult,
    RefundStatus,
    from_minor_units,
    to_minor_units,
)

log = structlog.get_logger(__name__)

STRIPE = "stripe"
SIGNATURE_HEADER = "Stripe-Signature"

# PaymentIntent.status -> IntentStatus. `requires_capture` only occurs with manual capture,
# which boxoffice never asks for; it is money not yet taken, so pending.
INTENT_STATUSES: dict[str, str] = {
    "requires_payment_method": IntentStatus.PENDING,
    "requires_confirmation": IntentStatus.PENDING,
    "processing": IntentStatus.PENDING,
    "requires_capture": IntentStatus.PENDING,
    "requires_action": IntentStatus.REQUIRES_ACTION,
    "succeeded": IntentStatus.SUCCEEDED,
    "canceled": IntentStatus.CANCELLED,
}
# Refund.status -> RefundStatus; a refund waiting for the customer's action is not done yet.
REFUND_STATUSES: dict[str, str] = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}
# Stripe's answer when an intent cannot make the requested move (e.g. cancel a paid one).
UNEXPECTED_STATE = "payment_intent_unexpected_state"

# What the payments table can hold of an event (see PaymentEvent and Payment).
MAX_EVENT_ID = 120
MAX_EVENT_TYPE = 64
MAX_PROVIDER_REF = 100


class _HTTPXClient(stripe.HTTPXClient):
    """The SDK's async httpx client, giving up the unit of work's admission while Stripe
    answers, and sending the form-encoded body as `content`: the SDK passes it as `data`,
    which httpx deprecates for raw text (a warning per request)."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if body:
            kwargs["content"] = body
        return [args, kwargs]

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        admission.leave()  # no place held while Stripe answers (core.admission)
        return await super().request_async(method, url, headers, post_data)


class StripeProvider(PaymentProvider):
    name = STRIPE

    def __init__(self, settings: Settings) -> None:
        if settings.stripe_secret_key is None:
            raise ProviderNotConfigured("BOXOFFICE_STRIPE_SECRET_KEY is not set.")
        self._secret_key = settings.stripe_secret_key.get_secret_value()
        self._webhook_secret = (
            settings.stripe_webhook_secret.get_secret_value()
            if settings.stripe_webhook_secret is not None
            else None
        )
        self._tolerance = settings.stripe_webhook_tolerance
        self._http = _HTTPXClient(timeout=settings.payment_provider_timeout)
        self._client = stripe.StripeClient(
            self._secret_key,
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=settings.payment_provider_retries,
        )

    # -----------------------------------------------------------------------------------------
    # Intents and refunds

    async def create_intent(
        self, amount: Decimal, currency: str, booking_id: uuid.UUID, idempotency_key: str
    ) -> IntentResult:
        try:
            intent = await self._client.v1.payment_intents.create_async(
                {
                    "amount": to_minor_units(amount, currency),
                    "currency": currency.lower(),
                    "metadata": {"booking_id": str(booking_id)},
                    "automatic_payment_methods": {"enabled": True},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            self._raise(exc, "create a payment intent")
        return self._intent_result(intent)

    async def retrieve(self, provider_ref: str) -> IntentResult:
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(provider_ref)
        except stripe.StripeError as exc:
            self._raise(exc, "read the payment intent")
        return self._intent_result(intent)

    async def refund(
        self, provider_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> RefundResult:
        try:
            refund = await self._client.v1.refunds.create_async(
                {"payment_intent": provider_ref, "amount": to_minor_units(amount, currency)},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            # e.g. `charge_already_refunded`, `amount_too_large`: Stripe refuses this refund.
            raise RefundFailed(
                f"Stripe refused the refund: {self._scrub(exc.user_message)}",
                providerCode=exc.code,
            ) from exc
        except stripe.StripeError as exc:
            self._raise(exc, "refund the payment")
        status = REFUND_STATUSES.get(refund.status or "", RefundStatus.PENDING)
        return RefundResult(provider_ref=refund.id, status=status)

    async def cancel(self, provider_ref: str) -> None:
        try:
            await self._client.v1.payment_intents.cancel_async(provider_ref)
            return
        except stripe.InvalidRequestError as exc:
            if exc.code != UNEXPECTED_STATE:
                self._raise(exc, "cancel the payment intent")
            status = self._status_in_error(exc) or (await self.retrieve(provider_ref)).status
        except stripe.StripeError as exc:
            self._raise(exc, "cancel the payment intent")
        if status == IntentStatus.SUCCEEDED:
            # The customer paid just before we gave up on the booking. Nothing to do here:
            # the success event finds the payment cancelled and the service refunds it.
            log.warning("stripe_cancel_after_success", payment_intent=provider_ref)
        elif status != IntentStatus.CANCELLED:
            raise ProviderError(
                f"Stripe cannot cancel the payment intent in its state {status!r}.",
                providerCode=UNEXPECTED_STATE,
            )

    async def aclose(self) -> None:
        await self._http.close_async()

    @staticmethod
    def _intent_result(intent: stripe.PaymentIntent) -> IntentResult:
        status = INTENT_STATUSES.get(intent.status)
        if status is None:
            log.warning("stripe_unknown_intent_status", status=intent.status, intent=intent.id)
            status = IntentStatus.PENDING
        return IntentResult(
            provider_ref=intent.id, client_secret=intent.client_secret, status=status
        )

    @staticmethod
    def _status_in_error(exc: stripe.StripeError) -> str | None:
        """The intent's state Stripe sends along with an `unexpected state` error."""
        intent = exc.error.payment_intent if exc.error is not None else None
        return INTENT_STATUSES.get(intent.status) if intent is not None else None

    def _scrub(self, message: str | None) -> str:
        return (message or "no message").replace(self._secret_key, "[secret key]")

    def _raise(self, exc: stripe.StripeError, action: str) -> NoReturn:
        """Turn an SDK error (after its retries) into a 502 that says what went wrong."""
        if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            # Its message quotes (part of) the key: not passed on.
            raise ProviderError(
                f"Stripe refused the API key when asked to {action}; check "
                "BOXOFFICE_STRIPE_SECRET_KEY.",
                providerStatus=exc.http_status,
            ) from None
        if isinstance(exc, stripe.APIConnectionError):
            detail = f"Stripe could not be reached to {action}."
        elif isinstance(exc, stripe.RateLimitError):
            detail = f"Stripe is rate limiting requests; could not {action}."
        elif isinstance(exc, stripe.InvalidRequestError | stripe.IdempotencyError):
            detail = f"Stripe refused to {action}: {self._scrub(exc.user_message)}"
        else:
            detail = f"Stripe failed to {action} (HTTP {exc.http_status})."
        log.warning(
            "stripe_request_failed",
            action=action,
            error=type(exc).__name__,
            http_status=exc.http_status,
            code=exc.code,
            request_id=exc.request_id,
        )
        raise ProviderError(detail, providerCode=exc.code, providerStatus=exc.http_status) from exc

    # -----------------------------------------------------------------------------------------
    # Webhooks

    async def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> ProviderEvent:
        if not self._webhook_secret:
            # 503: Stripe redelivers for days, so no event is lost until this is configured.
            raise ProviderNotConfigured("BOXOFFICE_STRIPE_WEBHOOK_SECRET is not set.")
        header = next(
            (value for key, value in headers.items() if key.lower() == SIGNATURE_HEADER.lower()),
            None,
        )
        if not header:
            raise InvalidSignature(f"The {SIGNATURE_HEADER} header is missing.")
        try:
            body = raw_body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidWebhookPayload("The body is not UTF-8.") from None
        try:
            stripe.WebhookSignature.verify_header(
                body, header, self._webhook_secret, self._tolerance
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature(exc.user_message) from None
        try:
            event = json.loads(body)
        except ValueError:
            raise InvalidWebhookPayload("The body is not JSON.") from None
        return _parse_event(event)


def _parse_event(event: Any) -> ProviderEvent:
    if not isinstance(event, dict):
        raise InvalidWebhookPayload("A Stripe event is a JSON object.")
    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not (
        _is_text(event_id, MAX_EVENT_ID)
        and _is_text(event_type, MAX_EVENT_TYPE)
        and isinstance(obj, dict)
    ):
        raise InvalidWebhookPayload('Expected {"id", "type", "data": {"object": {...}}}.')
    amount: Decimal | None = None
    failure_code: str | None = None
    if event_type == EventType.SUCCEEDED:
        amount = _money(obj, "amount_received")
    elif event_type == EventType.PAYMENT_FAILED:
        error = obj.get("last_payment_error")
        if isinstance(error, dict):
            code = error.get("decline_code") or error.get("code")
            failure_code = code if isinstance(code, str) else None
    elif event_type == EventType.REFUNDED:
        amount = _money(obj, "amount_refunded")  # the total refunded so far
    elif event_type == EventType.DISPUTE_CREATED:
        amount = _money(obj, "amount")
    return ProviderEvent(
        event_id=event_id,
        type=event_type,
        provider_ref=_intent_id(obj),
        amount=amount,
        failure_code=failure_code,
        data=event,
    )


def _is_text(value: Any, max_length: int) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= max_length


def _intent_id(obj: Mapping[str, Any]) -> str | None:
    """The PaymentIntent an event object is or belongs to (a charge, refund, dispute)."""
    ref = obj.get("id") if obj.get("object") == "payment_intent" else obj.get("payment_intent")
    if isinstance(ref, dict):  # expanded
        ref = ref.get("id")
    if ref is None:
        return None
    if not _is_text(ref, MAX_PROVIDER_REF):
        raise InvalidWebhookPayload("The event names no valid payment intent.")
    return ref


def _money(obj: Mapping[str, Any], key: str) -> Decimal:
    units = obj.get(key)
    currency = obj.get("currency")
    if not isinstance(units, int) or isinstance(units, bool) or units < 0:
        raise InvalidWebhookPayload(f"The event's {key} is not an amount in minor units.")
    if not (isinstance(currency, str) and len(currency) == 3):
        raise InvalidWebhookPayload("The event has no currency.")
    return from_minor_units(units, currency)
