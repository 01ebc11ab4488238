"""Loyalty errors."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, NotFound, Unprocessable


class InsufficientPoints(Unprocessable):
    """Carries `balance` (what the customer has) and `requested`."""

    code = "points_insufficient"
    title = "Not enough points"


class InvalidPoints(Unprocessable):
    code = "points_invalid"
    title = "Invalid number of points"


class PointsAlreadyRedeemed(Conflict):
    code = "points_already_redeemed"
    title = "Points already redeemed on this booking"


class BookingNotFound(NotFound):
    title = "Booking not found"
