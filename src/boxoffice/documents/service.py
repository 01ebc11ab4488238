"""Invoices (numbered without gaps per theater and year) and the ticket and invoice PDFs.

**Numbers.** An invoice is issued right after the transaction that confirms its booking commits
(`issue_invoice_after_commit`), in a unit of work of its own that takes the next number of
(theater, year of the confirmation in the theater's timezone) and inserts the invoice, or
neither. On PostgreSQL that is one statement in autocommit: the counter row is locked for the
microseconds the statement runs, so confirmations of one theater do not queue behind each
other's transactions (they did while the number was taken inside the confirmation: during an
onsale every confirmation of the theater waited for the one before it to commit, and the
seats those confirmations had locked kept the next holds waiting too). Elsewhere it is one
short transaction (SQLite's write turn; MariaDB's row lock on the counter).

No gap: a number is taken only together with its invoice (a rolled-back confirmation never
takes one, and an insert that fails gives the number back with it). No duplicate: the
counter row is locked while a number is taken, and a booking has at most one invoice (a
unique key), so two issuers of one booking leave one invoice and one number. A confirmed
booking whose invoice was not issued (the process died between the commit and the invoice)
gets it from the periodic `issue_missing_invoices`.

**PDFs.** Rendered on the first request and stored (`app.state.storage`) under a key that
ends in a fingerprint of everything the document shows: later requests find the file and
serve it (or redirect to a presigned URL), and a document whose content changed since, such
as tickets voided by a refund or an invoice that now lists a refund, is rendered anew under
a new key. A GET writes nothing to the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from boxoffice.accounts.models import User
from boxoffice.booking.exceptions import BookingNotFound
from boxoffice.booking.models import Booking, BookingLine
from boxoffice.catalog.models import Movie
from boxoffice.concessions.models import BookingSnack
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database, after_commit
from boxoffice.core.errors import DatabaseUnavailable
from boxoffice.documents.exceptions import InvoiceNotAvailable
from boxoffice.documents.models import Invoice, InvoiceCounter
from boxoffice.documents.pdf import (
    InvoiceDocument,
    InvoiceLine,
    InvoicePayment,
    InvoiceRefund,
    TicketPage,
    TicketsDocument,
    fingerprint,
    render_invoice,
    render_tickets,
)
from boxoffice.jobs import enqueue
from boxoffice.payments import service as payments
from boxoffice.payments.models import Refund
from boxoffice.scheduling.models import Showtime
from boxoffice.storage import Storage
from boxoffice.tickets import service as tickets
from boxoffice.tickets.exceptions import TicketsNotIssued
from boxoffice.tickets.models import Ticket, TicketStatus
from boxoffice.tickets.signing import TicketSigner
from boxoffice.venues.models import Screen, Theater

log = structlog.get_logger(__name__)

PDF = "application/pdf"


# ---------------------------------------------------------------------------------------------
# Invoice numbers


def format_invoice_number(theater_id: uuid.UUID, year: int, number: int) -> str:
    """`1A2B3C4D-2026-000042`: the theater (first 8 hex digits of its id), year, number."""
    return f"{_invoice_number_prefix(theater_id, year)}{number:06d}"


def _invoice_number_prefix(theater_id: uuid.UUID, year: int) -> str:
    return f"{theater_id.hex[:8].upper()}-{year}-"


async def next_invoice_number(session: AsyncSession, theater_id: uuid.UUID, year: int) -> int:
    """The next number of (theater, year), counted in the caller's transaction.

    One upsert creates the year's counter at 1 or adds 1 to it; either way the row stays
    locked until the transaction ends (a concurrent first insert of the same year waits for
    this one and then counts on from it). PostgreSQL and SQLite return the new value from
    the same statement; MariaDB reads it back, which is safe because the lock is ours.
    """
    values = {"theater_id": theater_id, "year": year, "last_number": 1}
    bump = {"last_number": InvoiceCounter.last_number + 1}
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        upsert = (
            insert(InvoiceCounter)
            .values(values)
            .on_conflict_do_update(index_elements=["theater_id", "year"], set_=bump)
            .returning(InvoiceCounter.last_number)
        )
        return int((await session.execute(upsert)).scalar_one())
    await session.execute(mysql.insert(InvoiceCounter).values(values).on_duplicate_key_update(bump))
    number = await session.scalar(
        select(InvoiceCounter.last_number).where(
            InvoiceCounter.theater_id == theater_id, InvoiceCounter.year == year
        )
    )
    assert number is not None
    return int(number)


@dataclass(frozen=True)
class DueInvoice:
    """What a confirmed booking's invoice states besides its number, read in the confirmation."""

    booking_id: uuid.UUID
    theater_id: uuid.UUID
    year: int
    vat_rate: Decimal
    issued_at: dt.datetime


