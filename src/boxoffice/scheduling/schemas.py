"""Showtime and seat-map request and response bodies."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from boxoffice.core.schema import AwareDatetime, CamelModel, InputModel, Money, Pagination

if TYPE_CHECKING:
    from boxoffice.scheduling.service import ShowtimeInfo

# PostgreSQL cannot store NUL, and no control character belongs in a label or a reason.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Format = Literal["2D", "3D", "IMAX", "4DX"]
ShowtimeStatus = Literal["scheduled", "cancelled"]
LanguageCode = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9-]+$")]
SeatLabel = Annotated[str, Field(min_length=1, max_length=12), AfterValidator(_one_line)]
SeatLabels = Annotated[list[SeatLabel], Field(min_length=1, max_length=200)]


def _plausible_year(value: dt.datetime) -> dt.datetime:
    # Far-away years overflow date arithmetic and some backends' column ranges.
    if not 1970 <= value.year <= 9000:
        raise ValueError("year out of range")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# Query filters: an offset is optional there (naive means UTC).
QueryDatetime = Annotated[dt.datetime, AfterValidator(_plausible_year)]


class ShowtimeCreate(InputModel):
    movie_id: uuid.UUID
    screen_id: uuid.UUID
    start_time: AwareDatetime
    base_price: Money
    format: Format = "2D"
    language: LanguageCode | None = None
    subtitles: LanguageCode | None = None


class ShowtimeUpdate(InputModel):
    """Omitted fields stay; language and subtitles may be cleared with null."""

    start_time: AwareDatetime | None = None
    base_price: Money | None = None
    format: Format | None = None
    language: LanguageCode | None = None
    subtitles: LanguageCode | None = None
    status: ShowtimeStatus | None = None
    screen_id: uuid.UUID | None = Field(
        default=None, description="Only the current screen is accepted: showtimes do not move"
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nullable = {"language", "subtitles"}
        nulls = sorted(
            name for name in self.model_fields_set - nullable if getattr(self, name) is None
        )
        if nulls:
            raise ValueError(f"may not be null: {', '.join(nulls)}")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ShowtimeOut(CamelModel):
    id: uuid.UUID
    movie_id: uuid.UUID
    screen_id: uuid.UUID
    theater_id: uuid.UUID
    start_time: dt.datetime
    end_time: dt.datetime
    base_price: Money
    currency: str
    available_seats: int
    total_seats: int
    hall_type: str
    format: str
    language: str | None
    subtitles: str | None
    status: str

    @classmethod
    def of(cls, info: ShowtimeInfo) -> ShowtimeOut:
        s = info.showtime
        return cls(
            id=s.id,
            movie_id=s.movie_id,
            screen_id=s.screen_id,
            theater_id=s.theater_id,
            start_time=s.start_time,
            end_time=s.end_time,
            base_price=s.base_price,
            currency=s.currency,
            available_seats=info.available_seats,
            total_seats=info.total_seats,
            hall_type=info.hall_type,
            format=s.format,
            language=s.language,
            subtitles=s.subtitles,
            status=s.status,
        )


class ShowtimeList(CamelModel):
    showtimes: list[ShowtimeOut]


class ShowtimePage(CamelModel):
    showtimes: list[ShowtimeOut]
    pagination: Pagination


class MapSeat(CamelModel):
    seat_id: uuid.UUID
    label: str
    number: int
    seat_class: str = Field(alias="class")
    position: int
    status: Literal["available", "held", "booked", "blocked"]
    price: Money
    held_by_you: bool = Field(default=False, description="Held by the caller's own hold")


class MapRow(CamelModel):
    row: str
    seats: list[MapSeat]


class SeatMapOut(CamelModel):
    showtime_id: uuid.UUID
    screen_id: uuid.UUID
    hall_type: str
    currency: str
    rows: list[MapRow]


class BlockSeats(InputModel):
    seat_numbers: SeatLabels
    reason: Annotated[str, Field(max_length=200), AfterValidator(_one_line)] | None = None


class UnblockSeats(InputModel):
    seat_numbers: SeatLabels


class SeatStateChange(CamelModel):
    showtime_id: uuid.UUID
    seats: list[str]
    status: Literal["blocked", "available"]
