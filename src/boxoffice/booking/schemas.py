"""Booking request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, StringConstraints

from boxoffice.core.schema import CamelModel, InputModel, Money, Pagination, SignedMoney

if TYPE_CHECKING:
    from boxoffice.booking.models import Booking, BookingLine
    from boxoffice.concessions.models import BookingSnack

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


class BookingSnackOut(CamelModel):
    snack_id: uuid.UUID
    name: str
    quantity: int
    unit_price: Money
    total_price: Money


class BreakdownOut(CamelModel):
    """How the final amount came about: total - (tier + promo + points) = final; tax is the
    VAT contained in final; ruleAdjustments is what the pricing rules added to the tickets."""

    tickets: Money
    rule_adjustments: SignedMoney  # negative when rules lowered the prices
    snacks: Money
    total: Money
    tier_discount: Money
    promo_discount: Money
    points_redeemed: int
    points_discount: Money
    discount: Money
    tax: Money
    final: Money


class BookingOut(CamelModel):
    id: uuid.UUID
    booking_reference: str
    user_id: uuid.UUID
    showtime_id: uuid.UUID
    seat_numbers: list[str]
    lines: list[BookingLineOut]
    snacks: list[BookingSnackOut]
    pickup_code: str | None = None
    breakdown: BreakdownOut
    total_amount: Money
    discount_amount: Money
    final_amount: Money
    refunded_amount: Money
    currency: str
    status: str
    expires_at: dt.datetime
    created_at: dt.datetime
    confirmed_at: dt.datetime | None

    @classmethod
    def of(
        cls,
        booking: Booking,
        lines: Sequence[BookingLine],
        snacks: Sequence[BookingSnack],
        status: str,
    ) -> BookingOut:
        """`status` is the effective one (a lapsed pending booking reads as expired)."""
        return cls(
            id=booking.id,
            booking_reference=booking.reference,
            user_id=booking.user_id,
            showtime_id=booking.showtime_id,
            seat_numbers=[line.seat_label for line in lines],
            lines=[BookingLineOut.model_validate(line) for line in lines],
            snacks=[BookingSnackOut.model_validate(line) for line in snacks],
            pickup_code=booking.pickup_code,
            breakdown=BreakdownOut(
                tickets=booking.tickets_amount,
                rule_adjustments=booking.adjustments_amount,
                snacks=booking.snacks_amount,
                total=booking.total_amount,
                tier_discount=booking.tier_discount,
                promo_discount=booking.promo_discount,
                points_redeemed=booking.points_redeemed,
                points_discount=booking.points_discount,
                discount=booking.discount_amount,
                tax=booking.tax_amount,
                final=booking.final_amount,
            ),
            total_amount=booking.total_amount,
            discount_amount=booking.discount_amount,
            final_amount=booking.final_amount,
            refunded_amount=booking.refunded_amount,
            currency=booking.currency,
            status=status,
            expires_at=booking.expires_at,
            created_at=booking.created_at,
            confirmed_at=booking.confirmed_at,
        )


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
