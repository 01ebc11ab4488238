"""Venue request and response bodies: cities, theaters, screens and seat layouts."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from boxoffice.core.schema import CamelModel, InputModel, Pagination

# PostgreSQL cannot store NUL, and no control character belongs in a name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


CityName = Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_one_line)]
TheaterName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_line)]
Location = Annotated[str, Field(max_length=300), AfterValidator(_one_line)]
ScreenName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_one_line)]
# Checked against the IANA database by the service (invalid_timezone).
TimezoneName = Annotated[str, Field(min_length=1, max_length=64, examples=["Europe/Berlin"])]
# Checked as an ISO 4217 shape by the service (invalid_currency); stored upper-case.
CurrencyCode = Annotated[str, Field(min_length=1, max_length=8, examples=["EUR"])]
Minutes = Annotated[int, Field(ge=0, le=120)]
# VAT contained in the theater's prices, as a fraction: 0.07 for 7%.
VatRate = Annotated[
    Decimal,
    Field(ge=0, lt=1, max_digits=5, decimal_places=4, allow_inf_nan=False, examples=["0.07"]),
]
ScreenNumber = Annotated[int, Field(ge=1, le=999)]


class HallType(StrEnum):
    STANDARD = "STANDARD"
    VIP = "VIP"
    IMAX = "IMAX"
    FOUR_DX = "4DX"


HallTypeIn = Annotated[HallType, BeforeValidator(_upper)]


class PatchModel(InputModel):
    """A partial update: omitted fields stay as they are; an explicit null is refused."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"may not be null: {', '.join(nulls)}")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


# ---------------------------------------------------------------------------------------------
# Layouts: the shapes only; the rules (limits, duplicates, classes) live in venues/layout.py so
# every caller, HTTP or not, gets the same `invalid_layout` answers.


class GridIn(InputModel):
    rows: int = Field(description="Number of rows, lettered A, B, ... Z, AA, AB, ...")
    seats_per_row: int = Field(description="Seats per row, numbered 1..n")
    aisles_after: list[int] = Field(
        default_factory=list, description="Seat numbers followed by an aisle gap"
    )
    classes: dict[str, str] = Field(
        default_factory=dict, description="Seat class per row label, e.g. {'A': 'premium'}"
    )


class SeatIn(InputModel):
    number: int
    seat_class: str = Field(
        default="standard",
        alias="class",
        description="standard | premium | vip | wheelchair | couple",
    )
    position: int | None = Field(
        default=None,
        description="Column index; a jump between neighbours is an aisle. "
        "Default: the previous seat's position + 1.",
    )
    active: bool = Field(default=True, description="false: the seat exists but is never sold")


class RowIn(InputModel):
    row: str = Field(description="1-3 letters or digits; the first row is nearest the screen")
    seats: list[SeatIn]


class LayoutIn(InputModel):
    """Either `grid` or `rows`."""

    grid: GridIn | None = None
    rows: list[RowIn] | None = None


# ---------------------------------------------------------------------------------------------
# Cities


class CityCreate(InputModel):
    name: CityName
    timezone: TimezoneName


class CityUpdate(PatchModel):
    name: CityName | None = None
    timezone: TimezoneName | None = None


class CityOut(CamelModel):
    id: uuid.UUID
    name: str
    timezone: str


class CityList(CamelModel):
    cities: list[CityOut]
    pagination: Pagination


# ---------------------------------------------------------------------------------------------
# Theaters


class TheaterCreate(InputModel):
    city_id: uuid.UUID
    name: TheaterName
    location: Location = ""
    timezone: TimezoneName | None = Field(default=None, description="Default: the city's")
    currency: CurrencyCode
    ads_minutes: Minutes = 15
    cleaning_minutes: Minutes = 15
    vat_rate: VatRate = Decimal("0")


class TheaterUpdate(PatchModel):
    city_id: uuid.UUID | None = None
    name: TheaterName | None = None
    location: Location | None = None
    timezone: TimezoneName | None = None
    currency: CurrencyCode | None = None
    ads_minutes: Minutes | None = None
    cleaning_minutes: Minutes | None = None
    vat_rate: VatRate | None = None


class TheaterOut(CamelModel):
    id: uuid.UUID
    name: str
    location: str
    city_id: uuid.UUID
    timezone: str
    currency: str
    ads_minutes: int
    cleaning_minutes: int
    vat_rate: Annotated[Decimal, AfterValidator(lambda rate: rate.quantize(Decimal("0.0001")))]
    total_screens: int


class ScreenSummary(CamelModel):
    id: uuid.UUID
    theater_id: uuid.UUID
    screen_number: int
    name: str
    hall_type: str
    capacity: int


class TheaterDetail(TheaterOut):
    screens: list[ScreenSummary]


class TheaterList(CamelModel):
    theaters: list[TheaterOut]
    pagination: Pagination


# ---------------------------------------------------------------------------------------------
# Screens


class ScreenCreate(InputModel):
    theater_id: uuid.UUID
    screen_number: ScreenNumber
    name: ScreenName
    hall_type: HallTypeIn
    layout: LayoutIn


class ScreenUpdate(PatchModel):
    screen_number: ScreenNumber | None = None
    name: ScreenName | None = None
    hall_type: HallTypeIn | None = None
    layout: LayoutIn | None = None


class SeatOut(CamelModel):
    seat_id: uuid.UUID
    label: str
    number: int
    seat_class: str = Field(alias="class")
    position: int
    active: bool


class RowOut(CamelModel):
    row: str
    seats: list[SeatOut]


class ScreenDetail(ScreenSummary):
    layout: dict[str, Any] = Field(
        description="The layout in its explicit-rows form (grids expanded); can be sent back"
    )
    rows: list[RowOut]


class ScreenList(CamelModel):
    screens: list[ScreenSummary]
    pagination: Pagination
