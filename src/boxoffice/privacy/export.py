"""The personal data export: every row that refers to the user, as JSON-ready dicts.

Rows are turned into dicts column by column (a column added later is exported without a
change here), except the credential columns in `SECRET_COLUMNS`.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import AccountToken, LoginFailure, RefreshToken, User
from boxoffice.accounts.service import normalize_email
from boxoffice.audit.models import AuditEntry
from boxoffice.booking.models import Booking, BookingLine, Hold
from boxoffice.catalog.models import Movie
from boxoffice.concessions.models import BookingSnack
from boxoffice.core.clock import utcnow
from boxoffice.core.idempotency import IdempotencyRecord
from boxoffice.core.security import hash_token
from boxoffice.documents.models import Invoice
from boxoffice.loyalty.models import LoyaltyAccount, PointsEntry
from boxoffice.notifications import service as notifications
from boxoffice.notifications.models import Notification
from boxoffice.payments.models import Payment, Refund
from boxoffice.privacy.schemas import LoyaltyExport, PersonalDataExport, Row, StaffActivity
from boxoffice.promotions.models import PromoCode, PromoRedemption
from boxoffice.reporting.models import Report
from boxoffice.reviews.models import Review, ReviewVote
from boxoffice.scheduling.models import Showtime
from boxoffice.tickets.models import Ticket
from boxoffice.venues.models import Theater

# Credentials and provider secrets: never exported. A QR token is not stored (it is signed
# from the ticket id on demand: `GET /api/bookings/{id}/tickets`), nor exported.
SECRET_COLUMNS = frozenset(
    {
        "password_hash",
        "mfa_secret",
        "mfa_last_step",
        "token_hash",
        "client_secret",
        "approval_url",
        "pickup_code",
        "request_hash",
        "response_body",
    }
)

# Every table with a foreign key to users.id, and what erasure does with its rows. The
# export covers each one; tests/test_privacy.py fails when a table refers to users and is
# missing here, so a new kind of personal data cannot be forgotten by both.
USER_TABLES: dict[str, str] = {
    "users": "anonymised (email, name, phone, password, MFA); the row stays for accounting",
    "refresh_tokens": "deleted",
    "account_tokens": "deleted",
    "idempotency_records": "deleted (stored answers)",
    "notifications": "deleted",
    "notification_preferences": "deleted",
    "reviews": "deleted; the movie's rating and count move exactly",
    "review_votes": "deleted; the reviews' helpful counts move exactly",
    "holds": "live holds released; the rows stay (no personal data beyond the link)",
    "bookings": "pending ones cancelled (seats, promo use, stock, points come back); kept",
    "promo_redemptions": "kept with their bookings (discounts are accounting)",
    "refunds": "kept (accounting)",
    "tickets": "kept (accounting; `used_by` names the staff member who scanned)",
    "loyalty_accounts": "kept with the ledger behind the bookings' points discounts",
    "points_entries": "kept (see loyalty_accounts)",
    "reports": "kept (who asked for a report, staff only)",
}
# Tables that name the user without a foreign key: by the SHA-256 of the email.
KEYED_BY_EMAIL: dict[str, str] = {
    "login_failures": "deleted (failed sign-ins and the IPs the account signed in from)",
}


def email_key(email: str) -> str:
    """How `login_failures` names an account (accounts.lockout)."""
    return hash_token(normalize_email(email))


def plain(value: Any) -> Any:
    """A stored value as JSON: money and ids as strings, times in ISO-8601."""
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def row_of(obj: object, *, leave_out: Iterable[str] = ("user_id",), **extra: Any) -> Row:
    """The row's columns (camelCase) without credentials, plus `extra`."""
    skipped = SECRET_COLUMNS | set(leave_out)
    out: Row = {
        to_camel(attr.key): plain(getattr(obj, attr.key))
        for attr in sa_inspect(obj).mapper.column_attrs
        if attr.key not in skipped
    }
    out.update({to_camel(key): plain(value) for key, value in extra.items()})
    return out


async def _all(session: AsyncSession, statement: Any) -> Sequence[Any]:
    return (await session.scalars(statement)).all()


async def _rows(session: AsyncSession, statement: Any) -> list[Row]:
    """The statement's objects, exported (`row_of`)."""
    return [row_of(obj) for obj in await _all(session, statement)]


