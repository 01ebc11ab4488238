"""The payment provider interface that `local`, Stripe and PayPal implement.

The service speaks only this interface, so a provider is a class with these methods:

- `create_intent` makes one payment attempt container per booking (a Stripe PaymentIntent,
  a PayPal order) and returns what the client needs (`client_secret`, or `approval_url` for
  redirect-based checkouts).
- `confirm` completes a payment server-side: the local provider's stand-in for a card form,
  PayPal's capture after the customer approved. Stripe confirms in the browser (Stripe.js), so
  the default raises `NotSupportedByProvider`.
- `retrieve` asks the provider for an intent's current state (reconciliation after a lost
  webhook).
- `refund` and `cancel` act on an intent; `refund` takes the currency because providers want
  minor units (Stripe) or a currency-tagged amount (PayPal).
- `aclose` releases the provider's HTTP client at shutdown.
- `verify_webhook` checks authenticity and parses the body into a `ProviderEvent` with one of
  the `EventType` names, whatever the provider calls it. It is async because PayPal verifies
  through an API call (or a downloaded certificate).

Amounts cross this interface as `Decimal` in major units; each provider converts with
`to_minor_units` / `from_minor_units` where its API wants integers.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from boxoffice.payments.exceptions import NotSupportedByProvider


class EventType:
    """Provider events the service applies (Stripe's names; other providers map onto them)."""

    SUCCEEDED = "payment_intent.succeeded"
    PAYMENT_FAILED = "payment_intent.payment_failed"  # an attempt failed; the intent lives on
    CANCELED = "payment_intent.canceled"
    REFUNDED = "charge.refunded"  # `amount` = total refunded so far at the provider
    DISPUTE_CREATED = "charge.dispute.created"
    # The customer approved a redirect-based payment (PayPal): the service captures it now.
    APPROVED = "checkout.order.approved"


class IntentStatus:
    PENDING = "pending"  # waiting for a payment method or the customer's approval
    APPROVED = "approved"  # approved by the customer, to be captured by us (PayPal)
    REQUIRES_ACTION = "requires_action"  # e.g. 3-D Secure in the customer's browser
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"


class ConfirmStatus:
    SUCCEEDED = "succeeded"
    DECLINED = "declined"  # this attempt failed; the intent may be confirmed again
    FAILED = "failed"  # final: this intent can never be paid (e.g. an expired PayPal order)
    REQUIRES_ACTION = "requires_action"


class RefundStatus:
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class IntentResult:
    provider_ref: str
    client_secret: str | None
    status: str  # IntentStatus
    approval_url: str | None = None  # where redirect-based providers (PayPal) send the customer


@dataclass(frozen=True)
class ConfirmResult:
    status: str  # ConfirmStatus
    failure_code: str | None = None
    message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == ConfirmStatus.SUCCEEDED


@dataclass(frozen=True)
class RefundResult:
    provider_ref: str
    status: str  # RefundStatus


@dataclass(frozen=True)
class ProviderEvent:
    event_id: str
    type: str  # an EventType name, or the provider's own for events the service only stores
    provider_ref: str | None  # the intent/order the event is about
    amount: Decimal | None = None
    failure_code: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)  # the provider's event as received


class PaymentProvider(ABC):
    name: ClassVar[str]

    @abstractmethod
    async def create_intent(
        self, amount: Decimal, currency: str, booking_id: uuid.UUID, idempotency_key: str
    ) -> IntentResult:
        """Create the provider-side payment; the same idempotency key returns the same one."""

    async def confirm(self, provider_ref: str, card: str | None) -> ConfirmResult:
        """Complete the payment server-side; a decline is a result, not an exception."""
        raise NotSupportedByProvider(
            f"The {self.name} provider confirms payments in the customer's browser."
        )

    @abstractmethod
    async def retrieve(self, provider_ref: str) -> IntentResult:
        """The intent's current state at the provider."""

    @abstractmethod
    async def refund(
        self, provider_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> RefundResult:
        """Refund part or all of a succeeded payment; retried keys never refund twice."""

    @abstractmethod
    async def cancel(self, provider_ref: str) -> None:
        """Cancel an unpaid intent (a no-op where the provider lets them lapse)."""

    @abstractmethod
    async def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> ProviderEvent:
        """Check the event's authenticity (raise `InvalidSignature`) and parse it."""

    async def aclose(self) -> None:
        """Release network clients (called once at app shutdown)."""
        return None


# ISO 4217 currencies whose minor unit is not a hundredth, as payment APIs count them.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
        "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    }
)  # fmt: skip
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def currency_exponent(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_minor_units(amount: Decimal, currency: str) -> int:
    """12.50 EUR -> 1250, 1000 JPY -> 1000; refuses amounts finer than the currency's unit."""
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is finer than the currency's smallest unit")
    return int(scaled)


def from_minor_units(units: int, currency: str) -> Decimal:
    """1250 EUR -> Decimal("12.50"), 1000 JPY -> Decimal("1000.00")."""
    exponent = currency_exponent(currency)
    return Decimal(units).scaleb(-exponent).quantize(Decimal(1).scaleb(-max(exponent, 2)))
