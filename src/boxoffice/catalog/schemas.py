"""Movie request and response bodies."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, Field, HttpUrl, TypeAdapter, ValidationError, model_validator

from boxoffice.catalog.models import ListedMovie, Movie
from boxoffice.core.schema import CamelModel, InputModel, Pagination, refuse_nulls


class MovieStatus(StrEnum):
    NOW_SHOWING = "now_showing"
    UPCOMING = "upcoming"
    ENDED = "ended"


# Control characters are refused: PostgreSQL cannot store NUL, and none belong in a title.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _paragraphs(value: str) -> str:
    if _CONTROL_BUT_NEWLINES.search(value):
        raise ValueError("must not contain control characters")
    return value


def _genre(value: str) -> str:
    value = one_line(value).lower()
    if len(value) > 40:  # lower-casing may lengthen a string
        raise ValueError("a genre has at most 40 characters")
    return value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _http_url(value: str) -> str:
    # Validated as a URL but stored as given (pydantic would normalise it, e.g. add a "/").
    try:
        _HTTP_URL.validate_python(value)
    except ValidationError:
        raise ValueError("must be an http(s) URL") from None
    return value


OneLine = Annotated[str, AfterValidator(one_line)]
Title = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(one_line)]
Description = Annotated[str, Field(max_length=10_000), AfterValidator(_paragraphs)]
# strict: a JSON true or "90" is not a running time
Duration = Annotated[int, Field(ge=1, le=600, strict=True, description="Running time in minutes")]
AgeRating = Annotated[
    str, Field(max_length=16, examples=["PG-13", "FSK 12"]), AfterValidator(one_line)
]
Genre = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_genre)]
Genres = Annotated[
    list[Genre],
    Field(max_length=10, description="Lower-cased; duplicates dropped, order kept"),
    AfterValidator(_unique),
]
PersonName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(one_line)]
Director = Annotated[str, Field(max_length=200), AfterValidator(one_line)]
Cast = Annotated[list[PersonName], Field(max_length=50)]
ReleaseDate = Annotated[dt.date, Field(ge=dt.date(1870, 1, 1))]
Language = Annotated[
    str,
    Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$", max_length=16, examples=["en"]),
]
Url = Annotated[str, Field(max_length=500), AfterValidator(_http_url)]


class MovieCreate(InputModel):
    title: Title
    description: Description | None = None
    duration: Duration
    rating: AgeRating | None = None
    genres: Genres = Field(default_factory=list)
    cast: Cast = Field(default_factory=list)
    director: Director | None = None
    release_date: ReleaseDate | None = None
    language: Language | None = None
    poster_url: Url | None = None
    backdrop_url: Url | None = None
    trailer_url: Url | None = None
    status: MovieStatus | None = Field(
        default=None,
        description="Default: upcoming if the release date is in the future, else now_showing",
    )


# Columns that cannot be empty: a PATCH may leave them out but not set them to null.
_REQUIRED_IN_PATCH = ("title", "duration", "genres", "cast", "status")


class MovieUpdate(InputModel):
    """A partial update: only the fields sent are changed; null clears an optional field."""

    title: Title | None = None
    description: Description | None = None
    duration: Duration | None = None
    rating: AgeRating | None = None
    genres: Genres | None = None
    cast: Cast | None = None
    director: Director | None = None
    release_date: ReleaseDate | None = None
    language: Language | None = None
    poster_url: Url | None = None
    backdrop_url: Url | None = None
    trailer_url: Url | None = None
    status: MovieStatus | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        refuse_nulls(self, _REQUIRED_IN_PATCH)
        return self


class MovieOut(CamelModel):
    id: uuid.UUID
    title: str
    description: str
    duration: int = Field(description="Running time in minutes")
    rating: str
    genres: list[str]
    cast: list[str]
    director: str
    release_date: dt.date | None
    poster_url: str | None
    backdrop_url: str | None
    trailer_url: str | None
    status: MovieStatus
    language: str | None
    average_rating: float | None
    review_count: int

    @classmethod
    def of(cls, movie: Movie | ListedMovie) -> MovieOut:
        return cls(
            id=movie.id,
            title=movie.title,
            description=movie.description,
            duration=movie.duration_minutes,
            rating=movie.rating,
            genres=movie.genre_names,
            cast=movie.cast,
            director=movie.director,
            release_date=movie.release_date,
            poster_url=movie.poster_url,
            backdrop_url=movie.backdrop_url,
            trailer_url=movie.trailer_url,
            status=MovieStatus(movie.status),
            language=movie.language,
            average_rating=(
                float(movie.average_rating) if movie.average_rating is not None else None
            ),
            review_count=movie.review_count,
        )


class MovieList(CamelModel):
    movies: list[MovieOut]
    pagination: Pagination