def _by(rows: Iterable[Any], attribute: str) -> dict[Any, list[Any]]:
    grouped: dict[Any, list[Any]] = {}
    for row in rows:
        grouped.setdefault(getattr(row, attribute), []).append(row)
    return grouped


async def _bookings(session: AsyncSession, user_id: uuid.UUID) -> tuple[list[Row], list[Row]]:
    """(seat bookings, snack preorders), newest first, each with all its lines and money."""
    rows = (
        await session.execute(
            select(Booking, Showtime.start_time, Movie.title, Theater.name)
            .join(Showtime, Showtime.id == Booking.showtime_id)
            .join(Movie, Movie.id == Showtime.movie_id)
            .join(Theater, Theater.id == Showtime.theater_id)
            .where(Booking.user_id == user_id)
            .order_by(Booking.created_at.desc(), Booking.id)
        )
    ).all()
    ids = [row.Booking.id for row in rows]
    if not ids:
        return [], []
    lines = _by(
        await _all(session, select(BookingLine).where(BookingLine.booking_id.in_(ids))),
        "booking_id",
    )
    snacks = _by(
        await _all(session, select(BookingSnack).where(BookingSnack.booking_id.in_(ids))),
        "booking_id",
    )
    tickets = _by(
        await _all(session, select(Ticket).where(Ticket.booking_id.in_(ids))), "booking_id"
    )
    payments = _by(
        await _all(session, select(Payment).where(Payment.booking_id.in_(ids))), "booking_id"
    )
    refunds = _by(
        await _all(session, select(Refund).where(Refund.booking_id.in_(ids))), "booking_id"
    )
    invoices = {
        i.booking_id: i
        for i in await _all(session, select(Invoice).where(Invoice.booking_id.in_(ids)))
    }
    promos = {
        row.PromoRedemption.booking_id: row
        for row in (
            await session.execute(
                select(PromoRedemption, PromoCode.code)
                .join(PromoCode, PromoCode.id == PromoRedemption.promo_code_id)
                .where(PromoRedemption.booking_id.in_(ids))
            )
        ).all()
    }
    seat_bookings: list[Row] = []
    preorders: list[Row] = []
    for row in rows:
        booking: Booking = row.Booking
        promo = promos.get(booking.id)
        out = row_of(
            booking,
            showtime_start=row.start_time,
            movie_title=row.title,
            theater_name=row.name,
            has_pickup_code=booking.pickup_code is not None,
            snacks=[row_of(s, leave_out=("booking_id",)) for s in snacks.get(booking.id, [])],
            payments=[row_of(p, leave_out=("booking_id",)) for p in payments.get(booking.id, [])],
            refunds=[
                row_of(r, leave_out=("booking_id", "requested_by"))
                for r in refunds.get(booking.id, [])
            ],
            invoice=(
                row_of(invoices[booking.id], leave_out=("booking_id",))
                if booking.id in invoices
                else None
            ),
            promo_code=(
                row_of(promo.PromoRedemption, leave_out=("booking_id", "user_id"), code=promo.code)
                if promo is not None
                else None
            ),
        )
        booking_lines = lines.get(booking.id, [])
        if booking_lines:
            out["seats"] = [row_of(line, leave_out=("booking_id",)) for line in booking_lines]
            out["tickets"] = [
                row_of(t, leave_out=("booking_id", "used_by")) for t in tickets.get(booking.id, [])
            ]
            seat_bookings.append(out)
        else:
            preorders.append(out)
    return seat_bookings, preorders


async def _audit_entries(
    session: AsyncSession, user_id: uuid.UUID, subjects: dict[str, Sequence[uuid.UUID]]
) -> list[Row]:
    about: list[ColumnElement[bool]] = [AuditEntry.actor_id == user_id]
    for entity_type, ids in subjects.items():
        if ids:
            about.append(
                and_(
                    AuditEntry.entity_type == entity_type,
                    AuditEntry.entity_id.in_([str(i) for i in ids]),
                )
            )
    entries = await _all(
        session,
        select(AuditEntry)
        .where(or_(false(), *about))
        .order_by(AuditEntry.created_at, AuditEntry.id),
    )
    return [row_of(entry, leave_out=()) for entry in entries]


