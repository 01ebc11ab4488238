"""Movie use cases: create, change, remove, look up and search the catalog."""

from __future__ import annotations

import uuid
from dataclasses import fields
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, exists, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.catalog.exceptions import MovieInUse, MovieNotFound
from boxoffice.catalog.models import ListedMovie, Movie, MovieGenre
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


_LISTED_COLUMNS = [
    getattr(Movie, field.name) for field in fields(ListedMovie) if field.name != "genre_names"
]
_LIKE_ESCAPE = "/"


# PostgreSQL: each listed movie's genres, in order, as a column of the page's row.
_GENRE_NAMES = (
    select(func.array_agg(aggregate_order_by(MovieGenre.genre, MovieGenre.position)))
    .where(MovieGenre.movie_id == Movie.id)
    .scalar_subquery()
    .label("genre_names")
)


@cache
def _page_statement(
    with_genres: bool, by_status: bool, by_genre: bool, by_search: bool
) -> Select[Any]:
    """A page of the movies that match, each row with (`with_genres`) its genres and the
    total that match; built once for each combination of filters (building and keying a
    statement cost about as much CPU as running it), the values bound at each call."""
    conditions: list[ColumnElement[bool]] = []
    if by_status:
        conditions.append(Movie.status == bindparam("status"))
    if by_genre:
        conditions.append(Movie.genres.any(MovieGenre.genre == bindparam("genre")))
    if by_search:
        # search_text is stored lower-cased, so a lower-cased LIKE is case-insensitive on
        # every backend and can use the trigram index on PostgreSQL.
        conditions.append(Movie.search_text.contains(bindparam("search"), escape=_LIKE_ESCAPE))
    return (
        select(
            *_LISTED_COLUMNS,
            *([_GENRE_NAMES] if with_genres else []),
            func.count().over().label("total"),
        )
        .where(*conditions)
        .order_by(
            Movie.release_date.is_(None),  # NULLS LAST everywhere (MySQL lacks the syntax)
            Movie.release_date.desc(),
            Movie.title,
            Movie.id,
        )
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )


_GENRES_OF_PAGE = (
    select(MovieGenre.movie_id, MovieGenre.genre)
    .where(MovieGenre.movie_id.in_(bindparam("movies", expanding=True)))
    .order_by(MovieGenre.movie_id, MovieGenre.position)
)


async def list_movies(
    session: AsyncSession,
    *,
    status: MovieStatus | None = None,
    genre: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[ListedMovie], int]:
    """One page of movies, newest release first (undated last), and the total that match:
    the page with the total (on PostgreSQL with each movie's genres), then elsewhere the
    page's genres, read as rows (the ORM's entities and its selectin load of the genres cost
    more than the rest of the request)."""
    genre = genre.strip().lower() if genre else ""
    search = search.strip().lower() if search else ""
    values: dict[str, Any] = {"offset": offset, "limit": limit}
    if status is not None:
        values["status"] = status.value
    if genre:
        values["genre"] = genre
    if search:  # % and _ match literally
        values["search"] = "".join(
            _LIKE_ESCAPE + char if char in f"%_{_LIKE_ESCAPE}" else char for char in search
        )
    with_genres = session.get_bind().dialect.name == "postgresql"
    statement = _page_statement(with_genres, status is not None, bool(genre), bool(search))
    page = (await session.execute(statement, values)).all()
    if not page:  # nothing matches, or a page past the end (which still tells the total)
        total = offset and await session.scalar(
            select(func.count()).select_from(statement.limit(None).offset(None).subquery()),
            values,
        )
        return [], total or 0
    if with_genres:
        return [ListedMovie(row.genre_names or [], *row[:-2]) for row in page], page[0].total
    genres: dict[uuid.UUID, list[str]] = {row.id: [] for row in page}
    for movie_id, name in await session.execute(_GENRES_OF_PAGE, {"movies": list(genres)}):
        genres[movie_id].append(name)
    return [ListedMovie(genres[row.id], *row[:-1]) for row in page], page[0].total


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
