"""Review request and response bodies."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from boxoffice.core.schema import CamelModel, InputModel, Pagination
from boxoffice.reviews.models import Review

TEXT_MIN = 2
TEXT_MAX = 2000

# Newlines and tabs are allowed in a review; other control characters are not (PostgreSQL
# cannot store NUL, and none belong in text shown to others).
_CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _review_text(value: str) -> str:
    if _CONTROL_BUT_NEWLINES.search(value):
        raise ValueError("must not contain control characters")
    return value.replace("\r\n", "\n")


# strict: a JSON "5", 4.5 or true is not a rating
Rating = Annotated[int, Field(ge=1, le=5, strict=True, description="1 (worst) to 5 (best)")]
ReviewText = Annotated[
    str,
    Field(
        min_length=TEXT_MIN,
        max_length=TEXT_MAX,
        description=f"{TEXT_MIN}..{TEXT_MAX} characters after trimming; newlines allowed",
    ),
    AfterValidator(_review_text),
]


class ReviewSort(StrEnum):
    NEWEST = "newest"
    HELPFUL = "helpful"


class ReviewCreate(InputModel):
    rating: Rating
    text: ReviewText


class ReviewUpdate(InputModel):
    """A partial update of one's own review: only the fields sent change (neither may be null)."""

    rating: Rating | None = None
    text: ReviewText | None = None

    @model_validator(mode="after")
    def _no_null(self) -> Self:
        nulled = [
            name
            for name in ("rating", "text")
            if name in self.model_fields_set and getattr(self, name) is None
        ]
        if nulled:
            raise ValueError(f"may not be null: {', '.join(nulled)}")
        return self


class ModerationIn(InputModel):
    hidden: bool = Field(strict=True)
    reason: Annotated[str, Field(max_length=500)] | None = None


def author_name(full_name: str) -> str:
    """What others see of the author: the first name and the last name's initial."""
    parts = full_name.split()
    if not parts:
        return "Anonymous"
    if len(parts) == 1:
        return parts[0]
    return f"{parts[0]} {parts[-1][0]}."


class ReviewOut(CamelModel):
    id: uuid.UUID
    movie_id: uuid.UUID
    author_name: str
    rating: int
    text: str
    helpful_count: int
    hidden: bool
    mine: bool = Field(description="Written by the caller (false for anonymous callers)")
    created_at: dt.datetime
    edited_at: dt.datetime | None

    @classmethod
    def of(cls, review: Review, full_name: str, viewer_id: uuid.UUID | None) -> ReviewOut:
        return cls(
            id=review.id,
            movie_id=review.movie_id,
            author_name=author_name(full_name),
            rating=review.rating,
            text=review.text,
            helpful_count=review.helpful_count,
            hidden=review.hidden,
            mine=viewer_id is not None and review.user_id == viewer_id,
            created_at=review.created_at,
            edited_at=review.edited_at,
        )


class ReviewList(CamelModel):
    reviews: list[ReviewOut]
    pagination: Pagination


class HelpfulOut(CamelModel):
    review_id: uuid.UUID
    helpful_count: int
    voted: bool = Field(description="The caller's vote is counted")