async def issue_invoice_after_commit(
    session: AsyncSession, booking: Booking, *, due_row: Any = None
) -> None:
    """The confirmation's part: once its transaction commits, the booking's invoice is issued
    with the next number (see the module's docstring); nothing if it has one already.
    `due_row`: the booking's row of `DUE_OF_BOOKING`, when the caller's statement read it."""
    due = await due_invoice(session, booking, due_row)
    if due is None:
        return
    database: Database = session.info["database"]

    async def issue() -> None:
        try:
            await issue_invoice(database, due)
        except (DBAPIError, DatabaseUnavailable) as exc:
            # The database went away after the commit: the repair job issues it later.
            log.warning("invoice_deferred", booking_id=str(due.booking_id), error=str(exc)[:200])

    after_commit(session, issue)


# A booking's theater (what its invoice states) and its invoice's id, if it has one.
_DUE = (
    select(
        Booking.confirmed_at,
        Theater.id.label("theater_id"),
        Theater.timezone,
        Theater.vat_rate,
        Invoice.id.label("invoice_id"),
    )
    .select_from(Booking)
    .join(Showtime, Showtime.id == Booking.showtime_id)
    .join(Theater, Theater.id == Showtime.theater_id)
    .outerjoin(Invoice, Invoice.booking_id == Booking.id)
)


# Public for a statement that reads it along (booking.service's confirmation on PostgreSQL).
DUE_OF_BOOKING = _DUE.where(Booking.id == bindparam("the_booking"))


def _due(booking_id: uuid.UUID, confirmed_at: dt.datetime | None, row: Any) -> DueInvoice:
    issued_at = confirmed_at or utcnow()
    year = issued_at.astimezone(ZoneInfo(row.timezone)).year
    return DueInvoice(booking_id, row.theater_id, year, row.vat_rate, issued_at)


async def due_invoice(
    session: AsyncSession, booking: Booking, row: Any = None
) -> DueInvoice | None:
    """The invoice the booking is due (its year from the confirmation time in the theater's
    timezone), or None when it has one. `row`: its row of `DUE_OF_BOOKING`, if read."""
    if row is None:
        row = (await session.execute(DUE_OF_BOOKING, {"the_booking": booking.id})).one()
    if row.invoice_id is not None:
        return None
    return _due(booking.id, booking.confirmed_at, row)


# The next number and the invoice in one statement; no row (and no number taken) when the
# booking has its invoice already. A concurrent issuer of the same booking that passed the
# NOT EXISTS too fails on invoices.booking_id's unique key, and its number goes back with it.
# The number is zero-padded to six digits like format_invoice_number (repeat() of a negative
# count is empty, so a seventh digit is kept).
_ISSUE_SQL = """
WITH counter AS (
    INSERT INTO invoice_counters (theater_id, year, last_number)
    SELECT $2, $3, 1
    WHERE NOT EXISTS (SELECT 1 FROM invoices WHERE booking_id = $4)
    ON CONFLICT (theater_id, year)
        DO UPDATE SET last_number = invoice_counters.last_number + 1
    RETURNING last_number
)
INSERT INTO invoices (id, booking_id, theater_id, year, number, invoice_number, vat_rate,
                      issued_at)
SELECT $1, $4, $2, $3, last_number,
       $5 || repeat('0', 6 - length(last_number::text)) || last_number::text, $6, $7
FROM counter
RETURNING number
"""


