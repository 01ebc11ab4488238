"""Standalone snack preorders: snacks for a showtime, no seats.

A preorder is a booking without seat lines: pending until paid like any booking (same
deadline, same payment intent, same success path — `confirm_paid_booking` finds no seats to
sell and no tickets to issue), collected at the counter with its pickup code.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import User
from boxoffice.booking.checkout import contained_tax
from boxoffice.booking.exceptions import ShowtimeClosed
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.booking.service import insert_booking
from boxoffice.concessions import service as concessions
from boxoffice.concessions.exceptions import InvalidSnackOrder
from boxoffice.concessions.models import BookingSnack
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.payments import service as payments
from boxoffice.payments.models import Payment
from boxoffice.scheduling.exceptions import ShowtimeNotFound
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import Theater

ZERO = Decimal("0.00")
CENT = Decimal("0.01")


@dataclass
class Preorder:
    booking: Booking
    snacks: list[BookingSnack]
    payment: Payment


async def create_preorder(
    session: AsyncSession,
    settings: Settings,
    payment_ctx: payments.PaymentContext,
    user: User,
    showtime_id: uuid.UUID,
    items: Sequence[concessions.SnackOrder],
) -> Preorder:
    """A pending booking of snacks only, its stock taken, a pickup code and a payment intent.

    Snacks may be ordered until the showtime ends (they are eaten during it), not for a
    cancelled one: 409 `showtime_closed`.
    """
    if not items:
        raise InvalidSnackOrder("A preorder needs at least one snack.")
    now = utcnow()
    head = (
        await session.execute(
            select(Showtime, Theater.vat_rate)
            .join(Theater, Theater.id == Showtime.theater_id)
            .where(Showtime.id == showtime_id)
        )
    ).first()
    if head is None:
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    showtime, vat_rate = head
    if showtime.status != "scheduled":
        raise ShowtimeClosed("This showtime was cancelled.")
    if showtime.end_time <= now:
        raise ShowtimeClosed("This showtime is over.", closedAt=showtime.end_time.isoformat())

    booking = Booking(
        id=uuid.uuid4(),
        user_id=user.id,
        showtime_id=showtime.id,
        hold_id=None,
        status=BookingStatus.PENDING,
        currency=showtime.currency,
        tickets_amount=ZERO,
        snacks_amount=ZERO,
        total_amount=ZERO,
        discount_amount=ZERO,
        final_amount=ZERO,
        refunded_amount=ZERO,
        expires_at=now + dt.timedelta(seconds=settings.booking_ttl),
    )
    await insert_booking(session, booking)
    lines = await concessions.reserve(session, booking.id, items)
    amount = sum((line.total_price for line in lines), ZERO)
    booking.snacks_amount = amount
    booking.total_amount = amount
    booking.final_amount = amount
    booking.tax_amount = contained_tax(amount, vat_rate)
    await concessions.assign_pickup_code(session, booking)
    payment = await payments.create_intent(session, payment_ctx, booking, new_booking=True)
    return Preorder(booking, lines, payment)
