"""Erasure (`DELETE /api/me`) and the retention purge of never-verified accounts.

Erasure runs in the caller's one transaction. What accounting must keep stays: confirmed,
used and refunded bookings with their seats, snacks, tickets, payments, refunds, invoices,
promo redemptions and loyalty ledger, and the audit log. They refer to the user row, so the
row stays too, anonymised (the table `export.USER_TABLES` says what happens to each kind of
row). What only serves the customer goes: sessions, mailed tokens, notifications and
preferences, reviews and votes, stored API answers. Unpaid bookings are cancelled through
the booking use case, so seats, promo uses, snack stock and points come back as they do for
a customer's own cancellation.

Reviews are deleted rather than anonymised: their text is the customer's own words and may
name them. The movie's `reviewCount` / `averageRating` and the voted reviews' helpful counts
are moved in the same transaction under the locks the reviews feature uses (movie row, then
review row), so the aggregates stay exact.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import ColumnElement, delete, exists, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import AccountToken, LoginFailure, RefreshToken, User
from boxoffice.accounts.permissions import Role
from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.booking import service as booking_service
from boxoffice.booking.holds import lock_seat_rows
from boxoffice.booking.models import Booking, BookingStatus, Hold, HoldStatus
from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.core.idempotency import IdempotencyRecord
from boxoffice.core.security import hash_password
from boxoffice.documents import service as documents
from boxoffice.notifications.models import Notification, NotificationPreference
from boxoffice.payments.service import PaymentContext
from boxoffice.privacy.exceptions import LastAdmin
from boxoffice.privacy.export import email_key
from boxoffice.promotions.models import PromoRedemption
from boxoffice.reviews.models import Review, ReviewVote
from boxoffice.reviews.service import average
from boxoffice.scheduling.models import SeatStatus, ShowtimeSeat

log = structlog.get_logger(__name__)

ERASED_NAME = "Erased user"
ERASED_EMAIL_DOMAIN = "invalid"  # RFC 2606: never deliverable


def erased_email(user_id: uuid.UUID) -> str:
    """Unique per account (the column is unique) and never a real mailbox."""
    return f"erased-{user_id.hex}@{ERASED_EMAIL_DOMAIN}"


@dataclass(frozen=True)
class ErasureReport:
    cancelled_bookings: int
    released_holds: int
    deleted_reviews: int
    deleted_votes: int


async def _lock_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _check_not_last_admin(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Refuse to erase the last active admin. The active admins are locked (in id order,
    before the account's own row, which is one of them), so two admins erasing themselves at
    once cannot leave none: the second waits, then counts one."""
    role = await session.scalar(select(User.role).where(User.id == user_id))
    if role != Role.ADMIN:
        return
    admins = (
        await session.scalars(
            select(User.id)
            .where(User.role == Role.ADMIN, User.is_active == true())
            .order_by(User.id)
            .with_for_update()
        )
    ).all()
    if user_id in admins and len(admins) <= 1:
        raise LastAdmin("This is the last admin; appoint another one before erasing it.")


async def _release_holds(session: AsyncSession, user_id: uuid.UUID) -> int:
    """The user's live holds end and their seats are free at once (as releasing them does)."""
    live = (
        await session.execute(
            select(Hold.id, Hold.showtime_id)
            .where(Hold.user_id == user_id, Hold.status == HoldStatus.ACTIVE)
            .order_by(Hold.id)
            .with_for_update()
        )
    ).all()
    if not live:
        return 0
    hold_ids = [row.id for row in live]
    showtimes = {row.showtime_id for row in live}
    await lock_seat_rows(session, showtimes, hold_ids=hold_ids)
    await session.execute(
        update(ShowtimeSeat)
        .where(
            ShowtimeSeat.showtime_id.in_(showtimes),
            ShowtimeSeat.hold_id.in_(hold_ids),
            ShowtimeSeat.status == SeatStatus.HELD,
            ShowtimeSeat.booking_id.is_(None),
        )
        .values(status=SeatStatus.AVAILABLE, hold_id=None, held_until=None),
        execution_options={"synchronize_session": False},
    )
    await session.execute(
        update(Hold).where(Hold.id.in_(hold_ids)).values(status=HoldStatus.RELEASED),
        execution_options={"synchronize_session": False},
    )
    return len(hold_ids)


