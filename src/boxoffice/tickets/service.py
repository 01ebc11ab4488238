"""Issuing tickets, listing them with their signed tokens, voiding them, and the door.

A ticket's QR token is recomputed from its id whenever it is shown (Ed25519 signatures are
deterministic), so the table stores no token. The door trusts the signature first: a forged or
altered token is refused before any database work.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    CursorResult,
    Insert,
    Result,
    Select,
    bindparam,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import User
from boxoffice.accounts.service import token_is_current_sql
from boxoffice.booking.models import Booking, BookingLine, BookingStatus
from boxoffice.catalog.models import Movie
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database
from boxoffice.core.security import AccessClaims
from boxoffice.loyalty import service as loyalty
from boxoffice.scheduling.models import Showtime
from boxoffice.tickets.exceptions import BookingNotFound, TicketsNotIssued
from boxoffice.tickets.models import Ticket, TicketStatus
from boxoffice.tickets.signing import TicketClaims, TicketSigner
from boxoffice.venues.models import Screen, Seat

# A ticket is refused as `expired` this long after its showtime ended.
EXPIRED_AFTER_END = dt.timedelta(hours=4)
# Bookings whose tickets exist (a refunded booking shows its void tickets, if any were issued).
_ISSUED = {BookingStatus.CONFIRMED, BookingStatus.USED, BookingStatus.REFUNDED}


async def issue_tickets(
    session: AsyncSession, booking: Booking, lines: Sequence[BookingLine]
) -> list[Ticket]:
    """One valid ticket per (not refunded) line; the caller issues them once, at confirmation."""
    now = utcnow()
    tickets = [
        Ticket(
            id=uuid.uuid4(),
            booking_id=booking.id,
            showtime_id=booking.showtime_id,
            seat_id=line.seat_id,
            seat_label=line.seat_label,
            status=TicketStatus.VALID,
            issued_at=now,
        )
        for line in lines
        if not line.refunded
    ]
    session.add_all(tickets)
    await session.flush()  # one batched INSERT
    return tickets


def issue_tickets_from(
    lines: CTE,
    *,
    booking_id: ColumnElement[uuid.UUID],
    showtime_id: ColumnElement[uuid.UUID],
    issued_at: ColumnElement[dt.datetime],
    when: ColumnElement[bool],
) -> Insert:
    """PostgreSQL: `issue_tickets` as part of a larger statement (booking's confirmation in
    one round trip): one valid ticket per not refunded row of `lines` (its seat_id, seat_label
    and refunded columns), if `when` holds. Ids from gen_random_uuid() (PostgreSQL 13+)."""
    columns = ("id", "booking_id", "showtime_id", "seat_id", "seat_label", "status", "issued_at")
    return insert(Ticket).from_select(
        columns,
        select(
            func.gen_random_uuid(),
            booking_id,
            showtime_id,
            lines.c.seat_id,
            lines.c.seat_label,
            literal(TicketStatus.VALID),
            issued_at,
        ).where(lines.c.refunded.is_(False), when),
    )


async def void_tickets(
    session: AsyncSession, booking_id: uuid.UUID, seat_labels: Collection[str]
) -> int:
    """Void the booking's tickets for these seats (a refund); used ones too, since the seat
    goes back on sale. Returns how many tickets changed."""
    if not seat_labels:
        return 0
    result = await session.execute(
        update(Ticket)
        .where(
            Ticket.booking_id == booking_id,
            Ticket.seat_label.in_(list(seat_labels)),
            Ticket.status != TicketStatus.VOID,
        )
        .values(status=TicketStatus.VOID)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


# Read after every purchase: built once with bound parameters (session.get builds its query
# on each call). The booking's owner and status come with its tickets, in one round trip.
_TICKETS_OF_BOOKING = (
    select(Ticket)
    .join(Seat, Seat.id == Ticket.seat_id)
    .where(Ticket.booking_id == bindparam("the_booking"))
    .order_by(Seat.row_index, Seat.position, Seat.label)
)
_BOOKING_WITH_TICKETS = (
    select(Booking.user_id, Booking.status, Ticket)
    .outerjoin(Ticket, Ticket.booking_id == Booking.id)
    .outerjoin(Seat, Seat.id == Ticket.seat_id)
    .where(Booking.id == bindparam("the_booking"))
    .order_by(Seat.row_index, Seat.position, Seat.label)
)


async def tickets_for_booking(session: AsyncSession, booking_id: uuid.UUID) -> list[Ticket]:
    """The booking's tickets in seat order (row by row, left to right)."""
    return list(await session.scalars(_TICKETS_OF_BOOKING, {"the_booking": booking_id}))


