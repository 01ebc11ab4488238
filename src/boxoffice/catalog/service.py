"""Movie use cases: create, change, remove, look up and search the catalog."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.catalog.exceptions import MovieInUse, MovieNotFound
from boxoffice.catalog.models import Movie, MovieGenre
from boxoffice.catalog.schemas import MovieCreate, MovieStatus, MovieUpdate
from boxoffice.core.clock import utcnow
from boxoffice.core.schema import reject_empty_patch
from boxoffice.scheduling.models import Showtime

# Input field -> Movie column, where the names differ.
_COLUMNS = {"duration": "duration_minutes"}
# Text columns stored as "" when the client sends null or leaves them out.
_EMPTY_WHEN_NULL = {"description", "rating", "director"}


async def get_movie(session: AsyncSession, movie_id: uuid.UUID) -> Movie:
    movie = await session.get(Movie, movie_id)
    if movie is None:
        raise MovieNotFound(f"No movie with id {movie_id}.")
    return movie


async def create_movie(session: AsyncSession, data: MovieCreate) -> Movie:
    values = data.model_dump(by_alias=False)
    if values["status"] is None:
        released = data.release_date is None or data.release_date <= utcnow().date()
        values["status"] = MovieStatus.NOW_SHOWING if released else MovieStatus.UPCOMING
    movie = Movie(genres=[])
    _apply(movie, values)
    session.add(movie)
    await session.flush()
    return movie


async def update_movie(session: AsyncSession, movie_id: uuid.UUID, data: MovieUpdate) -> Movie:
    changes = reject_empty_patch(data.model_dump(by_alias=False, exclude_unset=True))
    movie = await get_movie(session, movie_id)
    _apply(movie, changes)
    await session.flush()
    return movie


async def delete_movie(session: AsyncSession, movie_id: uuid.UUID) -> None:
    movie = await get_movie(session, movie_id)
    if await session.scalar(select(exists().where(Showtime.movie_id == movie.id))):
        raise MovieInUse(
            "The movie has showtimes and cannot be deleted; set its status to 'ended' instead."
        )
    await session.delete(movie)
    await session.flush()


async def list_movies(
    session: AsyncSession,
    *,
    status: MovieStatus | None = None,
    genre: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[Sequence[Movie], int]:
    """One page of movies, newest release first (undated last), and the total that match."""
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        conditions.append(Movie.status == status.value)
    if genre and genre.strip():
        conditions.append(Movie.genres.any(MovieGenre.genre == genre.strip().lower()))
    if search and search.strip():
        # search_text is stored lower-cased, so a lower-cased LIKE is case-insensitive on
        # every backend and can use the trigram index on PostgreSQL; % and _ match literally.
        conditions.append(Movie.search_text.contains(search.strip().lower(), autoescape=True))

    total = await session.scalar(select(func.count()).select_from(Movie).where(*conditions))
    movies = await session.scalars(
        select(Movie)
        .where(*conditions)
        .order_by(
            Movie.release_date.is_(None),  # NULLS LAST everywhere (MySQL lacks the syntax)
            Movie.release_date.desc(),
            Movie.title,
            Movie.id,
        )
        .offset(offset)
        .limit(limit)
    )
    return movies.all(), total or 0


def _apply(movie: Movie, values: dict[str, Any]) -> None:
    for field, value in values.items():
        if field == "genres":
            _set_genres(movie, value)
        elif field == "status":
            movie.status = MovieStatus(value).value
        elif field in _EMPTY_WHEN_NULL:
            setattr(movie, field, value or "")
        else:
            setattr(movie, _COLUMNS.get(field, field), value)
    movie.search_text = " ".join([movie.title, movie.director, *movie.cast]).lower()


def _set_genres(movie: Movie, names: list[str]) -> None:
    # Keep the rows of genres that stay (same primary key), so a reorder is only updates.
    existing = {row.genre: row for row in movie.genres}
    movie.genres = [existing.get(name) or MovieGenre(genre=name) for name in names]
    for position, row in enumerate(movie.genres):
        row.position = position
