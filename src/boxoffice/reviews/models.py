"""Reviews and helpful votes."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, TimestampMixin, UTCDateTime


class Review(IdMixin, TimestampMixin, Base):
    """One customer's review of one movie (unique): a rating 1..5 and a text.

    A hidden review (staff moderation) is not listed to customers and does not count in the
    movie's `review_count` / `rating_sum` / `average_rating`."""

    __tablename__ = "reviews"
    __table_args__ = (
        # One review per customer and movie; also the index for "this movie's reviews".
        UniqueConstraint("movie_id", "user_id"),
        Index("ix_reviews_movie_newest", "movie_id", "hidden", "created_at"),
        Index("ix_reviews_movie_helpful", "movie_id", "hidden", "helpful_count"),
        Index("ix_reviews_user", "user_id"),
    )

    movie_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    rating: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    hidden: Mapped[bool] = mapped_column(default=False)
    hidden_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    hidden_by: Mapped[uuid.UUID | None]  # a staff user's id (plain: kept if the account goes)
    helpful_count: Mapped[int] = mapped_column(default=0)
    edited_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ReviewVote(Base):
    """A customer found a review helpful (once per customer and review)."""

    __tablename__ = "review_votes"
    __table_args__ = (Index("ix_review_votes_user", "user_id"),)

    review_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reviews.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
