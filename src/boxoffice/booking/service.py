"""Bookings: from a live hold to a priced, pending booking; confirmation on payment; expiry.

The booking use case orchestrates pricing, payments and tickets. Payments report success back
through `confirm_paid_booking`, registered as the payments success handler at start-up.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import (
    Executable,
    Text,
    Uuid,
    and_,
    bindparam,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from boxoffice.accounts.models import User
from boxoffice.accounts.service import CALLER, check_may_book, signed_in, signed_in_user
from boxoffice.audit.models import AuditEntry
from boxoffice.booking import checkout
from boxoffice.booking.exceptions import (
    BookingNotCancellable,
    BookingNotFound,
    HoldAlreadyBooked,
    HoldExpired,
    HoldMismatch,
    HoldNotFound,
)
from boxoffice.booking.holds import SeatRowsUpdate, check_open_for_sale, lock_seat_rows
from boxoffice.booking.models import Booking, BookingLine, BookingStatus, Hold, HoldStatus
from boxoffice.booking.schemas import BookingIn
from boxoffice.catalog.models import Movie
from boxoffice.concessions import service as concessions
from boxoffice.concessions.models import BookingSnack
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.db import RowInsert, RowLoad, adopt, constant
from boxoffice.core.errors import retry_on_duplicate
from boxoffice.core.pgdriver import SessionStatement
from boxoffice.core.security import AccessClaims
from boxoffice.documents import service as documents
from boxoffice.loyalty import service as loyalty
from boxoffice.notifications import service as notifications
from boxoffice.payments import service as payments
from boxoffice.payments.models import Payment
from boxoffice.scheduling.exceptions import ShowtimeNotFound
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.scheduling.service import seat_is_free
from boxoffice.tickets import service as tickets
from boxoffice.tickets.models import Ticket
from boxoffice.venues.models import Screen, Seat, Theater

log = structlog.get_logger(__name__)

# The hold's live seats wait for the payment now, and point at the booking. They are picked
# among the held seats (the status a constant in the SQL: see core.db.constant), which
# PostgreSQL finds by the showtime's status index instead of reading all its seat rows; of
# those, the ones whose hold has not run out are extended.
_EXTEND_HOLD = SeatRowsUpdate(
    and_(
        ShowtimeSeat.hold_id == bindparam("the_hold"),
        ShowtimeSeat.status == constant(SeatStatus.HELD),
    ),
    ShowtimeSeat.held_until > bindparam("now"),
    {
        "held_until": bindparam("until", type_=ShowtimeSeat.held_until.type),
        "booking_id": bindparam("the_booking", type_=ShowtimeSeat.booking_id.type),
    },
)
# The booking's seats are sold: those it holds, or free ones (a late payment after expiry).
_SELLABLE = or_(
    and_(
        ShowtimeSeat.booking_id == bindparam("the_booking"),
        ShowtimeSeat.status == SeatStatus.HELD,
    ),
    seat_is_free(bindparam("now", type_=ShowtimeSeat.held_until.type)),
)
_SOLD = {
    "status": SeatStatus.BOOKED,
    "booking_id": bindparam("the_booking", type_=ShowtimeSeat.booking_id.type),
    "hold_id": None,
    "held_until": None,
}
_SELL = SeatRowsUpdate(
    ShowtimeSeat.seat_id.in_(bindparam("the_seats", expanding=True)),
    _SELLABLE,
    _SOLD,
    all_or_none=True,
)
# The same, the seats named by the booking's lines (PostgreSQL's confirmation statement).
_SELL_LINES = SeatRowsUpdate(
    ShowtimeSeat.seat_id.in_(
        select(BookingLine.seat_id).where(BookingLine.booking_id == bindparam("the_booking"))
    ),
    _SELLABLE,
    _SOLD,
    all_or_none=True,
)


def _confirm_at_once() -> Executable:
    """PostgreSQL: a paid booking's confirmation in one statement, all or nothing: its seats
    sold (`_SELL_LINES`: locked in seat order, none unless all can be), the booking confirmed
    and its tickets issued. Four round trips on the other backends (its lines, the seats, the
    booking, the tickets). Answers whether it confirmed, with the booking's row of
    `documents.DUE_OF_BOOKING` (the invoice it is due) and its owner's of
    `notifications.RECIPIENT` for the confirmation to go on with."""
    booking_id = bindparam("the_booking", type_=Booking.id.type)
    now = bindparam("now", type_=ShowtimeSeat.held_until.type)
    lines = (
        select(BookingLine.seat_id, BookingLine.seat_label, BookingLine.refunded)
        .where(BookingLine.booking_id == booking_id)
        .cte("lines")
    )
    line_count = select(func.count()).select_from(lines).scalar_subquery()
    sold = _SELL_LINES.postgresql_cte("sold", expected=line_count)
    confirmed = (
        update(Booking)
        .where(
            Booking.id == booking_id,
            select(func.count()).select_from(sold).scalar_subquery() == line_count,
        )
        .values(status=BookingStatus.CONFIRMED, confirmed_at=now, updated_at=now)
        .returning(Booking.id)
        .cte("confirmed")
    )
    issued = (
        tickets.issue_tickets_from(
            lines,
            booking_id=booking_id,
            showtime_id=bindparam("the_showtime", type_=ShowtimeSeat.showtime_id.type),
            issued_at=now,
            when=exists(select(confirmed.c.id)),
        )
        .returning(Ticket.id)
        .cte("issued")
    )
    # Read along for what follows: the invoice it is due (documents.DUE_OF_BOOKING: one row,
    # the booking's) and whom to tell (notifications.RECIPIENT: none if the account is gone).
    due = documents.DUE_OF_BOOKING.subquery("due")
    to = notifications.RECIPIENT.subquery("recipient")
    return select(
        exists(select(confirmed.c.id)).label("confirmed"),
        select(func.count()).select_from(issued).scalar_subquery().label("tickets"),
        due,
        to,
    ).select_from(due.outerjoin(to, true()))


_CONFIRM_AT_ONCE = SessionStatement(_confirm_at_once())


def _hold_to_booking(*rows: RowInsert) -> Executable:
    """PostgreSQL: the booking's lines written, its hold marked converted and the hold's seats
    extended to the payment deadline (`_EXTEND_HOLD`), in one statement instead of three
    round trips and the ORM's flushes of the lines and the hold; with `rows`, the booking's
    own row, its payment and the payment's audit entry too. Answers how many seats it
    extended (the caller refuses the booking, and so undoes the rest, unless all). The
    foreign keys between the rows hold: PostgreSQL checks them when the statement ends."""
    lines = (
        func.unnest(
            bindparam("line_ids", type_=ARRAY(Uuid())),
            bindparam("seat_ids", type_=ARRAY(Uuid())),
            bindparam("labels", type_=ARRAY(Text())),
            bindparam("classes", type_=ARRAY(Text())),
            bindparam("prices", type_=ARRAY(BookingLine.unit_price.type)),
        )
        .table_valued("id", "seat_id", "seat_label", "seat_class", "unit_price")
        .render_derived()
    )
    written = (
        insert(BookingLine)
        .from_select(
            ("id", "booking_id", "seat_id", "seat_label", "seat_class", "unit_price", "refunded"),
            select(
                lines.c.id,
                bindparam("the_booking", type_=BookingLine.booking_id.type),
                lines.c.seat_id,
                lines.c.seat_label,
                lines.c.seat_class,
                lines.c.unit_price,
                false(),
            ),
        )
        .returning(BookingLine.id)
        .cte("written")
    )
    converted = (
        update(Hold)
        .where(Hold.id == bindparam("the_hold"))
        .values(status=HoldStatus.CONVERTED)
        .returning(Hold.id)
        .cte("converted")
    )
    extended = _EXTEND_HOLD.postgresql_cte("extended")
    return select(
        select(func.count()).select_from(extended).scalar_subquery().label("extended"),
        select(func.count()).select_from(written).scalar_subquery().label("lines"),
        select(func.count()).select_from(converted).scalar_subquery().label("converted"),
    ).add_cte(*(row.cte for row in rows))


_HOLD_TO_BOOKING = SessionStatement(_hold_to_booking())
# A booking of seats only: nothing else refers to it before its payment, so its row, its
# payment and the payment's audit entry are written by the same statement.
_BOOKING_ROW = RowInsert(Booking, "booking")
_PAYMENT_ROW = RowInsert(Payment, "payment")
_AUDIT_ROW = RowInsert(AuditEntry, "audit")
_BOOKING_AT_ONCE = SessionStatement(_hold_to_booking(_BOOKING_ROW, _PAYMENT_ROW, _AUDIT_ROW))

# What a booking reads of its hold, built once with bound parameters (building them cost
# ~0.2 ms of CPU each per booking): the hold, locked; the showtime with its theater; the
# hold's seats that are still held by it.
_LOCK_HOLD = select(Hold).where(Hold.id == bindparam("the_hold")).with_for_update()
_SHOWTIME_AND_THEATER = (
    select(Showtime, Theater)
    .join(Theater, Theater.id == Showtime.theater_id)
    .where(Showtime.id == bindparam("the_showtime"))
)
_HELD = and_(
    ShowtimeSeat.hold_id == Hold.id,
    ShowtimeSeat.showtime_id == Hold.showtime_id,
    ShowtimeSeat.status == constant(SeatStatus.HELD),  # core.db.constant: no planning per run
    ShowtimeSeat.held_until > bindparam("now"),
)
_HELD_SEATS = (
    select(Seat.id, Seat.label, Seat.seat_class)
    .join(ShowtimeSeat, ShowtimeSeat.seat_id == Seat.id)
    .join(Hold, Hold.id == bindparam("the_hold"))
    .where(_HELD)
)
# All three in one round trip, a row per held seat (one without a seat when none is held any
# more), locking the hold's row only (FOR UPDATE OF), with the caller's account (judged by
# accounts.service.signed_in: a request session's read saved) and loyalty standing read along
# (loyalty.BALANCE, loyalty.EARNED_SINCE: the tier discount). Sent past the ORM (on PostgreSQL
# on the session's driver connection), its objects made by `RowLoad`s: the ORM's loading of
# four entities per row cost ~0.15 ms of a booking's CPU more. MariaDB has no FOR UPDATE OF: there
# it would lock the showtime's and the theater's rows too, making every booking of a theater
# wait for the one before, so it runs the three statements above (and loyalty's own).
_LOADED_HOLD = RowLoad(Hold, "hold_")
_LOADED_SHOWTIME = RowLoad(Showtime, "showtime_")
_LOADED_THEATER = RowLoad(Theater, "theater_")
_LOCK_HOLD_WITH_SHOWTIME = SessionStatement(
    select(
        *_LOADED_HOLD.columns,
        *_LOADED_SHOWTIME.columns,
        *_LOADED_THEATER.columns,
        *CALLER.columns,
        Seat.id.label("seat_id"),
        Seat.label.label("seat_label"),
        Seat.seat_class.label("seat_class"),
        loyalty.BALANCE.label("points_balance"),
        loyalty.EARNED_SINCE.label("points_earned"),
    )
    .select_from(Hold)
    .join(Showtime, Showtime.id == Hold.showtime_id)
    .join(Theater, Theater.id == Showtime.theater_id)
    .outerjoin(User, User.id == bindparam("the_user"))
    .outerjoin(ShowtimeSeat, _HELD)
    .outerjoin(Seat, Seat.id == ShowtimeSeat.seat_id)
    .where(Hold.id == bindparam("the_hold"))
    .with_for_update(of=Hold)
)
_LINES_OF = (
    select(BookingLine)
    .where(BookingLine.booking_id == bindparam("the_booking"))
    .order_by(BookingLine.seat_label)
)

# No 0/O, 1/I/L: a reference read out at the till is never misheard.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REFERENCE_LENGTH = 8
retry_on_duplicate("uq_bookings_reference", "bookings.reference")


def new_reference() -> str:
    return "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def effective_status(booking: Booking, now: dt.datetime) -> str:
    """A pending booking past its deadline *is* expired, before the expiry job records it."""
    if booking.status == BookingStatus.PENDING and booking.expires_at <= now:
        return BookingStatus.EXPIRED
    return booking.status


@dataclass
class BookingView:
    booking: Booking
    lines: list[BookingLine]
    status: str
    snacks: Sequence[BookingSnack] = ()


async def snacks_of(
    session: AsyncSession, booking_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[BookingSnack]]:
    by_booking: dict[uuid.UUID, list[BookingSnack]] = {booking_id: [] for booking_id in booking_ids}
    if booking_ids:
        for line in await session.scalars(
            select(BookingSnack)
            .where(BookingSnack.booking_id.in_(booking_ids))
            .order_by(BookingSnack.name, BookingSnack.id)
        ):
            by_booking[line.booking_id].append(line)
    return by_booking


async def lines_of(session: AsyncSession, booking_id: uuid.UUID) -> list[BookingLine]:
    return list((await session.scalars(_LINES_OF, {"the_booking": booking_id})).all())


async def create_booking(
    session: AsyncSession,
    settings: Settings,
    payment_ctx: payments.PaymentContext,
    caller: AccessClaims,
    data: BookingIn,
) -> tuple[BookingView, Payment | None]:
    """Turn the caller's live hold into a pending booking with frozen prices (seats, snacks,
    discounts: see booking/checkout.py) and an intent. A booking whose discounts pay all of it
    is confirmed at once. The caller's account is judged first (401; 403 for an address that
    must be verified), read with the hold."""
    now = utcnow()
    read = await _lock_hold(session, data.lock_token, caller, now)
    user = read.caller
    check_may_book(user, settings)
    hold, showtime, theater, seats = read.hold, read.showtime, read.theater, read.seats
    if hold is None or hold.user_id != user.id:
        raise HoldNotFound("No such hold.")
    if hold.status == HoldStatus.CONVERTED:
        raise HoldAlreadyBooked("This hold was already turned into a booking.")
    if hold.status != HoldStatus.ACTIVE or hold.expires_at <= now:
        raise HoldExpired("The hold has expired; hold the seats again.")
    if hold.showtime_id != data.showtime_id or set(hold.seat_labels) != set(data.seat_numbers):
        raise HoldMismatch(
            "showtimeId and seatNumbers must be exactly those of the hold.",
            heldSeats=hold.seat_labels,
        )
    if showtime is None or theater is None:
        raise ShowtimeNotFound(f"No showtime with id {hold.showtime_id}.")
    check_open_for_sale(showtime, settings, now)

    if len(seats) != len(hold.seat_labels):
        raise HoldExpired("The hold has expired; hold the seats again.")

    priced = await checkout.price_seats(
        session,
        showtime.id,
        [checkout.SeatToPrice(s.id, s.label, s.seat_class) for s in seats],
        now,
    )
    prices = priced.unit_prices
    total = priced.tickets
    booking = Booking(
        id=uuid.uuid4(),
        user_id=user.id,
        showtime_id=showtime.id,
        hold_id=hold.id,
        status=BookingStatus.PENDING,
        currency=showtime.currency,
        # The seats' part now; checkout.apply_extras completes the totals (an unchanged
        # value costs no UPDATE, so a booking of seats only writes its row once).
        tickets_amount=total,
        adjustments_amount=priced.adjustments,
        total_amount=total,
        discount_amount=Decimal("0.00"),
        final_amount=total,
        refunded_amount=Decimal("0.00"),
        expires_at=utcnow() + dt.timedelta(seconds=settings.booking_ttl),
    )
    at_once = session.get_bind().dialect.name == "postgresql"
    # Snacks, a promo code and points write rows that refer to the booking: it is inserted
    # first. Otherwise, on PostgreSQL, its row is written with its lines and payment below.
    with_payment = at_once and not (data.snacks or data.promo_code or data.points_to_redeem)
    if with_payment:
        booking.reference = new_reference()
    else:
        await insert_booking(session, booking)
    lines = [
        BookingLine(
            id=uuid.uuid4(),
            booking_id=booking.id,
            seat_id=s.id,
            seat_label=s.label,
            seat_class=s.seat_class,
            unit_price=prices[s.id],
            refunded=False,
        )
        for s in sorted(seats, key=lambda s: s.label)
    ]
    if not at_once:
        session.add_all(lines)
    snack_lines = await checkout.apply_extras(
        session,
        booking,
        showtime=showtime,
        theater=theater,
        tickets=priced.tickets,
        adjustments=priced.adjustments,
        snacks=[concessions.SnackOrder(item.snack_id, item.quantity) for item in data.snacks],
        promo_code=data.promo_code,
        points=data.points_to_redeem or 0,
        now=now,
        loyalty_account=read.loyalty_account,
    )
    if with_payment and booking.final_amount <= 0:  # free seats: confirmed below, no payment
        with_payment = False
        await insert_booking(session, booking)
    # The hold now lasts until the payment deadline and points at the booking. Conditional on
    # the hold being alive *now*: the check above did not lock the rows, so a seat whose hold
    # ran out meanwhile may have gone to someone else (then nothing is booked).
    extend = {
        "the_hold": hold.id,
        "now": now,
        "until": booking.expires_at,
        "the_booking": booking.id,
    }
    payment: Payment | None = None
    if at_once:  # the lines, the hold and its seats (and the booking, its payment) at once
        params = {
            "the_showtime": showtime.id,
            **extend,
            "line_ids": [line.id for line in lines],
            "seat_ids": [line.seat_id for line in lines],
            "labels": [line.seat_label for line in lines],
            "classes": [line.seat_class for line in lines],
            "prices": [line.unit_price for line in lines],
        }
        if with_payment:
            payment, entry = await payments.intent_of_new_booking(payment_ctx, booking)
            params |= (
                _BOOKING_ROW.params(booking)
                | _PAYMENT_ROW.params(payment)
                | _AUDIT_ROW.params(entry)
            )
        statement = _BOOKING_AT_ONCE if with_payment else _HOLD_TO_BOOKING
        extended = (await statement.fetchrow(session, params)).extended
        set_committed_value(hold, "status", HoldStatus.CONVERTED)
    else:
        hold.status = HoldStatus.CONVERTED
        extended = await _EXTEND_HOLD.run(session, showtime.id, **extend)
    if extended != len(seats):
        if payment is not None:  # the provider's intent was made before the statement
            await payments.cancel_at_provider(payment_ctx, payment)
        raise HoldExpired("The hold has expired; hold the seats again.")
    if payment is not None:
        adopt(session, booking, payment)
        return BookingView(booking, lines, booking.status, snack_lines), payment
    await session.flush()
    if booking.final_amount <= 0:
        await _confirm_free_booking(session, booking, lines)
        return BookingView(booking, lines, booking.status, snack_lines), None
    payment = await payments.create_intent(session, payment_ctx, booking, new_booking=True)
    return BookingView(booking, lines, booking.status, snack_lines), payment


@dataclass(frozen=True)
class _HeldSeat:
    id: uuid.UUID
    label: str
    seat_class: str


@dataclass
class _HoldRead:
    """What a booking reads of its hold (None for what does not exist)."""

    caller: User  # signed in: accounts.service.signed_in
    hold: Hold | None = None
    showtime: Showtime | None = None
    theater: Theater | None = None
    seats: list[_HeldSeat] = field(default_factory=list)  # still held by it
    loyalty_account: loyalty.AccountView | None = None  # the caller's, when read along


async def _lock_hold(
    session: AsyncSession, hold_id: uuid.UUID, caller: AccessClaims, now: dt.datetime
) -> _HoldRead:
    """The caller's signed-in account (401 otherwise, before anything about the hold), the
    hold, locked, with its showtime and theater and its seats still held by it at `now`; on
    PostgreSQL and SQLite the caller's loyalty standing too."""
    if session.get_bind().dialect.name != "mysql":
        # standing_params binds the_user, the caller: the account's join uses it too.
        params = {"the_hold": hold_id, "now": now, **loyalty.standing_params(caller.user_id)}
        rows = await _LOCK_HOLD_WITH_SHOWTIME.fetch(session, params)
        if not rows:  # no such hold: the account still decides between 401 and 404
            return _HoldRead(await signed_in_user(session, caller))
        first = rows[0]
        return _HoldRead(
            signed_in(CALLER.load(session, first), caller),
            _LOADED_HOLD.load(session, first),
            _LOADED_SHOWTIME.load(session, first),
            _LOADED_THEATER.load(session, first),
            [
                _HeldSeat(r.seat_id, r.seat_label, r.seat_class)
                for r in rows
                if r.seat_id is not None
            ],
            loyalty.account_from(first.points_balance, first.points_earned),
        )
    user = await signed_in_user(session, caller)
    hold = await session.scalar(_LOCK_HOLD, {"the_hold": hold_id})
    if hold is None:
        return _HoldRead(user)
    head = (
        await session.execute(_SHOWTIME_AND_THEATER, {"the_showtime": hold.showtime_id})
    ).first()
    if head is None:
        return _HoldRead(user, hold)
    held = await session.execute(_HELD_SEATS, {"the_hold": hold.id, "now": now})
    return _HoldRead(user, hold, head[0], head[1], [_HeldSeat(*row) for row in held])


