"""Pricing rule and showtime price bodies.

Single fields are checked here (shapes, ranges, known hall types and seat classes); whether
the fields of a rule fit together (a multiplier's range, from <= to, ...) is checked by the
service on the whole rule, so a PATCH of one field is judged with the fields it keeps.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from boxoffice.core.schema import CamelModel, InputModel, Money, Pagination, refuse_nulls
from boxoffice.pricing.models import PricingRule
from boxoffice.pricing.service import HALL_TYPES, SEAT_CLASSES, ClassPrice, ShowtimePrices

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

Kind = Literal["multiplier", "surcharge", "fixed"]


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _hall_type(value: str) -> str:
    if value not in HALL_TYPES:
        raise ValueError(f"unknown hall type; one of {', '.join(sorted(HALL_TYPES))}")
    return value


def _seat_class(value: str) -> str:
    if value not in SEAT_CLASSES:
        raise ValueError(f"unknown seat class; one of {', '.join(sorted(SEAT_CLASSES))}")
    return value


def _hhmm(value: Any) -> Any:
    if isinstance(value, str):
        match = _HHMM.match(value)
        if match is None:
            raise ValueError("a time is HH:MM, 00:00 to 23:59")
        return dt.time(int(match[1]), int(match[2]))
    if isinstance(value, dt.time):
        return value
    raise ValueError("a time is a string HH:MM")


def _set_or_none(values: list[Any] | None) -> list[Any] | None:
    # Stored sorted and without duplicates; an empty list means "any", as null does.
    return sorted(set(values)) if values else None


def _ratio_text(value: Decimal) -> str:
    # 1.2500 -> "1.25", 1.1250 -> "1.125", 5.0000 -> "5.00": at least two places, no noise.
    cents = value.quantize(Decimal("0.01"))
    return f"{cents:.2f}" if cents == value else f"{value.normalize():f}"


RuleName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_one_line)]
KindIn = Annotated[Kind, BeforeValidator(_lower)]
# NUMERIC(8,4) in the table; what a kind allows within that is the service's check.
RuleValue = Annotated[
    Decimal,
    Field(
        ge=Decimal("-9999.9999"),
        le=Decimal("9999.9999"),
        decimal_places=4,
        allow_inf_nan=False,
        description="multiplier: the factor (0 < x <= 10); surcharge: an amount to add "
        "(negative: a discount); fixed: the price",
    ),
]
Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000, strict=True)]
HallTypeIn = Annotated[str, BeforeValidator(_upper), AfterValidator(_hall_type)]
SeatClassIn = Annotated[str, BeforeValidator(_lower), AfterValidator(_seat_class)]
Weekday = Annotated[int, Field(ge=0, le=6, strict=True)]
HallTypes = Annotated[
    list[HallTypeIn], Field(max_length=10, examples=[["IMAX", "4DX"]]), AfterValidator(_set_or_none)
]
SeatClasses = Annotated[
    list[SeatClassIn], Field(max_length=10, examples=[["vip"]]), AfterValidator(_set_or_none)
]
Weekdays = Annotated[
    list[Weekday],
    Field(max_length=7, description="0 = Monday .. 6 = Sunday", examples=[[5, 6]]),
    AfterValidator(_set_or_none),
]
LocalTime = Annotated[
    dt.time,
    BeforeValidator(_hhmm),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": _HHMM.pattern, "examples": ["22:00"]}),
]
LocalDate = Annotated[dt.date, Field(ge=dt.date(1970, 1, 1), le=dt.date(9000, 12, 31))]
Occupancy = Annotated[
    Decimal,
    Field(ge=0, le=1, decimal_places=4, allow_inf_nan=False, examples=["0.8"]),
]
RatioOut = Annotated[Decimal, PlainSerializer(_ratio_text, return_type=str, when_used="json")]


class _RuleFields(InputModel):
    hall_types: HallTypes | None = None
    seat_classes: SeatClasses | None = None
    city_id: uuid.UUID | None = None
    theater_id: uuid.UUID | None = None
    movie_id: uuid.UUID | None = None
    days_of_week: Weekdays | None = None
    time_from: LocalTime | None = Field(
        default=None, description="Local start time from (inclusive), HH:MM"
    )
    time_to: LocalTime | None = Field(
        default=None,
        description="Local start time until (exclusive), HH:MM; before timeFrom: wraps past "
        "midnight",
    )
    date_from: LocalDate | None = None
    date_to: LocalDate | None = Field(default=None, description="Inclusive")
    occupancy_min: Occupancy | None = Field(default=None, description="0..1, inclusive")
    occupancy_max: Occupancy | None = Field(default=None, description="0..1, inclusive")
    min_price: Money | None = Field(default=None, description="Floor of the resulting price")
    max_price: Money | None = Field(default=None, description="Ceiling of the resulting price")


class PricingRuleCreate(_RuleFields):
    """A price change for the seats matching every condition given (an omitted or null
    condition matches any). Days, times and dates are the theater's local ones."""

    name: RuleName
    kind: KindIn
    value: RuleValue
    priority: Priority = Field(default=0, description="Lower applies first")
    active: bool = True


_NOT_NULL = ("name", "kind", "value", "priority", "active")


class PricingRuleUpdate(_RuleFields):
    """A partial update: omitted fields stay; null clears a condition or a bound."""

    name: RuleName | None = None
    kind: KindIn | None = None
    value: RuleValue | None = None
    priority: Priority | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        refuse_nulls(self, _NOT_NULL)
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class PricingRuleOut(CamelModel):
    id: uuid.UUID
    name: str
    active: bool
    priority: int
    kind: str
    value: RatioOut
    hall_types: list[str] | None
    seat_classes: list[str] | None
    city_id: uuid.UUID | None
    theater_id: uuid.UUID | None
    movie_id: uuid.UUID | None
    days_of_week: list[int] | None
    time_from: LocalTime | None
    time_to: LocalTime | None
    date_from: dt.date | None
    date_to: dt.date | None
    occupancy_min: RatioOut | None
    occupancy_max: RatioOut | None
    min_price: Money | None
    max_price: Money | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, rule: PricingRule) -> PricingRuleOut:
        return cls.model_validate(rule)


class PricingRuleList(CamelModel):
    rules: list[PricingRuleOut]
    pagination: Pagination


class ClassPriceOut(CamelModel):
    seat_class: str
    default_price: Money = Field(description="Base price x hall factor x class factor")
    price: Money = Field(description="With the pricing rules applied: what a seat costs now")


class ShowtimePricesOut(CamelModel):
    showtime_id: uuid.UUID
    currency: str
    prices: list[ClassPriceOut]

    @classmethod
    def of(cls, prices: ShowtimePrices) -> ShowtimePricesOut:
        return cls(
            showtime_id=prices.showtime_id,
            currency=prices.currency,
            prices=[_class_price(name, price) for name, price in prices.by_class.items()],
        )


def _class_price(seat_class: str, price: ClassPrice) -> ClassPriceOut:
    return ClassPriceOut(seat_class=seat_class, default_price=price.default, price=price.price)
