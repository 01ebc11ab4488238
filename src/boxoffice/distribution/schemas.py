"""Distributor, contract and settlement request and response bodies."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, EmailStr, Field, PlainSerializer, field_validator

from boxoffice.core.schema import AwareDatetime, CamelModel, InputModel, Money, Pagination

Format = Literal["2D", "3D", "IMAX", "4DX"]


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ValueError("an ISO 4217 code such as EUR")
    return value.upper()


def _percent(value: Decimal) -> Decimal:
    if value != value.quantize(Decimal("0.01")):
        raise ValueError("a percentage has at most two decimal places")
    return value.quantize(Decimal("0.01"))


Currency = Annotated[str, AfterValidator(_currency)]
Percent = Annotated[
    Decimal,
    Field(ge=0, le=100, allow_inf_nan=False),
    AfterValidator(_percent),
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json"),
]
SignedAmount = Annotated[
    Decimal, PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json")
]
Terms = Annotated[list[Percent], Field(min_length=1, max_length=52)]
Weekday = Annotated[int, Field(ge=0, le=6)]


class DistributorCreate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    contact_email: EmailStr | None = None
    address: Annotated[str, Field(max_length=500)] = ""


class DistributorUpdate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    contact_email: EmailStr | None = None
    address: Annotated[str, Field(max_length=500)] | None = None

    @field_validator("name", "address")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("must not be null")
        return value


class DistributorOut(CamelModel):
    id: uuid.UUID
    name: str
    contact_email: str | None
    address: str
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ContractCreate(InputModel):
    distributor_id: uuid.UUID
    movie_id: uuid.UUID
    format: Format | None = None
    start_date: dt.date
    end_date: dt.date
    week_start_weekday: Weekday = 3  # Thursday, the usual release day
    terms: Terms
    house_allowance: Money | None = None
    minimum_guarantee: Money | None = None
    currency: Currency = "EUR"
    active: bool = True


class ContractUpdate(InputModel):
    """Every field may change; the dates are checked together with the stored ones."""

    distributor_id: uuid.UUID | None = None
    format: Format | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    week_start_weekday: Weekday | None = None
    terms: Terms | None = None
    house_allowance: Money | None = None
    minimum_guarantee: Money | None = None
    currency: Currency | None = None
    active: bool | None = None

    @field_validator(
        "distributor_id",
        "start_date",
        "end_date",
        "week_start_weekday",
        "terms",
        "currency",
        "active",
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value


class ContractOut(CamelModel):
    id: uuid.UUID
    distributor_id: uuid.UUID
    movie_id: uuid.UUID
    format: str | None
    start_date: dt.date
    end_date: dt.date
    week_start_weekday: int
    terms: list[Percent]
    house_allowance: Money | None
    minimum_guarantee: Money | None
    currency: str
    active: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime


class SettlementWeekOut(CamelModel):
    contract_id: uuid.UUID
    distributor_id: uuid.UUID
    distributor_name: str
    movie_title: str
    format: str | None
    week_number: int
    week_start: dt.date
    week_end: dt.date
    currency: str
    gross: SignedAmount
    net: SignedAmount
    share_percent: Percent
    distributor_share: SignedAmount
    guarantee_topup: SignedAmount
    amount_due: SignedAmount
    status: str  # open (not recorded yet) | due | paid
    entry_id: uuid.UUID | None
    paid_at: AwareDatetime | None


class SettlementList(CamelModel):
    items: list[SettlementWeekOut]
    total_due: SignedAmount
    total_paid: SignedAmount


class SettlementEntryOut(CamelModel):
    id: uuid.UUID
    contract_id: uuid.UUID
    week_start: dt.date
    amount_due: SignedAmount
    currency: str
    status: str
    created_at: AwareDatetime
    paid_at: AwareDatetime | None


class DistributorList(CamelModel):
    distributors: list[DistributorOut]
    pagination: Pagination


class ContractList(CamelModel):
    contracts: list[ContractOut]
    pagination: Pagination
