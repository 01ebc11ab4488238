"""Refunds of confirmed bookings: whole or by seat, with the cancellation policy.

Staff may refund at any time (and refund money alone, e.g. as goodwill); the owner may refund
until `BOXOFFICE_REFUND_CUTOFF_MINUTES` before the start, paying the cancellation fee inside
`BOXOFFICE_CANCELLATION_FEE_HOURS`. The booking row is locked first, so concurrent refunds of
one booking run one after another and money is never refunded twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import User
from boxoffice.booking import checkout
from boxoffice.booking.exceptions import BookingNotFound, RefundNotAllowed
from boxoffice.booking.holds import lock_seat_rows
from boxoffice.booking.models import Booking, BookingLine, BookingStatus
from boxoffice.booking.service import lines_of, lock_booking, notify_refund_done
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.errors import Forbidden, Unprocessable
from boxoffice.loyalty import service as loyalty
from boxoffice.payments import service as payments
from boxoffice.payments.models import Refund
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.tickets import service as tickets

CENT = Decimal("0.01")


@dataclass
class RefundResult:
    refund: Refund | None  # None: a booking that cost nothing was cancelled
    booking: Booking
    seat_labels: list[str]


def _fee(settings: Settings, amount: Decimal, start: dt.datetime, now: dt.datetime) -> Decimal:
    if start - now >= dt.timedelta(hours=settings.cancellation_fee_hours):
        return Decimal("0.00")
    fee = amount * Decimal(settings.cancellation_fee_percent) / 100
    return fee.quantize(CENT, rounding=ROUND_HALF_UP)


async def refund_booking(
    session: AsyncSession,
    settings: Settings,
    payment_ctx: payments.PaymentContext,
    user: User,
    *,
    is_staff: bool,
    booking_id: uuid.UUID,
    amount: Decimal | None = None,
    reason: str | None = None,
    seat_numbers: Sequence[str] | None = None,
    cancel_if_free: bool = False,
) -> RefundResult:
    """Refund the booking (whole, some seats, or an amount); with `cancel_if_free`, a booking
    that cost nothing is cancelled instead (its `refund` is then None)."""
    booking = await lock_booking(session, booking_id)
    if booking.user_id != user.id and not is_staff:
        raise BookingNotFound("No such booking.")
    if booking.status not in (BookingStatus.CONFIRMED, BookingStatus.USED):
        raise RefundNotAllowed(f"The booking is {booking.status}: nothing to refund.")
    if booking.status == BookingStatus.USED and not is_staff:
        raise RefundNotAllowed("The tickets were used; ask the box office.")
    showtime = await session.get(Showtime, booking.showtime_id)
    assert showtime is not None
    now = utcnow()
    if not is_staff:
        cutoff = showtime.start_time - dt.timedelta(minutes=settings.refund_cutoff_minutes)
        if now >= cutoff:
            raise RefundNotAllowed(
                "Refunds close shortly before the show; ask the box office.",
                refundsClosedAt=cutoff.isoformat(),
            )
        if amount is not None:
            raise Forbidden("Only staff may refund an amount; customers refund seats.")

    lines = await lines_of(session, booking.id)
    open_lines = [line for line in lines if not line.refunded]
    if seat_numbers is not None:
        by_label = {line.seat_label: line for line in lines}
        unknown = [label for label in seat_numbers if label not in by_label]
        if unknown:
            raise Unprocessable(
                f"Not seats of this booking: {', '.join(unknown)}.",
                code="unknown_seats",
                seats=unknown,
            )
        chosen = [by_label[label] for label in dict.fromkeys(seat_numbers)]
        done = [line.seat_label for line in chosen if line.refunded]
        if done:
            raise RefundNotAllowed(f"Already refunded: {', '.join(done)}.", seats=done)
    refundable = booking.final_amount - booking.refunded_amount
    # The whole booking (or all that is left of it): seats and snacks. A snack preorder has
    # no seat lines, so "whole" is told by what is asked, not by the lines left.
    whole = seat_numbers is None and (amount is None or amount == refundable)
    if whole and booking.final_amount == 0:
        # Discounts paid all of it: no money to return, only seats, snacks and discounts.
        if not cancel_if_free:
            raise RefundNotAllowed("Nothing was paid for this booking: cancel it instead.")
        return await _cancel_free_booking(session, booking, open_lines, now)
    if whole:
        chosen = open_lines
        if refundable <= 0:
            raise RefundNotAllowed("Everything was already refunded.")
    elif seat_numbers is None:
        chosen = []  # part of the money only (staff goodwill): the seats stay sold

    if whole:
        seats_value = refundable
    else:
        # Seats at what was paid for them: the discounts are split in proportion to price.
        listed = sum((line.unit_price for line in chosen), Decimal("0.00"))
        share = booking.final_amount / booking.total_amount if booking.total_amount else 0
        seats_value = (listed * share).quantize(CENT, rounding=ROUND_HALF_UP)
    fee = Decimal("0.00") if is_staff else _fee(settings, seats_value, showtime.start_time, now)
    # Seats are refunded at their price less the fee, but never more than is left of the
    # payment (a goodwill refund may already have returned part of it).
    to_refund = amount if amount is not None else min(seats_value - fee, refundable)
    if to_refund <= 0:
        raise Unprocessable(
            "Nothing to refund after the cancellation fee.", code="nothing_to_refund"
        )
    if to_refund > refundable:
        raise Unprocessable(
            f"At most {refundable:.2f} {booking.currency} can be refunded.",
            code="refund_exceeds_payment",
            status=409,
            refundable=f"{refundable:.2f}",
        )
    refund = await payments.refund(
        session,
        payment_ctx,
        booking,
        to_refund,
        reason=reason,
        seat_labels=[line.seat_label for line in chosen],
        requested_by=user.id,
        fee=fee,
    )
    await _release_seats(session, booking, chosen)
    booking.refunded_amount += to_refund
    await notify_refund_done(session, booking, to_refund, [line.seat_label for line in chosen])
    await loyalty.reverse_for_refund(session, booking.id, str(refund.id), to_refund)
    # A whole refund ends the booking even when a fee was kept; so does the last seat of a
    # booking without snacks (the snacks of one that has them are still to be had).
    every_seat_back = bool(lines) and all(line.refunded for line in lines)
    if (
        whole
        or (every_seat_back and not booking.snacks_amount)
        or booking.refunded_amount >= booking.final_amount
    ):
        booking.status = BookingStatus.REFUNDED
        await checkout.release_commerce(session, booking.id)
    return RefundResult(refund, booking, [line.seat_label for line in chosen])


async def _cancel_free_booking(
    session: AsyncSession, booking: Booking, open_lines: Sequence[BookingLine], now: dt.datetime
) -> RefundResult:
    await _release_seats(session, booking, open_lines)
    booking.status = BookingStatus.CANCELLED
    booking.cancelled_at = now
    await checkout.release_commerce(session, booking.id)
    return RefundResult(None, booking, [line.seat_label for line in open_lines])


async def _release_seats(
    session: AsyncSession, booking: Booking, chosen: Sequence[BookingLine]
) -> None:
    """Refunded seats are sellable again at once and their tickets no longer open the door."""
    if not chosen:
        return
    for line in chosen:
        line.refunded = True
    seat_ids = sorted(line.seat_id for line in chosen)
    await lock_seat_rows(session, [booking.showtime_id], seat_ids=seat_ids)
    await session.execute(
        update(ShowtimeSeat)
        .where(
            ShowtimeSeat.showtime_id == booking.showtime_id,
            ShowtimeSeat.seat_id.in_(seat_ids),
            ShowtimeSeat.booking_id == booking.id,
            ShowtimeSeat.status == SeatStatus.BOOKED,
        )
        .values(status=SeatStatus.AVAILABLE, booking_id=None, hold_id=None, held_until=None),
        execution_options={"synchronize_session": False},
    )
    await tickets.void_tickets(session, booking.id, [line.seat_label for line in chosen])