async def _confirm_free_booking(
    session: AsyncSession, booking: Booking, lines: Sequence[BookingLine]
) -> None:
    """Discounts paid all of it: nothing to pay, so the booking is confirmed now."""
    if not await _sell_seats(session, booking, lines):  # its own live hold: cannot fail
        raise HoldExpired("The hold has expired; hold the seats again.")
    booking.status = BookingStatus.CONFIRMED
    booking.confirmed_at = utcnow()
    await tickets.issue_tickets(session, booking, lines)
    await documents.issue_invoice_after_commit(session, booking)
    await _notify_confirmed(session, booking)


async def _notify_confirmed(
    session: AsyncSession,
    booking: Booking,
    to: notifications.Recipient | notifications.UnreadRecipient | None = notifications.UNREAD,
) -> None:
    """The confirmation (in-app now; the mail with tickets and calendar entry after commit)."""
    await notifications.notify(
        session,
        booking.user_id,
        "booking_confirmed",
        booking_id=booking.id,
        data={
            "reference": booking.reference,
            "amount": str(booking.final_amount),
            "currency": booking.currency,
        },
        to=to,
    )


async def insert_booking(session: AsyncSession, booking: Booking) -> None:
    """Insert the booking under a new reference. A reference already taken fails the flush on
    its unique key and the whole request runs again (RetryingRoute), drawing another: at a
    million bookings that is about one booking in 10^6, too rare to pay a savepoint pair on
    every booking for a retry in place."""
    booking.reference = new_reference()
    session.add(booking)
    await session.flush()