async def issue_invoice(database: Database, due: DueInvoice) -> Invoice:
    """Issue the invoice in a unit of work of its own: the next number of its theater-year and
    the invoice, or neither. The booking's existing invoice if it has one."""
    invoice = Invoice(
        id=uuid.uuid4(),
        booking_id=due.booking_id,
        theater_id=due.theater_id,
        year=due.year,
        vat_rate=due.vat_rate,
        issued_at=due.issued_at,
    )
    try:
        if database.driver is not None:
            row = await database.driver.fetchrow(
                _ISSUE_SQL,
                invoice.id,
                due.theater_id,
                due.year,
                due.booking_id,
                _invoice_number_prefix(due.theater_id, due.year),
                due.vat_rate,
                due.issued_at,
            )
            if row is not None:
                return _numbered(invoice, row["number"])
        else:
            # A booking that has its invoice fails the insert, and the number goes back with
            # the rollback.
            async with database.session() as session:
                number = await next_invoice_number(session, due.theater_id, due.year)
                session.add(_numbered(invoice, number))
            return invoice
    except DBAPIError as exc:
        if not _is_unique_violation(exc):
            raise
        # Another issuer of this booking won the race; its invoice is the one.
    async with database.session(write=False) as session:
        existing = await session.scalar(select(Invoice).where(Invoice.booking_id == due.booking_id))
    assert existing is not None
    return existing


def _numbered(invoice: Invoice, number: int) -> Invoice:
    invoice.number = number
    invoice.invoice_number = format_invoice_number(invoice.theater_id, invoice.year, number)
    return invoice


def _is_unique_violation(exc: DBAPIError) -> bool:
    return isinstance(exc, IntegrityError) or isinstance(exc.orig, asyncpg.UniqueViolationError)


async def issue_missing_invoices(database: Database, *, window: dt.timedelta) -> int:
    """Issue the invoices of bookings confirmed within `window` that have none (their
    process stopped between the confirmation's commit and the invoice). Bookings confirmed
    earlier are left as they are: they were confirmed before invoices were issued."""
    since = utcnow() - window
    async with database.session(write=False) as session:
        missing = await session.execute(
            _DUE.add_columns(Booking.id.label("booking_id"))
            .where(Booking.confirmed_at >= since, Invoice.id.is_(None))
            .order_by(Booking.confirmed_at)
        )
        due = [_due(row.booking_id, row.confirmed_at, row) for row in missing]
    for invoice in due:
        await issue_invoice(database, invoice)
    return len(due)


# ---------------------------------------------------------------------------------------------
# Documents


@dataclass(frozen=True)
class DocumentFile:
    """A stored PDF to answer with: a URL to redirect to, or its bytes."""

    filename: str
    url: str | None = None
    data: bytes | None = None


@dataclass
class ShowContext:
    showtime: Showtime
    movie: Movie
    theater: Theater
    screen: Screen


async def _viewable_booking(
    session: AsyncSession, booking_id: uuid.UUID, viewer: User, *, may_read_any: bool
) -> Booking:
    booking = await session.get(Booking, booking_id)
    if booking is None or (booking.user_id != viewer.id and not may_read_any):
        raise BookingNotFound("No such booking.")
    return booking


async def _context(session: AsyncSession, showtime_id: uuid.UUID) -> ShowContext:
    row = (
        await session.execute(
            select(Showtime, Movie, Theater, Screen)
            .join(Movie, Movie.id == Showtime.movie_id)
            .join(Theater, Theater.id == Showtime.theater_id)
            .join(Screen, Screen.id == Showtime.screen_id)
            .where(Showtime.id == showtime_id)
            .options(raiseload(Movie.genres))  # not printed: no second query for them
        )
    ).one()
    return ShowContext(*row)


async def _stored_or_rendered(
    storage: Storage, key: str, filename: str, render: Callable[[], bytes]
) -> DocumentFile:
    """Serve the file under `key`, rendering and storing it first if it is not there yet.

    Two first requests at once may both render it: the bytes are the same (deterministic
    rendering), so the second write changes nothing."""
    if await storage.exists(key):
        url = await storage.download_url(key, filename)
        if url is not None:
            return DocumentFile(filename, url=url)
        stored = await storage.get(key)
        if stored is not None:
            return DocumentFile(filename, data=stored.data)
    data = await asyncio.to_thread(render)  # CPU work: off the event loop
    await storage.put(key, data, PDF)
    url = await storage.download_url(key, filename)
    return DocumentFile(filename, url=url, data=None if url is not None else data)


