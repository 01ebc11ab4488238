"""Review use cases: post, edit, list, vote helpful, moderate; the movie's aggregates.

Aggregates. `movies.review_count`, `movies.rating_sum` and `movies.average_rating` describe the
visible (not hidden) reviews and are changed in the same transaction as the review. Every
change that moves them first locks the movie row (`SELECT ... FOR UPDATE`; on SQLite the write
turn serialises writers), then reads the review, so concurrent posts, edits and hides of one
movie's reviews apply one after the other and none is lost; the counters are then moved with
relative increments. The lock is taken before the review row is written: on InnoDB a
review insert takes a shared lock on the movie row (foreign key), and two posters that each
held it and then asked for the exclusive one would deadlock.

Lock order, everywhere: movie row, then review row. A helpful vote locks only the review row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import Row, Select, delete, exists, false, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import User
from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.booking.models import Booking
from boxoffice.catalog.exceptions import MovieNotFound
from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.core.schema import reject_empty_patch
from boxoffice.reviews.exceptions import (
    AlreadyReviewed,
    OwnReviewVote,
    ReviewNotAllowed,
    ReviewNotFound,
)
from boxoffice.reviews.models import Review, ReviewVote
from boxoffice.reviews.schemas import ModerationIn, ReviewCreate, ReviewSort, ReviewUpdate
from boxoffice.scheduling.models import Showtime
from boxoffice.tickets.models import Ticket, TicketStatus

_CENT = Decimal("0.01")


def average(rating_sum: int, review_count: int) -> Decimal | None:
    """The average rating to two places (half up), None without reviews."""
    if review_count <= 0:
        return None
    return (Decimal(rating_sum) / Decimal(review_count)).quantize(_CENT, rounding=ROUND_HALF_UP)


async def _require_movie(session: AsyncSession, movie_id: uuid.UUID) -> None:
    if not await session.scalar(select(exists().where(Movie.id == movie_id))):
        raise MovieNotFound(f"No movie with id {movie_id}.")


async def _lock_movie(session: AsyncSession, movie_id: uuid.UUID) -> tuple[int, int]:
    """Lock the movie row for the rest of the transaction; its (review_count, rating_sum)."""
    row = (
        await session.execute(
            select(Movie.review_count, Movie.rating_sum)
            .where(Movie.id == movie_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise MovieNotFound(f"No movie with id {movie_id}.")
    return int(row[0]), int(row[1])


async def _move_aggregates(
    session: AsyncSession,
    movie_id: uuid.UUID,
    locked: tuple[int, int],
    *,
    count: int,
    rating: int,
) -> None:
    """Add `count` reviews and `rating` points to the movie (the row is locked: `locked` are
    its current values, so the new average is exact)."""
    if count == 0 and rating == 0:
        return
    review_count, rating_sum = locked
    await session.execute(
        update(Movie)
        .where(Movie.id == movie_id)
        .values(
            review_count=Movie.review_count + count,
            rating_sum=Movie.rating_sum + rating,
            average_rating=average(rating_sum + rating, review_count + count),
            updated_at=Movie.updated_at,  # a review is not a catalog change
        )
        .execution_options(synchronize_session=False)
    )


async def has_used_ticket(session: AsyncSession, user_id: uuid.UUID, movie_id: uuid.UUID) -> bool:
    """The user holds a ticket checked in at the door for some showtime of the movie."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    Ticket.status == TicketStatus.USED,
                    Ticket.booking_id == Booking.id,
                    Booking.user_id == user_id,
                    Ticket.showtime_id == Showtime.id,
                    Showtime.movie_id == movie_id,
                )
            )
        )
    )


async def post_review(
    session: AsyncSession, movie_id: uuid.UUID, user: User, data: ReviewCreate
) -> Review:
    await _require_movie(session, movie_id)
    if not await has_used_ticket(session, user.id, movie_id):
        raise ReviewNotAllowed(
            "Only customers whose ticket for this movie was checked in may review it.",
            movieId=str(movie_id),
        )
    locked = await _lock_movie(session, movie_id)
    existing = await session.scalar(
        select(Review.id).where(Review.movie_id == movie_id, Review.user_id == user.id)
    )
    if existing is not None:
        raise AlreadyReviewed(
            "You have already reviewed this movie; edit that review instead.",
            reviewId=str(existing),
        )
    review = Review(
        movie_id=movie_id,
        user_id=user.id,
        rating=data.rating,
        text=data.text,
        hidden=False,
        helpful_count=0,
    )
    session.add(review)
    try:
        await session.flush()
    except IntegrityError:  # the unique (movie_id, user_id): a concurrent post won
        raise AlreadyReviewed("You have already reviewed this movie.") from None
    await _move_aggregates(session, movie_id, locked, count=1, rating=data.rating)
    return review


async def _locked_review(session: AsyncSession, statement: Select[Review]) -> Review | None:
    return await session.scalar(
        statement.with_for_update().execution_options(populate_existing=True)
    )


async def edit_review(
    session: AsyncSession,
    movie_id: uuid.UUID,
    review_id: uuid.UUID,
    user: User,
    data: ReviewUpdate,
) -> Review:
    """The author changes rating and/or text; anyone else gets a 404 (not theirs)."""
    changes = reject_empty_patch(data.model_dump(by_alias=False, exclude_unset=True))
    locked = await _lock_movie(session, movie_id)
    review = await _locked_review(
        session, select(Review).where(Review.id == review_id, Review.movie_id == movie_id)
    )
    if review is None or review.user_id != user.id:
        raise ReviewNotFound(f"No review of yours with id {review_id}.")
    before = review.rating
    if "rating" in changes:
        review.rating = changes["rating"]
    if "text" in changes:
        review.text = changes["text"]
    review.edited_at = utcnow()
    await session.flush()
    if not review.hidden:
        await _move_aggregates(session, movie_id, locked, count=0, rating=review.rating - before)
    return review


