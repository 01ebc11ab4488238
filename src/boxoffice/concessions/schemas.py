"""Snack menu, preorder and pickup bodies."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Self

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from boxoffice.booking.models import Booking
from boxoffice.booking.schemas import BookingOut
from boxoffice.catalog.schemas import Url, one_line
from boxoffice.concessions.models import BookingSnack, Snack
from boxoffice.core.schema import CamelModel, InputModel, Money, Pagination, refuse_nulls
from boxoffice.payments.models import Payment

MAX_QUANTITY = 20  # of one snack in one order
MAX_LINES = 20  # different snacks in one order

_CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9 _-]*$")


def _text(value: str) -> str:
    if _CONTROL_BUT_NEWLINES.search(value):
        raise ValueError("must not contain control characters")
    return value


def _category(value: str) -> str:
    value = value.strip().lower()
    if not _CATEGORY.match(value):
        raise ValueError("letters, digits, spaces, '-' and '_' only, e.g. 'popcorn'")
    if len(value) > 32:  # lower-casing may lengthen a string
        raise ValueError("a category has at most 32 characters")
    return value


def _pickup_code(value: object) -> object:
    # Read out or typed at the counter: case, spaces and dashes do not matter.
    return re.sub(r"[\s-]", "", value).upper() if isinstance(value, str) else value


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(one_line)]
Description = Annotated[str, Field(max_length=500), AfterValidator(_text)]
Category = Annotated[
    str, Field(min_length=1, max_length=32, examples=["popcorn"]), AfterValidator(_category)
]
# strict: a JSON true or "5" is not a count
Stock = Annotated[
    int,
    Field(
        ge=0,
        le=1_000_000,
        strict=True,
        description="Units left; null: not counted (never runs out)",
    ),
]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)]
PickupCode = Annotated[
    str,
    BeforeValidator(_pickup_code),
    Field(
        pattern=r"^[A-Z0-9]{4,16}$",
        examples=["K7QX4M2P"],
        description="Case, spaces and dashes do not matter",
    ),
]


class SnackCreate(InputModel):
    name: Name
    description: Description = ""
    category: Category
    price: Money
    image_url: Url | None = None
    available: bool = True
    stock: Stock | None = None


# Columns that cannot be empty: a PATCH may leave them out but not set them to null.
_REQUIRED_IN_PATCH = ("name", "category", "price", "available")


class SnackUpdate(InputModel):
    """A partial update: only the fields sent change; null clears `description`, `imageUrl`
    and `stock` (not counted any more)."""

    name: Name | None = None
    description: Description | None = None
    category: Category | None = None
    price: Money | None = None
    image_url: Url | None = None
    available: bool | None = None
    stock: Stock | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        refuse_nulls(self, _REQUIRED_IN_PATCH)
        return self


def can_order(snack: Snack) -> bool:
    return snack.available and (snack.stock is None or snack.stock > 0)


class SnackOut(CamelModel):
    """A snack on the public menu: `available` says whether it can be ordered now."""

    id: uuid.UUID
    name: str
    description: str
    price: Money
    category: str
    image_url: str | None
    available: bool

    @classmethod
    def of(cls, snack: Snack) -> SnackOut:
        return cls(
            id=snack.id,
            name=snack.name,
            description=snack.description,
            price=snack.price,
            category=snack.category,
            image_url=snack.image_url,
            available=can_order(snack),
        )


class SnackMenu(CamelModel):
    snacks: list[SnackOut]


class SnackAdminOut(CamelModel):
    """A snack as staff manage it: `available` is the flag they set, `orderable` what
    customers see (the flag and some stock left)."""

    id: uuid.UUID
    name: str
    description: str
    price: Money
    category: str
    image_url: str | None
    available: bool
    stock: int | None
    orderable: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, snack: Snack) -> SnackAdminOut:
        return cls(
            id=snack.id,
            name=snack.name,
            description=snack.description,
            price=snack.price,
            category=snack.category,
            image_url=snack.image_url,
            available=snack.available,
            stock=snack.stock,
            orderable=can_order(snack),
            created_at=snack.created_at,
            updated_at=snack.updated_at,
        )


class SnackAdminList(CamelModel):
    snacks: list[SnackAdminOut]
    pagination: Pagination


class SnackOrderIn(InputModel):
    snack_id: uuid.UUID
    quantity: Quantity


class PreorderIn(InputModel):
    showtime_id: uuid.UUID
    snacks: Annotated[list[SnackOrderIn], Field(min_length=1, max_length=MAX_LINES)]


class PreorderCreatedOut(CamelModel):
    booking: BookingOut
    payment_intent_id: str | None
    payment_client_secret: str | None
    pickup_code: str

    @classmethod
    def of(cls, booking: Booking, lines: Sequence[BookingSnack], payment: Payment) -> Self:
        assert booking.pickup_code is not None
        return cls(
            booking=BookingOut.of(booking, [], lines, booking.status),
            payment_intent_id=payment.provider_ref,
            payment_client_secret=payment.client_secret,
            pickup_code=booking.pickup_code,
        )


class PickupIn(InputModel):
    pickup_code: PickupCode


class PickupLine(CamelModel):
    name: str
    quantity: int


class PickupOut(CamelModel):
    booking_id: uuid.UUID
    reference: str
    showtime_id: uuid.UUID
    snacks: list[PickupLine]
    collected_at: dt.datetime