async def tickets_pdf(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    signer: TicketSigner,
    booking_id: uuid.UUID,
    viewer: User,
    *,
    may_read_any: bool,
) -> DocumentFile:
    """The booking's valid (and used) tickets, a page each; void ones are left out. 404 for
    anyone but the owner and staff; 409 `tickets_not_issued` when there is none."""
    issued = await tickets.booking_tickets(session, booking_id, viewer, may_read_any=may_read_any)
    printable = [ticket for ticket in issued if ticket.status != TicketStatus.VOID]
    booking = await session.get(Booking, booking_id)
    assert booking is not None  # booking_tickets found it
    if not printable:
        raise TicketsNotIssued("The booking has no valid tickets.", bookingStatus=booking.status)
    document = await _tickets_document(session, settings, signer, booking, printable)
    key = f"tickets/{booking.id}-{fingerprint(document)}.pdf"
    return await _stored_or_rendered(
        storage, key, tickets_filename(booking), lambda: render_tickets(document)
    )


def tickets_filename(booking: Booking) -> str:
    return f"tickets-{booking.reference}.pdf"


async def tickets_document(
    session: AsyncSession,
    settings: Settings,
    signer: TicketSigner,
    booking_id: uuid.UUID,
    show: ShowContext | None = None,
) -> tuple[str, TicketsDocument] | None:
    """The booking's tickets PDF as (filename, document) to render with `render_tickets`, for
    a mail attachment; None when it has no valid tickets. Reads, never stores: the file the
    API serves is stored on its first request, as always. `show`: the booking's showtime,
    movie, theater and screen when the caller has loaded them."""
    booking = await session.get(Booking, booking_id)
    if booking is None:
        return None
    printable = [
        ticket
        for ticket in await tickets.tickets_for_booking(session, booking_id)
        if ticket.status != TicketStatus.VOID
    ]
    if not printable:
        return None
    document = await _tickets_document(session, settings, signer, booking, printable, show)
    return tickets_filename(booking), document


async def _tickets_document(
    session: AsyncSession,
    settings: Settings,
    signer: TicketSigner,
    booking: Booking,
    printable: Sequence[Ticket],
    show: ShowContext | None = None,
) -> TicketsDocument:
    ctx = show or await _context(session, booking.showtime_id)
    lines = await session.execute(
        select(BookingLine.seat_id, BookingLine.seat_class).where(
            BookingLine.booking_id == booking.id
        )
    )
    classes: dict[uuid.UUID, str] = dict(lines.all())
    zone = ZoneInfo(ctx.theater.timezone)
    return TicketsDocument(
        booking_reference=booking.reference,
        movie_title=ctx.movie.title,
        age_rating=ctx.movie.rating,
        theater_name=ctx.theater.name,
        theater_location=ctx.theater.location,
        screen_name=ctx.screen.name,
        hall_type=ctx.screen.hall_type,
        start_local=ctx.showtime.start_time.astimezone(zone),
        timezone=ctx.theater.timezone,
        seller_name=settings.company_name,
        tickets=tuple(
            TicketPage(
                seat_label=ticket.seat_label,
                seat_class=classes.get(ticket.seat_id, ""),
                token=tickets.ticket_token(signer, ticket),
            )
            for ticket in printable
        ),
    )


async def invoice_pdf(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    booking_id: uuid.UUID,
    viewer: User,
    *,
    may_read_any: bool,
) -> DocumentFile:
    """The booking's invoice. 404 for anyone but the owner and staff; 409
    `invoice_not_available` for a booking that was never confirmed (it has no invoice)."""
    booking = await _viewable_booking(session, booking_id, viewer, may_read_any=may_read_any)
    invoice = await session.scalar(select(Invoice).where(Invoice.booking_id == booking.id))
    if invoice is None:
        detail = (
            f"The booking is {booking.status}: it gets an invoice when it is confirmed."
            if booking.confirmed_at is None
            else "The booking was confirmed before invoices were issued."
        )
        raise InvoiceNotAvailable(detail, bookingStatus=booking.status)
    document = await _invoice_document(session, settings, booking, invoice)
    key = f"{_invoice_pdf_prefix(invoice.year, invoice.id)}{fingerprint(document)}.pdf"
    return await _stored_or_rendered(
        storage,
        key,
        f"invoice-{invoice.invoice_number}.pdf",
        lambda: render_invoice(document),
    )


def _invoice_pdf_prefix(year: int, invoice_id: uuid.UUID) -> str:
    """Where an invoice's stored PDFs are: one per content it has had (see the module's
    docstring), each ending in its fingerprint."""
    return f"invoices/{year}/{invoice_id}-"


