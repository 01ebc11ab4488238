"""Pricing errors."""

from __future__ import annotations

from typing import Any

from boxoffice.core.errors import NotFound, Unprocessable


class PricingRuleNotFound(NotFound):
    title = "Pricing rule not found"


class InvalidPricingRule(Unprocessable):
    """A rule whose fields contradict each other (checked on the whole rule, so a PATCH of one
    field is judged with the others it keeps). Carries the same `errors` list as a
    `validation_error`."""

    code = "invalid_pricing_rule"
    title = "Invalid pricing rule"

    def __init__(self, field: str, message: str, **kwargs: Any) -> None:
        super().__init__(
            f"{field}: {message}",
            errors=[{"field": field, "message": message, "type": self.code}],
            **kwargs,
        )


class UnknownCity(Unprocessable):
    code = "unknown_city"
    title = "Unknown city"


class UnknownTheater(Unprocessable):
    code = "unknown_theater"
    title = "Unknown theater"


class UnknownMovie(Unprocessable):
    code = "unknown_movie"
    title = "Unknown movie"