async def booking_tickets(
    session: AsyncSession, booking_id: uuid.UUID, viewer: User, *, may_read_any: bool
) -> list[Ticket]:
    """The tickets of a booking for its owner or staff; anyone else learns nothing (404)."""
    rows = (await session.execute(_BOOKING_WITH_TICKETS, {"the_booking": booking_id})).all()
    if not rows or (rows[0].user_id != viewer.id and not may_read_any):
        raise BookingNotFound(f"No booking with id {booking_id}.")
    _check_issued(rows[0].status)
    return [row.Ticket for row in rows if row.Ticket is not None]


def _check_issued(booking_status: str) -> None:
    if booking_status not in _ISSUED:
        raise TicketsNotIssued(
            f"The booking is {booking_status}: tickets are issued once it is paid.",
            bookingStatus=booking_status,
        )


@dataclass(frozen=True, slots=True)
class ListedTicket:
    """A ticket as its owner's list shows it (read without the ORM on PostgreSQL)."""

    id: uuid.UUID
    showtime_id: uuid.UUID
    seat_label: str
    status: str


# PostgreSQL: the owner's list in one statement on the hot pool (core.pgdriver), no session and
# no read of the account: the statement checks it the way `accounts.service.signed_in` does
# (active; the token issued at or after the last password change and "sign out everywhere";
# $3 NULL for a token without an issue time). Staff, a stranger, a stale token or no such
# booking get no row and take the general way, which tells which.
_OWNER_TICKETS_SQL = f"""
SELECT b.status AS booking_status, t.id, t.showtime_id, t.seat_label, t.status
FROM bookings b
JOIN users u ON u.id = b.user_id
LEFT JOIN tickets t ON t.booking_id = b.id
LEFT JOIN seats s ON s.id = t.seat_id
WHERE b.id = $1 AND b.user_id = $2 AND u.is_active
  AND {token_is_current_sql("$3::timestamptz", "u")}
ORDER BY s.row_index, s.position, s.label
"""


async def owner_tickets(
    database: Database, booking_id: uuid.UUID, claims: AccessClaims
) -> list[ListedTicket] | None:
    """The tickets of the caller's own booking in seat order, on PostgreSQL; None when the
    caller is not (or no longer may act as) its owner, or on another backend."""
    if database.driver is None:
        return None
    rows = await database.driver.fetch(
        _OWNER_TICKETS_SQL, booking_id, claims.user_id, claims.issued_at
    )
    if not rows:
        return None
    _check_issued(rows[0]["booking_status"])
    return [
        ListedTicket(row["id"], row["showtime_id"], row["seat_label"], row["status"])
        for row in rows
        if row["id"] is not None
    ]


def ticket_token(signer: TicketSigner, ticket: Ticket | ListedTicket) -> str:
    return signer.sign(ticket.id, ticket.showtime_id)


def verify_ticket_token(signer: TicketSigner, token: str) -> TicketClaims | None:
    return signer.verify(token)


# ---------------------------------------------------------------------------------------------
# The door


@dataclass(frozen=True)
class DoorTicket:
    id: uuid.UUID
    booking_id: uuid.UUID
    showtime_id: uuid.UUID
    seat_label: str
    status: str
    movie_title: str
    screen_name: str
    start_time: dt.datetime
    age_rating: str


@dataclass(frozen=True)
class CheckInResult:
    result: str  # valid | already_used | invalid | wrong_showtime | not_yet_open
    ticket: DoorTicket | None = None
    used_at: dt.datetime | None = None
    reason: str | None = None  # with invalid: bad_signature | unknown_ticket | void | ...


