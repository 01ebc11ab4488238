"""Promo code request and response bodies."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from boxoffice.core.schema import (
    AwareDatetime,
    CamelModel,
    InputModel,
    Money,
    Pagination,
    refuse_nulls,
)
from boxoffice.promotions.models import PromoCode

# Checked on the input as typed (ASCII only): str.upper() maps a few non-ASCII letters to
# ASCII ones (the long s becomes "S"), which must not give a code a second spelling.
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{3,40}")


class PromoKindIn(StrEnum):
    PERCENTAGE = "percentage"
    FIXED = "fixed"


def normalize_code(value: str) -> str | None:
    """The stored form of a code (upper-case), or None if it cannot be one."""
    value = value.strip()
    return value.upper() if CODE_PATTERN.fullmatch(value) else None


def _code(value: str) -> str:
    code = normalize_code(value)
    if code is None:
        raise ValueError("3 to 40 characters: letters A-Z, digits, '_' and '-'")
    return code


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ValueError("an ISO 4217 code such as EUR")
    return value.upper()


def _one_line(value: str) -> str:
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("must not contain control characters")
    return value


def _unique_ids(values: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(values))


def _days(values: list[int]) -> list[int]:
    return sorted(set(values))


Code = Annotated[
    str,
    Field(min_length=3, max_length=40, examples=["SUMMER25"]),
    AfterValidator(_code),
]
Description = Annotated[str, Field(max_length=300), AfterValidator(_one_line)]
# NUMERIC(8,4) holds the value: at most 9999.99, two places like money.
Value = Annotated[
    Money,
    Field(gt=0, le=Decimal("9999.99"), description="Percent off (0-100] or the amount off"),
]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]
PositiveMoney = Annotated[Money, Field(gt=0)]
Limit = Annotated[int, Field(ge=1, le=100_000_000, strict=True)]
Ids = Annotated[
    list[uuid.UUID],
    Field(min_length=1, max_length=200, description="Null: no restriction"),
    AfterValidator(_unique_ids),
]
Weekday = Annotated[int, Field(ge=0, le=6, strict=True)]
Days = Annotated[
    list[Weekday],
    Field(
        min_length=1,
        max_length=7,
        description="Days of the showtime in the theater's timezone, 0 = Monday; null: any day",
    ),
    AfterValidator(_days),
]


def term_errors(
    *,
    kind: str,
    value: Decimal,
    currency: str | None,
    valid_from: dt.datetime | None,
    valid_until: dt.datetime | None,
) -> list[tuple[str, str]]:
    """The rules that tie fields together, as (field, message): checked on create here and on
    the merged state of a PATCH by the service."""
    errors: list[tuple[str, str]] = []
    if kind == PromoKindIn.PERCENTAGE and value > 100:
        errors.append(("value", "a percentage is at most 100"))
    if kind == PromoKindIn.FIXED and not currency:
        errors.append(("currency", "a fixed amount needs its currency"))
    if valid_from is not None and valid_until is not None and valid_from >= valid_until:
        errors.append(("validUntil", "must be after validFrom"))
    return errors


class PromoCodeCreate(InputModel):
    code: Code
    description: Description | None = None
    kind: PromoKindIn
    value: Value
    currency: Currency | None = Field(
        default=None,
        description="Required for fixed amounts; on a percentage code it limits the code to "
        "orders in this currency (and is the currency of minOrder and maxDiscount)",
    )
    min_order: Money | None = None
    max_discount: PositiveMoney | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    total_limit: Limit | None = None
    per_customer_limit: Limit | None = None
    movie_ids: Ids | None = None
    theater_ids: Ids | None = None
    days_of_week: Days | None = None
    first_booking_only: bool = False
    active: bool = True

    @model_validator(mode="after")
    def _terms(self) -> Self:
        errors = term_errors(
            kind=self.kind,
            value=self.value,
            currency=self.currency,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
        )
        if errors:
            raise ValueError("; ".join(f"{field}: {message}" for field, message in errors))
        return self


_REQUIRED_IN_PATCH = ("code", "kind", "value", "first_booking_only", "active")


class PromoCodeUpdate(InputModel):
    """Only the fields sent change; null clears an optional field (a restriction or limit)."""

    code: Code | None = None
    description: Description | None = None
    kind: PromoKindIn | None = None
    value: Value | None = None
    currency: Currency | None = None
    min_order: Money | None = None
    max_discount: PositiveMoney | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    total_limit: Limit | None = None
    per_customer_limit: Limit | None = None
    movie_ids: Ids | None = None
    theater_ids: Ids | None = None
    days_of_week: Days | None = None
    first_booking_only: bool | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        refuse_nulls(self, _REQUIRED_IN_PATCH)
        return self


class PromoCodeOut(CamelModel):
    id: uuid.UUID
    code: str
    description: str | None
    kind: PromoKindIn
    value: Money
    currency: str | None
    min_order: Money | None
    max_discount: Money | None
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    total_limit: int | None
    per_customer_limit: int | None
    uses: int = Field(description="Live uses: redemptions of bookings not expired or cancelled")
    remaining: int | None = Field(description="Uses left under totalLimit; null: unlimited")
    movie_ids: list[uuid.UUID] | None
    theater_ids: list[uuid.UUID] | None
    days_of_week: list[int] | None
    first_booking_only: bool
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, promo: PromoCode) -> PromoCodeOut:
        return cls(
            id=promo.id,
            code=promo.code,
            description=promo.description,
            kind=PromoKindIn(promo.kind),
            value=promo.value.quantize(Decimal("0.01")),
            currency=promo.currency,
            min_order=promo.min_order,
            max_discount=promo.max_discount,
            valid_from=promo.valid_from,
            valid_until=promo.valid_until,
            total_limit=promo.total_limit,
            per_customer_limit=promo.per_customer_limit,
            uses=promo.uses,
            remaining=(
                max(0, promo.total_limit - promo.uses) if promo.total_limit is not None else None
            ),
            movie_ids=[uuid.UUID(i) for i in promo.movie_ids] if promo.movie_ids else None,
            theater_ids=[uuid.UUID(i) for i in promo.theater_ids] if promo.theater_ids else None,
            days_of_week=list(promo.days_of_week) if promo.days_of_week else None,
            first_booking_only=promo.first_booking_only,
            active=promo.active,
            created_at=promo.created_at,
            updated_at=promo.updated_at,
        )


class PromoCodeList(CamelModel):
    promo_codes: list[PromoCodeOut]
    pagination: Pagination


class PromoCheckIn(InputModel):
    # Not validated as a code: a malformed one is simply not found (422 promo_invalid).
    code: Annotated[str, Field(min_length=1, max_length=64)]
    showtime_id: uuid.UUID
    subtotal: Money | None = Field(
        default=None,
        description="The order's amount before discounts; without it the minimum order is "
        "not checked and a percentage code's discount is null",
    )


class PromoCheckOut(CamelModel):
    valid: Literal[True] = True
    code: str
    description: str | None
    kind: PromoKindIn
    value: Money
    currency: str = Field(description="The showtime's currency")
    subtotal: Money | None
    discount: Money | None = Field(description="What the code takes off the subtotal")
    min_order: Money | None
    max_discount: Money | None
    valid_until: dt.datetime | None
