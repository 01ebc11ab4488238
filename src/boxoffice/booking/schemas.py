"""Booking request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from boxoffice.core.schema import CamelModel, InputModel, Money, Pagination

SeatLabel = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=12)
]
SeatLabels = Annotated[list[SeatLabel], Field(min_length=1, max_length=100)]


class LockSeatsIn(InputModel):
    showtime_id: uuid.UUID
    seat_numbers: SeatLabels


class LockBestIn(InputModel):
    showtime_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=100)]
    seat_class: (
        Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=16)]
        | None
    ) = None


class LockTokenIn(InputModel):
    lock_token: uuid.UUID


class HoldOut(CamelModel):
    lock_token: uuid.UUID
    showtime_id: uuid.UUID
    expires_at: dt.datetime
    locked_seats: list[str]
    extensions_left: int


class ExtendOut(CamelModel):
    lock_token: uuid.UUID
    expires_at: dt.datetime
    extensions_left: int


class SnackIn(InputModel):
    snack_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=50)]


class BookingIn(InputModel):
    showtime_id: uuid.UUID
    seat_numbers: SeatLabels
    lock_token: uuid.UUID
    snacks: Annotated[list[SnackIn], Field(max_length=50)] = Field(default_factory=list)
    promo_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = (
        None
    )
    points_to_redeem: Annotated[int, Field(ge=0, le=10_000_000)] | None = None


class BookingLineOut(CamelModel):
    seat_label: str
    seat_class: str
    unit_price: Money
    refunded: bool


class BookingOut(CamelModel):
    id: uuid.UUID
    booking_reference: str
    user_id: uuid.UUID
    showtime_id: uuid.UUID
    seat_numbers: list[str]
    lines: list[BookingLineOut]
    snacks: list[dict[str, Any]]
    total_amount: Money
    discount_amount: Money
    final_amount: Money
    refunded_amount: Money
    currency: str
    status: str
    expires_at: dt.datetime
    created_at: dt.datetime
    confirmed_at: dt.datetime | None


class BookingCreatedOut(CamelModel):
    booking: BookingOut
    payment_client_secret: str | None
    payment_intent_id: str | None


class BookingPage(CamelModel):
    bookings: list[BookingOut]
    pagination: Pagination


class ShowtimeBrief(CamelModel):
    id: uuid.UUID
    start_time: dt.datetime
    end_time: dt.datetime
    hall_type: str
    format: str
    language: str | None
    subtitles: str | None


class MovieBrief(CamelModel):
    id: uuid.UUID
    title: str
    duration: int
    rating: str
    poster_url: str | None


class TheaterBrief(CamelModel):
    id: uuid.UUID
    name: str
    location: str
    timezone: str


class ScreenBrief(CamelModel):
    id: uuid.UUID
    name: str
    screen_number: int
    hall_type: str


class BookingDetailOut(CamelModel):
    booking: BookingOut
    showtime: ShowtimeBrief
    movie: MovieBrief
    theater: TheaterBrief
    screen: ScreenBrief


class CancelIn(InputModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class RefundIn(InputModel):
    booking_id: uuid.UUID
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    amount: Money | None = None
    seat_numbers: Annotated[list[SeatLabel], Field(min_length=1, max_length=100)] | None = None


class RefundOut(CamelModel):
    refund_id: uuid.UUID
    booking_id: uuid.UUID
    amount: Money
    fee: Money
    currency: str
    status: str
    booking_status: str
    seat_numbers: list[str]


ZERO = Decimal("0.00")
