"""The money of a new booking: seat prices from the pricing rules, snacks, discounts, tax.

Order of the parts (each rounded once, to cents, where it is computed):

    tickets   = sum of the seats' rule prices (adjustments = tickets - default prices)
    snacks    = sum of the snack lines
    total     = tickets + snacks
    tier      = tickets x the customer's tier rate (silver 5%, gold 10%)
    promo     = the promo code's discount on total - tier
    points    = points redeemed, worth 0.01 each, at most half of total - tier - promo
    discount  = tier + promo + points
    final     = total - discount                  (so total - discount = final, always)
    tax       = the VAT contained in final: final x rate / (1 + rate)

The promo use, the points and the snack stock are taken in the booking's transaction, so a
failed booking takes none of them; they come back when the booking expires, is cancelled or
is refunded in full (`release_commerce`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.booking.exceptions import PointsExceedCap
from boxoffice.booking.models import Booking
from boxoffice.concessions import service as concessions
from boxoffice.concessions.models import BookingSnack
from boxoffice.loyalty import service as loyalty
from boxoffice.pricing import service as pricing
from boxoffice.promotions import service as promotions
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import Theater

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
POINT_VALUE = Decimal("0.01")
MAX_POINTS_SHARE = Decimal("0.5")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def contained_tax(gross: Decimal, rate: Decimal) -> Decimal:
    """The VAT contained in a gross amount (prices include VAT)."""
    return cents(gross * rate / (1 + rate)) if rate > 0 else ZERO


@dataclass(frozen=True)
class SeatToPrice:
    seat_id: uuid.UUID
    label: str
    seat_class: str


@dataclass(frozen=True)
class PricedSeats:
    unit_prices: dict[uuid.UUID, Decimal]
    tickets: Decimal
    adjustments: Decimal  # what the pricing rules added (negative: took off)


async def price_seats(
    session: AsyncSession, showtime_id: uuid.UUID, seats: Sequence[SeatToPrice], now: dt.datetime
) -> PricedSeats:
    prices = await pricing.showtime_prices(session, showtime_id, now=now)
    unit = {s.seat_id: prices.by_class[s.seat_class].price for s in seats}
    tickets = sum(unit.values(), ZERO)
    defaults = sum((cents(prices.by_class[s.seat_class].default) for s in seats), ZERO)
    return PricedSeats(unit, tickets, tickets - defaults)


async def apply_extras(
    session: AsyncSession,
    booking: Booking,
    *,
    showtime: Showtime,
    theater: Theater,
    tickets: Decimal,
    adjustments: Decimal,
    snacks: Sequence[concessions.SnackOrder],
    promo_code: str | None,
    points: int,
    now: dt.datetime,
    loyalty_account: loyalty.AccountView | None = None,
) -> list[BookingSnack]:
    """Take the snacks, the promo use and the points for `booking` (already inserted unless
    there are none of them) and write its totals. `loyalty_account`: the customer's, when
    the caller read it along."""
    snack_lines = await concessions.reserve(session, booking.id, snacks) if snacks else []
    snacks_amount = sum((line.total_price for line in snack_lines), ZERO)
    total = tickets + snacks_amount

    tier = (loyalty_account or await loyalty.account(session, booking.user_id)).tier
    tier_discount = cents(tickets * loyalty.tier_discount_rate(tier))

    promo_discount = ZERO
    if promo_code:
        local = showtime.start_time.astimezone(ZoneInfo(theater.timezone))
        promo_discount = await promotions.redeem(
            session,
            promo_code,
            booking.id,
            promotions.PromoContext(
                user_id=booking.user_id,
                subtotal=total - tier_discount,
                currency=booking.currency,
                movie_id=showtime.movie_id,
                theater_id=theater.id,
                local_weekday=local.weekday(),
                first_booking=await promotions.is_first_booking(session, booking.user_id),
                now=now,
            ),
        )

    points_discount = ZERO
    if points:
        # Rounded down: points never pay more than half, not even by a cent.
        cap = (total - tier_discount - promo_discount) * MAX_POINTS_SHARE
        max_points = int(cap / POINT_VALUE)
        if points > max_points:
            raise PointsExceedCap(
                f"Points may pay at most half of this order ({max_points} points).",
                maxPoints=max_points,
            )
        points_discount = await loyalty.redeem(session, booking.user_id, booking.id, points)

    discount = tier_discount + promo_discount + points_discount
    booking.tickets_amount = tickets
    booking.adjustments_amount = adjustments
    booking.snacks_amount = snacks_amount
    booking.total_amount = total
    booking.tier_discount = tier_discount
    booking.promo_discount = promo_discount
    booking.points_redeemed = points
    booking.points_discount = points_discount
    booking.discount_amount = discount
    booking.final_amount = total - discount
    booking.tax_amount = contained_tax(booking.final_amount, theater.vat_rate)
    if snack_lines:
        await concessions.assign_pickup_code(session, booking)
    return sorted(snack_lines, key=lambda line: line.name)  # as reading a booking lists them


async def release_commerce(session: AsyncSession, booking_id: uuid.UUID) -> None:
    """The booking expired, was cancelled or was refunded in full: the promo use, the snack
    stock and the redeemed points come back, each once only."""
    await promotions.release(session, booking_id)
    await concessions.restock(session, booking_id)
    await loyalty.restore(session, booking_id)
