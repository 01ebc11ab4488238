"""Payment requests and answers."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from boxoffice.core.schema import CamelModel, InputModel, Money
from boxoffice.payments.providers.local import DECLINE_CARD, SUCCESS_CARD, normalize_card


def _card_number(value: str) -> str:
    number = normalize_card(value)
    if not re.fullmatch(r"[0-9]{12,19}", number):
        raise ValueError("a card number has 12 to 19 digits")
    return number


CardNumber = Annotated[str, Field(max_length=40), AfterValidator(_card_number)]
SeatLabel = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=12)
]
ProviderRef = Annotated[str, Field(min_length=1, max_length=100)]


class CreateIntentIn(InputModel):
    booking_id: uuid.UUID


class IntentOut(CamelModel):
    client_secret: str | None
    approval_url: str | None = Field(
        default=None, description="redirect-based providers (PayPal): send the customer here"
    )
    payment_intent_id: str
    provider: str
    amount: Money
    currency: str
    status: str


class LocalConfirmIn(InputModel):
    payment_intent_id: ProviderRef
    card: CardNumber | None = Field(
        default=None,
        description=f"{SUCCESS_CARD} (the default) succeeds, {DECLINE_CARD} is declined; "
        "any other number is declined as `invalid_card`.",
    )


class PayPalCaptureIn(InputModel):
    payment_intent_id: ProviderRef = Field(description="the PayPal order id from create-intent")


class ConfirmationOut(CamelModel):
    status: str  # the payment's status: "succeeded" (or later states when confirmed again)
    payment_intent_id: str
    booking_id: uuid.UUID
    booking_status: str


class WebhookOut(CamelModel):
    received: bool = True
    duplicate: bool


class RefundIn(InputModel):
    booking_id: uuid.UUID
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None
    amount: Money | None = Field(default=None, description="staff only; default: the seats' value")
    seat_numbers: Annotated[list[SeatLabel], Field(min_length=1, max_length=100)] | None = None


class RefundOut(CamelModel):
    refund_id: uuid.UUID
    booking_id: uuid.UUID
    amount: Money
    fee: Money
    currency: str
    status: str
    seat_numbers: list[str]
    booking_status: str