def _door_query(ticket_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    return (
        select(
            Ticket.id,
            Ticket.booking_id,
            Ticket.showtime_id,
            Ticket.seat_label,
            Ticket.status,
            Ticket.used_at,
            Showtime.theater_id,
            Showtime.start_time,
            Showtime.end_time,
            Showtime.status.label("showtime_status"),
            Movie.title,
            Movie.rating,
            Screen.name.label("screen_name"),
        )
        .join(Showtime, Showtime.id == Ticket.showtime_id)
        .join(Movie, Movie.id == Showtime.movie_id)
        .join(Screen, Screen.id == Showtime.screen_id)
        .where(Ticket.id == ticket_id)
    )


async def check_in(
    session: AsyncSession,
    settings: Settings,
    signer: TicketSigner,
    scanner: User,
    qr_token: str,
    *,
    showtime_id: uuid.UUID | None = None,
    theater_id: uuid.UUID | None = None,
    now: dt.datetime,
) -> CheckInResult:
    """Admit the holder of a ticket once.

    Checks in this order: signature (no database work), known and not void, showtime not
    cancelled, the scanner's showtime or theater, already used, doors open, not expired (the
    showtime ended more than 4 hours ago). A valid scan is one conditional UPDATE: of two
    scanners reading the same ticket at once, exactly one gets `valid`.
    """
    claims = signer.verify(qr_token)
    if claims is None:
        return CheckInResult("invalid", reason="bad_signature")
    row = (await session.execute(_door_query(claims.ticket_id))).one_or_none()
    if row is None or not claims.is_for_showtime(row.showtime_id):
        return CheckInResult("invalid", reason="unknown_ticket")

    def view(status: str) -> DoorTicket:
        return DoorTicket(
            id=row.id,
            booking_id=row.booking_id,
            showtime_id=row.showtime_id,
            seat_label=row.seat_label,
            status=status,
            movie_title=row.title,
            screen_name=row.screen_name,
            start_time=row.start_time,
            age_rating=row.rating,
        )

    if row.status == TicketStatus.VOID:
        return CheckInResult("invalid", view(row.status), reason="void")
    if row.showtime_status == "cancelled":
        return CheckInResult("invalid", view(row.status), reason="showtime_cancelled")
    if (showtime_id is not None and showtime_id != row.showtime_id) or (
        theater_id is not None and theater_id != row.theater_id
    ):
        return CheckInResult("wrong_showtime", view(row.status))
    if row.status == TicketStatus.USED:
        return CheckInResult("already_used", view(row.status), used_at=row.used_at)
    if now < row.start_time - dt.timedelta(minutes=settings.doors_open_minutes):
        return CheckInResult("not_yet_open", view(row.status))
    if now > row.end_time + EXPIRED_AFTER_END:
        return CheckInResult("invalid", view(row.status), reason="expired")

    # Lock the booking before the ticket, in the order refunds take them (no deadlock); the
    # lock also lets the last scan of a booking see every other scan of it.
    await session.execute(select(Booking.id).where(Booking.id == row.booking_id).with_for_update())
    marked = await session.execute(
        update(Ticket)
        .where(Ticket.id == row.id, Ticket.status == TicketStatus.VALID)
        .values(status=TicketStatus.USED, used_at=now, used_by=scanner.id)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(marked) != 1:  # another scanner (or a refund) came first
        status, used_at = (
            await session.execute(select(Ticket.status, Ticket.used_at).where(Ticket.id == row.id))
        ).one()
        if status == TicketStatus.USED:
            return CheckInResult("already_used", view(status), used_at=used_at)
        return CheckInResult("invalid", view(status), reason="void")
    await _mark_booking_used_if_complete(session, row.booking_id)
    # The customer came: their loyalty points accrue now (once per booking).
    await loyalty.earn_for_booking(session, row.booking_id)
    return CheckInResult("valid", view(TicketStatus.USED), used_at=now)


async def _mark_booking_used_if_complete(session: AsyncSession, booking_id: uuid.UUID) -> None:
    remaining = await session.scalar(
        select(func.count())
        .select_from(Ticket)
        .where(Ticket.booking_id == booking_id, Ticket.status == TicketStatus.VALID)
    )
    if remaining == 0:
        await session.execute(
            update(Booking)
            .where(Booking.id == booking_id, Booking.status == BookingStatus.CONFIRMED)
            .values(status=BookingStatus.USED)
            .execution_options(synchronize_session=False)
        )


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount
