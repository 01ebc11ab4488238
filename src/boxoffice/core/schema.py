"""Pydantic bases: camelCase on the wire, snake_case in Python; money as decimal strings."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from boxoffice.core.errors import Unprocessable


class CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        from_attributes=True,
    )


class InputModel(CamelModel):
    """Request bodies: unknown fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _two_places(value: Decimal) -> Decimal:
    if value != value.quantize(Decimal("0.01")):
        raise ValueError("money has at most two decimal places")
    return value.quantize(Decimal("0.01"))


# Money on the wire: "12.50" out; "12.50" or 12.5 in, at most two places, never negative.
Money = Annotated[
    Decimal,
    Field(ge=0, le=Decimal("9999999999.99"), allow_inf_nan=False),
    AfterValidator(_two_places),
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json"),
]

# An amount that may be negative (a price change, an adjustment): "-2.50".
SignedMoney = Annotated[
    Decimal,
    Field(ge=Decimal("-9999999999.99"), le=Decimal("9999999999.99"), allow_inf_nan=False),
    AfterValidator(_two_places),
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json"),
]


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError("datetime needs a UTC offset, e.g. 2026-11-21T19:30:00+00:00")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00: a 422, not a 500
        raise ValueError("datetime out of range") from None


AwareDatetime = Annotated[dt.datetime, AfterValidator(_aware)]


class Pagination(CamelModel):
    page: int
    limit: int
    total: int
    total_pages: int


class PageParams:
    """`?page=1&limit=20` (limit at most 100), read by the `Page` dependency."""

    def __init__(self, page: int = 1, limit: int = 20) -> None:
        self.page = page
        self.limit = limit

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def pagination(self, total: int) -> Pagination:
        return Pagination(
            page=self.page,
            limit=self.limit,
            total=total,
            total_pages=math.ceil(total / self.limit) if total else 0,
        )


async def _page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> PageParams:
    # A function, and async: FastAPI builds a class dependency in a worker thread, which cost
    # about 0.1 ms a request.
    return PageParams(page, limit)


# `page: Page` in a list endpoint.
Page = Annotated[PageParams, Depends(_page_params)]


def refuse_nulls(patch: BaseModel, required: Iterable[str]) -> None:
    """In a partial update, the `required` columns may be left out but not set to null."""
    nulled = [n for n in required if n in patch.model_fields_set and getattr(patch, n) is None]
    if nulled:
        raise ValueError(f"may not be null: {', '.join(nulled)}")


def reject_empty_patch(values: dict[str, Any]) -> dict[str, Any]:
    if not values:
        raise Unprocessable("Nothing to change: the body names no field.", code="empty_update")
    return values