async def build_export(session: AsyncSession, user: User) -> PersonalDataExport:
    uid = user.id
    wanted = await notifications.preferences(session, uid)
    profile = row_of(
        user,
        email_verified=user.email_verified_at is not None,
        mfa_enabled=user.mfa_enabled,
    )
    bookings, preorders = await _bookings(session, uid)
    booking_ids = [uuid.UUID(b["id"]) for b in (*bookings, *preorders)]
    payment_ids = [uuid.UUID(p["id"]) for b in (*bookings, *preorders) for p in b["payments"]]
    refund_ids = [uuid.UUID(r["id"]) for b in (*bookings, *preorders) for r in b["refunds"]]
    reviews = (
        await session.execute(
            select(Review, Movie.title)
            .join(Movie, Movie.id == Review.movie_id)
            .where(Review.user_id == uid)
            .order_by(Review.created_at, Review.id)
        )
    ).all()
    account = await session.get(LoyaltyAccount, uid)
    redemptions = (
        await session.execute(
            select(PromoRedemption, PromoCode.code)
            .join(PromoCode, PromoCode.id == PromoRedemption.promo_code_id)
            .where(PromoRedemption.user_id == uid)
            .order_by(PromoRedemption.created_at, PromoRedemption.id)
        )
    ).all()
    sign_ins = await _all(
        session,
        select(LoginFailure)
        .where(LoginFailure.account_key == email_key(user.email))
        .order_by(LoginFailure.window_started_at, LoginFailure.id),
    )
    return PersonalDataExport(
        generated_at=utcnow(),
        profile=profile,
        notification_preferences={
            "email": wanted.email,
            "sms": wanted.sms,
            "inApp": wanted.in_app,
            "locale": wanted.locale,
        },
        sessions=await _rows(
            session,
            select(RefreshToken)
            .where(RefreshToken.user_id == uid)
            .order_by(RefreshToken.created_at.desc(), RefreshToken.id),
        ),
        sign_in_records=[row_of(r, leave_out=("account_key",)) for r in sign_ins],
        account_tokens=await _rows(
            session,
            select(AccountToken)
            .where(AccountToken.user_id == uid)
            .order_by(AccountToken.created_at, AccountToken.id),
        ),
        holds=[
            row_of(h)
            for h in await _all(
                session, select(Hold).where(Hold.user_id == uid).order_by(Hold.created_at, Hold.id)
            )
        ],
        bookings=bookings,
        concession_preorders=preorders,
        loyalty=LoyaltyExport(
            account=row_of(account) if account is not None else None,
            entries=await _rows(
                session,
                select(PointsEntry)
                .where(PointsEntry.user_id == uid)
                .order_by(PointsEntry.created_at, PointsEntry.id),
            ),
        ),
        promo_redemptions=[row_of(r.PromoRedemption, code=r.code) for r in redemptions],
        reviews=[row_of(r.Review, movie_title=r.title) for r in reviews],
        helpful_votes=await _rows(
            session,
            select(ReviewVote)
            .where(ReviewVote.user_id == uid)
            .order_by(ReviewVote.created_at, ReviewVote.review_id),
        ),
        notifications=await _rows(
            session,
            select(Notification)
            .where(Notification.user_id == uid)
            .order_by(Notification.created_at, Notification.id),
        ),
        idempotency_keys=await _rows(
            session,
            select(IdempotencyRecord)
            .where(IdempotencyRecord.user_id == uid)
            .order_by(IdempotencyRecord.created_at),
        ),
        staff_activity=StaffActivity(
            refunds_requested=[
                row_of(r, leave_out=("requested_by", "seat_labels"))
                for r in await _all(
                    session,
                    select(Refund).where(Refund.requested_by == uid).order_by(Refund.created_at),
                )
            ],
            tickets_checked_in=[
                {"ticketId": str(t.id), "bookingId": str(t.booking_id), "usedAt": plain(t.used_at)}
                for t in await _all(
                    session, select(Ticket).where(Ticket.used_by == uid).order_by(Ticket.used_at)
                )
            ],
            reports_requested=[
                row_of(r, leave_out=("requested_by", "storage_key"))
                for r in await _all(
                    session,
                    select(Report).where(Report.requested_by == uid).order_by(Report.created_at),
                )
            ],
        ),
        audit_log=await _audit_entries(
            session,
            uid,
            {
                "user": [uid],
                "booking": booking_ids,
                "payment": payment_ids,
                "refund": refund_ids,
                "review": [r.Review.id for r in reviews],
            },
        ),
    )
