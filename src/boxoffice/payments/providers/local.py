"""The embedded `local` provider: test cards and Stripe-style signed webhooks, no network.

It keeps no state of its own (the payments table is its ledger): intents are random ids,
`confirm` only judges the card number, refunds and cancellations always succeed.

Webhooks are JSON events `{"id", "type", "data": {"paymentIntentId", "amount"?,
"failureCode"?}}` (`amount` a decimal string; for `charge.refunded` the total refunded so far,
as Stripe's `charge.amount_refunded`), signed like Stripe's:
`Boxoffice-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, several
`v1` entries allowed, timestamps older or newer than five minutes refused. The secret is
derived from the app's signing key with its own label, so it is neither the JWT key nor
anything else signed with that key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Mapping
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from boxoffice.core.clock import utcnow
from boxoffice.core.schema import Money
from boxoffice.payments.exceptions import (
    InvalidSignature,
    InvalidWebhookPayload,
    NotSupportedByProvider,
)
from boxoffice.payments.providers.base import (
    ConfirmResult,
    ConfirmStatus,
    IntentResult,
    IntentStatus,
    PaymentProvider,
    ProviderEvent,
    RefundResult,
    RefundStatus,
)

LOCAL = "local"
SUCCESS_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"
SIGNATURE_HEADER = "Boxoffice-Signature"
TOLERANCE_SECONDS = 300
_SECRET_LABEL = b"boxoffice/payments/local/webhook-secret/v1"


def webhook_secret(signing_key: str) -> str:
    return (
        "whsec_local_" + hmac.new(signing_key.encode(), _SECRET_LABEL, hashlib.sha256).hexdigest()
    )


def _signature(secret: str, timestamp: int, raw_body: bytes) -> str:
    return hmac.new(
        secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256
    ).hexdigest()


def signature_header(secret: str, raw_body: bytes, timestamp: int | None = None) -> str:
    """The `Boxoffice-Signature` value for a body (for tools and tests that send events)."""
    t = int(utcnow().timestamp()) if timestamp is None else timestamp
    return f"t={t},v1={_signature(secret, t, raw_body)}"


def normalize_card(card: str) -> str:
    return re.sub(r"[\s-]", "", card)


class _EventData(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    payment_intent_id: str | None = Field(
        default=None, alias="paymentIntentId", min_length=1, max_length=100
    )
    amount: Money | None = None
    failure_code: str | None = Field(default=None, alias="failureCode", max_length=64)


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=120)
    type: str = Field(min_length=1, max_length=64)
    data: _EventData


class LocalProvider(PaymentProvider):
    name = LOCAL

    def __init__(self, signing_key: str, *, tolerance_seconds: int = TOLERANCE_SECONDS) -> None:
        self.webhook_secret = webhook_secret(signing_key)
        self.tolerance_seconds = tolerance_seconds

    async def create_intent(
        self, amount: Decimal, currency: str, booking_id: uuid.UUID, idempotency_key: str
    ) -> IntentResult:
        ref = f"pi_local_{secrets.token_hex(12)}"
        return IntentResult(
            provider_ref=ref,
            client_secret=f"{ref}_secret_{secrets.token_hex(12)}",
            status=IntentStatus.PENDING,
        )

    async def confirm(self, provider_ref: str, card: str | None) -> ConfirmResult:
        number = SUCCESS_CARD if card is None else normalize_card(card)
        if number == SUCCESS_CARD:
            return ConfirmResult(ConfirmStatus.SUCCEEDED)
        if number == DECLINE_CARD:
            return ConfirmResult(ConfirmStatus.DECLINED, "card_declined", "The card was declined.")
        return ConfirmResult(
            ConfirmStatus.DECLINED,
            "invalid_card",
            f"Not a test card of the local provider: use {SUCCESS_CARD} (succeeds) "
            f"or {DECLINE_CARD} (declined).",
        )

    async def retrieve(self, provider_ref: str) -> IntentResult:
        raise NotSupportedByProvider(
            "The local provider keeps no state besides the payments table."
        )

    async def refund(
        self, provider_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> RefundResult:
        return RefundResult(f"re_local_{secrets.token_hex(12)}", RefundStatus.SUCCEEDED)

    async def cancel(self, provider_ref: str) -> None:
        return None

    def signature_header(self, raw_body: bytes, timestamp: int | None = None) -> str:
        return signature_header(self.webhook_secret, raw_body, timestamp)

    async def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> ProviderEvent:
        self._verify_signature(headers, raw_body)
        try:
            event = _Event.model_validate_json(raw_body)
        except ValidationError:
            raise InvalidWebhookPayload(
                'Expected {"id", "type", "data": {"paymentIntentId", "amount"?}}.'
            ) from None
        return ProviderEvent(
            event_id=event.id,
            type=event.type,
            provider_ref=event.data.payment_intent_id,
            amount=event.data.amount,
            failure_code=event.data.failure_code,
            data=event.model_dump(mode="json", by_alias=True),
        )

    def _verify_signature(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        header = next(
            (value for key, value in headers.items() if key.lower() == SIGNATURE_HEADER.lower()),
            None,
        )
        if not header:
            raise InvalidSignature(f"The {SIGNATURE_HEADER} header is missing.")
        timestamp: int | None = None
        signatures: list[str] = []
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key == "t" and value.isdigit() and len(value) <= 12:
                timestamp = int(value)
            elif key == "v1" and value:
                signatures.append(value)
        if timestamp is None or not signatures:
            raise InvalidSignature(f"The {SIGNATURE_HEADER} header is malformed.")
        if abs(int(utcnow().timestamp()) - timestamp) > self.tolerance_seconds:
            raise InvalidSignature("The signature timestamp is outside the tolerance.")
        expected = _signature(self.webhook_secret, timestamp, raw_body)
        if not any(
            hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in signatures
        ):
            raise InvalidSignature("The signature does not match the body.")