# Stored invoice PDFs show the customer's name and address: an erased account's are deleted
# (after the erasure commits, with retries); the next download renders the anonymised one.
FORGET_INVOICE_PDFS_JOB = "documents.forget_invoice_pdfs"


async def forget_customer_invoice_pdfs(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Once the transaction commits, delete every stored PDF of the customer's invoices."""
    invoices = await session.execute(
        select(Invoice.year, Invoice.id)
        .join(Booking, Booking.id == Invoice.booking_id)
        .where(Booking.user_id == user_id)
    )
    prefixes = [_invoice_pdf_prefix(year, invoice_id) for year, invoice_id in invoices]
    if prefixes:
        enqueue(session, FORGET_INVOICE_PDFS_JOB, prefixes=prefixes)


async def _invoice_document(
    session: AsyncSession, settings: Settings, booking: Booking, invoice: Invoice
) -> InvoiceDocument:
    ctx = await _context(session, booking.showtime_id)
    zone = ZoneInfo(ctx.theater.timezone)
    customer = await session.get(User, booking.user_id)
    assert customer is not None
    seats: Sequence[BookingLine] = (
        await session.scalars(
            select(BookingLine)
            .where(BookingLine.booking_id == booking.id)
            .order_by(BookingLine.seat_label)
        )
    ).all()
    snacks: Sequence[BookingSnack] = (
        await session.scalars(
            select(BookingSnack)
            .where(BookingSnack.booking_id == booking.id)
            .order_by(BookingSnack.name, BookingSnack.id)
        )
    ).all()
    payment = await payments.succeeded_payment(session, booking.id)
    refunds: Sequence[Refund] = (
        await session.scalars(
            select(Refund)
            .where(Refund.booking_id == booking.id, Refund.status == "succeeded")
            .order_by(Refund.created_at, Refund.id)
        )
    ).all()

    lines = [
        InvoiceLine(
            description=f"Ticket, seat {line.seat_label} ({line.seat_class})"
            + (" - refunded" if line.refunded else ""),
            quantity=1,
            unit_price=line.unit_price,
            amount=line.unit_price,
        )
        for line in seats
    ]
    lines += [
        InvoiceLine(snack.name, snack.quantity, snack.unit_price, snack.total_price)
        for snack in snacks
    ]
    discounts: list[tuple[str, Decimal]] = [
        (label, amount)
        for label, amount in (
            ("Loyalty tier discount", booking.tier_discount),
            ("Promo code discount", booking.promo_discount),
            (f"Loyalty points ({booking.points_redeemed})", booking.points_discount),
        )
        if amount
    ]
    return InvoiceDocument(
        invoice_number=invoice.invoice_number,
        issue_date=invoice.issued_at.astimezone(zone).date(),
        seller_name=settings.company_name,
        seller_address=settings.company_address,
        seller_vat_id=settings.company_vat_id,
        theater_name=ctx.theater.name,
        theater_location=ctx.theater.location,
        customer_name=customer.full_name,
        customer_email=customer.email,
        booking_reference=booking.reference,
        movie_title=ctx.movie.title,
        screen_name=ctx.screen.name,
        start_local=ctx.showtime.start_time.astimezone(zone),
        currency=booking.currency,
        lines=tuple(lines),
        subtotal=booking.total_amount,
        discounts=tuple(discounts),
        total=booking.final_amount,
        vat_rate=invoice.vat_rate,
        vat_amount=booking.tax_amount,
        payment=(
            InvoicePayment(
                provider=payment.provider,
                reference=payment.provider_ref,
                paid_at=(payment.succeeded_at or payment.created_at).astimezone(zone),
                amount=payment.amount,
            )
            if payment is not None
            else None
        ),
        refunds=tuple(
            InvoiceRefund(
                refunded_at=item.created_at.astimezone(zone),
                amount=item.amount,
                note=_refund_note(item, booking.currency),
            )
            for item in refunds
        ),
        refunded_total=booking.refunded_amount,
    )


def _refund_note(refund: Refund, currency: str) -> str:
    seats: list[Any] = list(refund.seat_labels or [])
    note = f"seats {', '.join(str(s) for s in seats)}" if seats else "refund"
    if refund.fee:
        note += f" (cancellation fee {refund.fee:,.2f} {currency} kept)"
    return note