async def get_booking(
    session: AsyncSession, booking_id: uuid.UUID, *, user: User, may_read_any: bool
) -> BookingView:
    booking = await session.get(Booking, booking_id)
    if booking is None or (booking.user_id != user.id and not may_read_any):
        raise BookingNotFound("No such booking.")
    return await view_of(session, booking)


async def view_of(session: AsyncSession, booking: Booking) -> BookingView:
    """The booking with its seat and snack lines, as the API shows it."""
    return BookingView(
        booking,
        await lines_of(session, booking.id),
        effective_status(booking, utcnow()),
        (await snacks_of(session, [booking.id]))[booking.id],
    )


@dataclass
class BookingContext:
    showtime: Showtime
    movie: Movie
    theater: Theater
    screen: Screen


async def booking_context(session: AsyncSession, showtime_id: uuid.UUID) -> BookingContext:
    row = (
        await session.execute(
            select(Showtime, Movie, Theater, Screen)
            .join(Movie, Movie.id == Showtime.movie_id)
            .join(Theater, Theater.id == Showtime.theater_id)
            .join(Screen, Screen.id == Showtime.screen_id)
            .where(Showtime.id == showtime_id)
        )
    ).one()
    return BookingContext(*row)


async def list_user_bookings(
    session: AsyncSession, user_id: uuid.UUID, *, offset: int, limit: int
) -> tuple[list[BookingView], int]:
    total = await session.scalar(
        select(func.count()).select_from(Booking).where(Booking.user_id == user_id)
    )
    bookings = (
        await session.scalars(
            select(Booking)
            .where(Booking.user_id == user_id)
            .order_by(Booking.created_at.desc(), Booking.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    by_booking: dict[uuid.UUID, list[BookingLine]] = {b.id: [] for b in bookings}
    if bookings:
        for line in await session.scalars(
            select(BookingLine)
            .where(BookingLine.booking_id.in_(by_booking))
            .order_by(BookingLine.seat_label)
        ):
            by_booking[line.booking_id].append(line)
    now = utcnow()
    snacks = await snacks_of(session, [b.id for b in bookings])
    views = [
        BookingView(b, by_booking[b.id], effective_status(b, now), snacks[b.id]) for b in bookings
    ]
    return views, total or 0


async def _free_booking_seats(session: AsyncSession, booking: Booking) -> None:
    await lock_seat_rows(session, [booking.showtime_id], booking_ids=[booking.id])
    await session.execute(
        update(ShowtimeSeat)
        .where(
            ShowtimeSeat.showtime_id == booking.showtime_id,
            ShowtimeSeat.booking_id == booking.id,
            ShowtimeSeat.status == SeatStatus.HELD,
        )
        .values(status=SeatStatus.AVAILABLE, hold_id=None, held_until=None, booking_id=None),
        execution_options={"synchronize_session": False},
    )


async def cancel_pending(
    session: AsyncSession, payment_ctx: payments.PaymentContext, booking: Booking
) -> None:
    """Cancel an unpaid booking: its seats are free at once and its intent is cancelled."""
    now = utcnow()
    if booking.status != BookingStatus.PENDING:
        raise BookingNotCancellable(
            f"A {effective_status(booking, now)} booking cannot be cancelled."
        )
    booking.status = BookingStatus.CANCELLED
    booking.cancelled_at = now
    await _free_booking_seats(session, booking)
    await payments.cancel_intent(session, payment_ctx, booking.id)
    await checkout.release_commerce(session, booking.id)


async def lock_booking(session: AsyncSession, booking_id: uuid.UUID) -> Booking:
    booking = await session.scalar(
        select(Booking).where(Booking.id == booking_id).with_for_update()
    )
    if booking is None:
        raise BookingNotFound("No such booking.")
    return booking


async def confirm_paid_booking(
    session: AsyncSession,
    payment_ctx: payments.PaymentContext,
    booking_id: uuid.UUID,
    payment: Payment,
) -> bool:
    """A payment succeeded: confirm the booking, sell its seats and issue tickets — or, when
    its seats went to someone else meanwhile (it had expired), refund at once.

    Runs in the transaction that recorded the payment, with the booking row locked, so a
    webhook and a client-side confirmation racing for one payment confirm it once.
    """
    # Locked and loaded already: every way to a payment's success (payments.lock_by_ref)
    # locks the booking row before the payment's, so this reads the identity map.
    booking = await session.get(Booking, booking_id)
    if booking is None:
        raise BookingNotFound("No such booking.")
    if booking.status in (BookingStatus.CONFIRMED, BookingStatus.USED):
        return True
    if _may_confirm(booking):
        confirmed, read_along = await _confirm(session, booking)
        if confirmed:
            await documents.issue_invoice_after_commit(session, booking, due_row=read_along)
            await _notify_confirmed(
                session,
                booking,
                notifications.UNREAD
                if read_along is None
                else notifications.recipient_of(booking.user_id, read_along),
            )
            return True
    # Cancelled, its seats sold elsewhere after it expired, or what its discounts and snacks
    # relied on given back at its expiry: never sell twice, never below the price.
    lines = await lines_of(session, booking.id)
    log.warning("paid_booking_not_honoured", booking_id=str(booking.id), status=booking.status)
    refund = await payments.refund(
        session,
        payment_ctx,
        booking,
        payment.amount - payment.refunded_amount,
        reason="seats no longer available when the payment arrived",
        seat_labels=[line.seat_label for line in lines],
        requested_by=None,
    )
    await notify_refund_done(session, booking, refund.amount, [line.seat_label for line in lines])
    for line in lines:
        line.refunded = True
    booking.refunded_amount = booking.final_amount
    booking.status = BookingStatus.REFUNDED
    await _free_booking_seats(session, booking)
    await checkout.release_commerce(session, booking.id)
    return False


async def notify_refund_done(
    session: AsyncSession, booking: Booking, amount: Decimal, seat_labels: list[str]
) -> None:
    await notifications.notify(
        session,
        booking.user_id,
        "refund_done",
        booking_id=booking.id,
        data={
            "reference": booking.reference,
            "amount": str(amount),
            "currency": booking.currency,
            "seats": seat_labels,
        },
    )


async def _confirm(session: AsyncSession, booking: Booking) -> tuple[bool, Any]:
    """Sell the booking's seats, confirm it and issue its tickets, all or none; False when a
    seat went to someone else. With it, on PostgreSQL, the row of `_CONFIRM_AT_ONCE` (the
    invoice due, the recipient; None: not read)."""
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        done = await _CONFIRM_AT_ONCE.fetchrow(
            session,
            {
                "the_booking": booking.id,
                "the_showtime": booking.showtime_id,
                "the_user": booking.user_id,
                "now": now,
            },
        )
        if not done.confirmed:
            return False, None
        # Written by the statement: the loaded booking says so without another UPDATE.
        for name, value in (
            ("status", BookingStatus.CONFIRMED),
            ("confirmed_at", now),
            ("updated_at", now),
        ):
            set_committed_value(booking, name, value)
        return True, done
    lines = await lines_of(session, booking.id)
    if not await _sell_seats(session, booking, lines):
        return False, None
    booking.status = BookingStatus.CONFIRMED
    booking.confirmed_at = now
    await tickets.issue_tickets(session, booking, lines)
    return True, None


def _may_confirm(booking: Booking) -> bool:
    """Whether a payment can still confirm the booking (seats permitting). An expired booking
    gave back its promo use, snack stock and points when its expiry was recorded; they may
    have gone to others since, so one that had any is refunded rather than confirmed."""
    if booking.status == BookingStatus.PENDING:
        return True
    had_extras = booking.promo_discount or booking.points_redeemed or booking.snacks_amount
    return booking.status == BookingStatus.EXPIRED and not had_extras


async def _sell_seats(
    session: AsyncSession, booking: Booking, lines: Sequence[BookingLine]
) -> bool:
    """All seats of the booking become `booked`, or none (savepoint)."""
    if not lines:
        return True  # a snack preorder: no seats to sell
    seat_ids = sorted(line.seat_id for line in lines)

    async def sell() -> int | None:
        return await _SELL.run(
            session,
            booking.showtime_id,
            the_seats=seat_ids,
            the_booking=booking.id,
            now=utcnow(),
            expected=len(seat_ids),
        )

    if session.get_bind().dialect.name == "postgresql":
        # One statement: it changes nothing unless every seat can be sold.
        return await sell() == len(seat_ids)
    async with session.begin_nested() as savepoint:
        if await sell():
            return True
        await savepoint.rollback()
    return False


async def expire_due_bookings(
    session: AsyncSession, payment_ctx: payments.PaymentContext, *, limit: int = 500
) -> int:
    """Record the expiry of unpaid bookings past their deadline and free their seats.

    Safe to run in several processes at once: every change is conditional on the state it
    leaves, so a booking is expired once. Correctness does not depend on it (a held seat past
    `held_until` is free to everyone already); it tidies up and cancels stale intents.
    """
    now = utcnow()
    # The due bookings are locked in one go, skipping those locked by someone else (being paid
    # or cancelled right now; a later run sees them), then their seats in seat order: the job
    # waits for no booking, so a payment arriving as its booking expires cannot deadlock with it.
    due = (
        await session.execute(
            select(Booking.id, Booking.showtime_id, Booking.user_id, Booking.reference)
            .where(Booking.status == BookingStatus.PENDING, Booking.expires_at <= now)
            .order_by(Booking.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    showtime_of = {row.id: row.showtime_id for row in due}
    owner_of = {row.id: (row.user_id, row.reference) for row in due}
    await lock_seat_rows(session, set(showtime_of.values()), booking_ids=list(showtime_of))
    expired = 0
    for booking_id, showtime_id in showtime_of.items():
        result = await session.execute(
            update(Booking)
            .where(Booking.id == booking_id, Booking.status == BookingStatus.PENDING)
            .values(status=BookingStatus.EXPIRED),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue
        expired += 1
        await session.execute(
            update(ShowtimeSeat)
            .where(
                ShowtimeSeat.showtime_id == showtime_id,
                ShowtimeSeat.booking_id == booking_id,
                ShowtimeSeat.status == SeatStatus.HELD,
                ShowtimeSeat.held_until <= now,
            )
            .values(status=SeatStatus.AVAILABLE, hold_id=None, held_until=None, booking_id=None),
            execution_options={"synchronize_session": False},
        )
        await payments.cancel_intent(session, payment_ctx, booking_id)
        await checkout.release_commerce(session, booking_id)
        user_id, reference = owner_of[booking_id]
        await notifications.notify(
            session,
            user_id,
            "booking_expired",
            booking_id=booking_id,
            data={"reference": reference},
        )
    return expired
