"""Movies and their genres."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from boxoffice.core.db import Base, IdMixin, TimestampMixin


class Movie(IdMixin, TimestampMixin, Base):
    __tablename__ = "movies"
    __table_args__ = (
        # Substring search (ILIKE '%term%') over title, director and cast uses a trigram index
        # on PostgreSQL; other backends scan the (small) table.
        Index(
            "ix_movies_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
        Index("ix_movies_status_release_date", "status", "release_date"),
    )

    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    duration_minutes: Mapped[int]
    rating: Mapped[str] = mapped_column(String(16), default="")  # age rating, checked at the door
    director: Mapped[str] = mapped_column(String(200), default="")
    cast: Mapped[list[Any]] = mapped_column(default=list)
    release_date: Mapped[dt.date | None] = mapped_column(Date)
    language: Mapped[str | None] = mapped_column(String(16))  # original language, e.g. "en"
    poster_url: Mapped[str | None] = mapped_column(String(500))
    backdrop_url: Mapped[str | None] = mapped_column(String(500))
    trailer_url: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="upcoming")
    # Lower-cased "title director cast..." kept in step by the service for search.
    search_text: Mapped[str] = mapped_column(Text, default="")
    # Over the visible reviews, kept in step by boxoffice.reviews in the review's transaction
    # (movie row locked, relative increments): count, sum of ratings, sum/count to two places.
    average_rating: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    review_count: Mapped[int] = mapped_column(default=0)
    rating_sum: Mapped[int] = mapped_column(default=0, server_default="0")

    genres: Mapped[list[MovieGenre]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="MovieGenre.position"
    )

    @property
    def genre_names(self) -> list[str]:
        return [g.genre for g in self.genres]


class MovieGenre(Base):
    __tablename__ = "movie_genres"

    movie_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True
    )
    genre: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(default=0)


@dataclass(frozen=True, slots=True)
class ListedMovie:
    """A movie as the catalog lists it: its columns, read without building an ORM object."""

    genre_names: list[str]
    id: uuid.UUID
    title: str
    description: str
    duration_minutes: int
    rating: str
    director: str
    cast: list[Any]
    release_date: dt.date | None
    language: str | None
    poster_url: str | None
    backdrop_url: str | None
    trailer_url: str | None
    status: str
    average_rating: Decimal | None
    review_count: int
