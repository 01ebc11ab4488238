"""Promo code errors."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from boxoffice.core.errors import Conflict, NotFound, Unprocessable


class PromoReason(StrEnum):
    NOT_FOUND = "not_found"
    INACTIVE = "inactive"
    NOT_STARTED = "not_started"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"
    CUSTOMER_LIMIT = "customer_limit"
    MIN_ORDER = "min_order"
    CURRENCY = "currency"
    MOVIE = "movie"
    THEATER = "theater"
    DAY = "day"
    FIRST_BOOKING_ONLY = "first_booking_only"


_MESSAGES = {
    PromoReason.NOT_FOUND: "There is no such promo code.",
    PromoReason.INACTIVE: "The promo code is no longer active.",
    PromoReason.NOT_STARTED: "The promo code is not valid yet.",
    PromoReason.EXPIRED: "The promo code has expired.",
    PromoReason.EXHAUSTED: "The promo code has been used up.",
    PromoReason.CUSTOMER_LIMIT: "You have used this promo code as often as it allows.",
    PromoReason.MIN_ORDER: "The order is below the promo code's minimum.",
    PromoReason.CURRENCY: "The promo code does not apply to orders in this currency.",
    PromoReason.MOVIE: "The promo code does not apply to this movie.",
    PromoReason.THEATER: "The promo code does not apply at this theater.",
    PromoReason.DAY: "The promo code does not apply on this day of the week.",
    PromoReason.FIRST_BOOKING_ONLY: "The promo code is for a first booking only.",
}


class PromoInvalid(Unprocessable):
    """A promo code that cannot be applied to this order; `reason` says why."""

    code = "promo_invalid"
    title = "The promo code cannot be used"

    def __init__(self, reason: PromoReason, detail: str | None = None, **extra: Any) -> None:
        self.reason = reason
        super().__init__(detail or _MESSAGES[reason], reason=reason.value, **extra)


class PromoCodeNotFound(NotFound):
    title = "No such promo code"


class PromoCodeTaken(Conflict):
    code = "promo_code_taken"
    title = "A promo code with this code exists"


class UnknownReferences(Unprocessable):
    code = "unknown_references"
    title = "Unknown movies or theaters"