async def my_review(session: AsyncSession, movie_id: uuid.UUID, user: User) -> Review:
    await _require_movie(session, movie_id)
    review = await session.scalar(
        select(Review).where(Review.movie_id == movie_id, Review.user_id == user.id)
    )
    if review is None:
        raise ReviewNotFound("You have not reviewed this movie.")
    return review


def _ordered(statement: Select[Review, str], sort: ReviewSort) -> Select[Review, str]:
    if sort is ReviewSort.HELPFUL:
        return statement.order_by(
            Review.helpful_count.desc(), Review.created_at.desc(), Review.id.desc()
        )
    return statement.order_by(Review.created_at.desc(), Review.id.desc())


async def list_reviews(
    session: AsyncSession,
    movie_id: uuid.UUID,
    *,
    sort: ReviewSort = ReviewSort.NEWEST,
    include_hidden: bool = False,
    offset: int = 0,
    limit: int = 20,
) -> tuple[Sequence[Row[Review, str]], int]:
    """One page of the movie's reviews with their authors' names, and the total."""
    await _require_movie(session, movie_id)
    conditions = [Review.movie_id == movie_id]
    if not include_hidden:
        conditions.append(Review.hidden == false())
    total = await session.scalar(select(func.count()).select_from(Review).where(*conditions))
    rows = await session.execute(
        _ordered(
            select(Review, User.full_name).join(User, User.id == Review.user_id).where(*conditions),
            sort,
        )
        .offset(offset)
        .limit(limit)
    )
    return rows.all(), total or 0


async def list_for_moderation(
    session: AsyncSession,
    *,
    hidden: bool | None = None,
    movie_id: uuid.UUID | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[Sequence[Row[Review, str]], int]:
    """Every movie's reviews, newest first, for staff."""
    conditions = []
    if hidden is not None:
        conditions.append(Review.hidden == hidden)
    if movie_id is not None:
        conditions.append(Review.movie_id == movie_id)
    total = await session.scalar(select(func.count()).select_from(Review).where(*conditions))
    rows = await session.execute(
        select(Review, User.full_name)
        .join(User, User.id == Review.user_id)
        .where(*conditions)
        .order_by(Review.created_at.desc(), Review.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return rows.all(), total or 0


async def author_of(session: AsyncSession, review: Review) -> str:
    name = await session.scalar(select(User.full_name).where(User.id == review.user_id))
    return name or ""


async def vote_helpful(
    session: AsyncSession, movie_id: uuid.UUID, review_id: uuid.UUID, user: User, *, helpful: bool
) -> Review:
    """Add (or with `helpful=False` take back) the user's helpful vote; idempotent both ways."""
    review = await _locked_review(
        session,
        select(Review).where(
            Review.id == review_id, Review.movie_id == movie_id, Review.hidden == false()
        ),
    )
    if review is None:
        raise ReviewNotFound(f"No review with id {review_id}.")
    if review.user_id == user.id:
        raise OwnReviewVote("You cannot vote for your own review.")
    # The review row is locked: votes on it apply one at a time, so this check holds.
    voted = await session.scalar(
        select(exists().where(ReviewVote.review_id == review.id, ReviewVote.user_id == user.id))
    )
    if helpful and not voted:
        session.add(ReviewVote(review_id=review.id, user_id=user.id))
        review.helpful_count += 1
        await session.flush()
    elif not helpful and voted:
        await session.execute(
            delete(ReviewVote).where(
                ReviewVote.review_id == review.id, ReviewVote.user_id == user.id
            )
        )
        review.helpful_count -= 1
        await session.flush()
    return review


async def moderate(
    session: AsyncSession, review_id: uuid.UUID, staff: User, data: ModerationIn
) -> Review:
    """Hide or show a review; a change moves the movie's aggregates and is audited."""
    movie_id = await session.scalar(select(Review.movie_id).where(Review.id == review_id))
    if movie_id is None:
        raise ReviewNotFound(f"No review with id {review_id}.")
    locked = await _lock_movie(session, movie_id)
    review = await _locked_review(session, select(Review).where(Review.id == review_id))
    if review is None:  # deleted meanwhile (its movie was)
        raise ReviewNotFound(f"No review with id {review_id}.")
    if review.hidden == data.hidden:
        return review  # already so: nothing changes, nothing to audit
    review.hidden = data.hidden
    review.hidden_at = utcnow() if data.hidden else None
    review.hidden_by = staff.id if data.hidden else None
    await session.flush()
    sign = -1 if data.hidden else 1
    await _move_aggregates(session, movie_id, locked, count=sign, rating=sign * review.rating)
    audit.record(
        session,
        "review.hidden" if data.hidden else "review.shown",
        entity_type="review",
        entity_id=review.id,
        actor_kind=ActorKind.STAFF,
        actor_id=staff.id,
        data={
            "movieId": str(movie_id),
            "authorId": str(review.user_id),
            "rating": review.rating,
            "reason": data.reason,
        },
    )
    return review