async def _cancel_pending_bookings(
    session: AsyncSession, payment_ctx: PaymentContext, user_id: uuid.UUID
) -> int:
    pending = (
        await session.scalars(
            select(Booking.id)
            .where(Booking.user_id == user_id, Booking.status == BookingStatus.PENDING)
            .order_by(Booking.id)
        )
    ).all()
    cancelled = 0
    for booking_id in pending:
        booking = await booking_service.lock_booking(session, booking_id)
        if booking.status == BookingStatus.PENDING:  # not paid or expired meanwhile
            await booking_service.cancel_pending(session, payment_ctx, booking)
            cancelled += 1
    return cancelled


async def _delete_reviews(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Delete the user's reviews, taking each visible one out of its movie's aggregates."""
    reviews = (
        await session.execute(
            select(Review.id, Review.movie_id)
            .where(Review.user_id == user_id)
            .order_by(Review.movie_id)
        )
    ).all()
    for review_id, movie_id in reviews:
        # Lock order of the reviews feature: the movie row, then the review row.
        counts = (
            await session.execute(
                select(Movie.review_count, Movie.rating_sum)
                .where(Movie.id == movie_id)
                .with_for_update()
            )
        ).one()
        review = await session.scalar(
            select(Review)
            .where(Review.id == review_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if review is None:
            continue
        if not review.hidden:
            count, rating_sum = int(counts[0]) - 1, int(counts[1]) - review.rating
            await session.execute(
                update(Movie)
                .where(Movie.id == movie_id)
                .values(
                    review_count=Movie.review_count - 1,
                    rating_sum=Movie.rating_sum - review.rating,
                    average_rating=average(rating_sum, count),
                    updated_at=Movie.updated_at,  # a review is not a catalog change
                )
                .execution_options(synchronize_session=False)
            )
        await session.execute(delete(ReviewVote).where(ReviewVote.review_id == review_id))
        await session.execute(delete(Review).where(Review.id == review_id))
    return len(reviews)


async def _delete_votes(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Take back the user's helpful votes (each review row locked, as voting does)."""
    voted = (
        await session.scalars(
            select(ReviewVote.review_id)
            .where(ReviewVote.user_id == user_id)
            .order_by(ReviewVote.review_id)
        )
    ).all()
    for review_id in voted:
        await session.execute(select(Review.id).where(Review.id == review_id).with_for_update())
        removed = await session.execute(
            delete(ReviewVote).where(
                ReviewVote.review_id == review_id, ReviewVote.user_id == user_id
            )
        )
        if removed.rowcount == 1:  # type: ignore[attr-defined]
            await session.execute(
                update(Review)
                .where(Review.id == review_id)
                .values(helpful_count=Review.helpful_count - 1, updated_at=Review.updated_at)
                .execution_options(synchronize_session=False)
            )
    return len(voted)


async def _delete_private_rows(session: AsyncSession, user: User) -> None:
    """Rows that only serve the customer: sessions and mailed tokens (every one is revoked
    with them), stored API answers, notifications and preferences, sign-in records."""
    for model in (RefreshToken, AccountToken, IdempotencyRecord, Notification):
        await session.execute(delete(model).where(model.user_id == user.id))
    await session.execute(
        delete(NotificationPreference).where(NotificationPreference.user_id == user.id)
    )
    await session.execute(
        delete(LoginFailure)
        .where(LoginFailure.account_key == email_key(user.email))
        .execution_options(synchronize_session=False)
    )


async def _remove_personal_data(
    session: AsyncSession, payment_ctx: PaymentContext, user: User
) -> ErasureReport:
    released = await _release_holds(session, user.id)
    cancelled = await _cancel_pending_bookings(session, payment_ctx, user.id)
    reviews = await _delete_reviews(session, user.id)
    votes = await _delete_votes(session, user.id)
    await _delete_private_rows(session, user)
    return ErasureReport(cancelled, released, reviews, votes)


async def _anonymise(user: User, now: dt.datetime) -> None:
    user.email = erased_email(user.id)
    user.full_name = ERASED_NAME
    user.phone = None
    # A hash of a secret nobody knows: no password signs in (and the hash stays well-formed).
    user.password_hash = await hash_password(secrets.token_urlsafe(32))
    user.password_changed_at = now
    user.mfa_enabled = False
    user.mfa_secret = None
    user.mfa_last_step = None
    user.role = Role.CUSTOMER  # no staff rights (and no longer counted as an admin)
    user.is_active = False  # every access token is refused from now on (401)
    user.erased_at = now


async def erase_user(
    session: AsyncSession,
    payment_ctx: PaymentContext,
    user_id: uuid.UUID,
    *,
    actor_kind: str = ActorKind.CUSTOMER,
    reason: str = "request",
) -> ErasureReport | None:
    """Erase the account's personal data and keep, anonymised, what accounting needs.

    409 `last_admin` for the last active admin. None if the account is gone or erased.
    """
    await _check_not_last_admin(session, user_id)
    user = await _lock_user(session, user_id)
    if user is None or user.erased_at is not None:
        return None
    report = await _remove_personal_data(session, payment_ctx, user)
    role = user.role
    await _anonymise(user, utcnow())
    await session.flush()
    await documents.forget_customer_invoice_pdfs(session, user.id)
    audit.record(
        session,
        "user.erased",
        entity_type="user",
        entity_id=user.id,
        actor_kind=actor_kind,
        actor_id=user.id if actor_kind == ActorKind.CUSTOMER else None,
        data={
            "reason": reason,
            "role": role,
            "cancelledBookings": report.cancelled_bookings,
            "releasedHolds": report.released_holds,
            "deletedReviews": report.deleted_reviews,
            "deletedVotes": report.deleted_votes,
        },
    )
    return report


# ---------------------------------------------------------------------------------------------
# Retention


@dataclass
class RetentionReport:
    deleted: int = 0
    anonymised: int = 0


def _unverified_before(cutoff: dt.datetime) -> list[ColumnElement[bool]]:
    """Customer accounts never verified, created before `cutoff`, not yet erased. Staff
    accounts are left alone (they are created verified; an admin must not vanish)."""
    return [
        User.email_verified_at.is_(None),
        User.erased_at.is_(None),
        User.role == Role.CUSTOMER,
        User.created_at < cutoff,
    ]


async def unverified_account_ids(
    session: AsyncSession, cutoff: dt.datetime, *, limit: int
) -> list[uuid.UUID]:
    return list(
        (
            await session.scalars(
                select(User.id)
                .where(*_unverified_before(cutoff))
                .order_by(User.created_at, User.id)
                .limit(limit)
            )
        ).all()
    )


async def _has_bookings(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Bookings (and the promo uses on them) are what accounting keeps of a customer."""
    return bool(
        await session.scalar(
            select(
                or_(
                    exists().where(Booking.user_id == user_id),
                    exists().where(PromoRedemption.user_id == user_id),
                )
            )
        )
    )


async def _delete_account(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Delete the row, unless another row accounting keeps still refers to it (a refund or a
    check-in the account made: the foreign key refuses, and the savepoint undoes the try)."""
    try:
        async with session.begin_nested():
            # Holds refer to the user without a cascade; loyalty rows cascade, reports are
            # set null by their foreign keys.
            await session.execute(delete(Hold).where(Hold.user_id == user_id))
            await session.execute(delete(User).where(User.id == user_id))
    except IntegrityError:
        return False
    return True


async def purge_unverified(
    session: AsyncSession, payment_ctx: PaymentContext, user_id: uuid.UUID, cutoff: dt.datetime
) -> str | None:
    """Delete one never-verified account, or anonymise it when accounting needs its rows:
    "deleted", "anonymised", or None when it no longer qualifies (verified meanwhile)."""
    user = await _lock_user(session, user_id)
    if user is None:
        return None
    still = (
        user.email_verified_at is None
        and user.erased_at is None
        and user.role == Role.CUSTOMER
        and user.created_at < cutoff
    )
    if not still:
        return None
    if await _has_bookings(session, user_id):
        await erase_user(
            session, payment_ctx, user_id, actor_kind=ActorKind.SYSTEM, reason="retention"
        )
        return "anonymised"
    report = await _remove_personal_data(session, payment_ctx, user)
    if not await _delete_account(session, user_id):
        await erase_user(
            session, payment_ctx, user_id, actor_kind=ActorKind.SYSTEM, reason="retention"
        )
        return "anonymised"
    session.expunge(user)
    audit.record(
        session,
        "user.purged",
        entity_type="user",
        entity_id=user_id,
        actor_kind=ActorKind.SYSTEM,
        data={
            "reason": "retention",
            "releasedHolds": report.released_holds,
            "deletedReviews": report.deleted_reviews,
            "deletedVotes": report.deleted_votes,
        },
    )
    return "deleted"
