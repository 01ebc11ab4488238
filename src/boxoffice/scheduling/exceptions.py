"""Scheduling errors: showtimes, overlaps and per-showtime seat states."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, NotFound, Unprocessable


class ShowtimeNotFound(NotFound):
    pass


class ScreenBusy(Conflict):
    code = "screen_busy"
    title = "The screen is already in use at that time"


class ShowtimeHasSales(Conflict):
    code = "showtime_has_sales"
    title = "The showtime has held or sold seats"


class SeatsUnavailable(Conflict):
    code = "seats_unavailable"
    title = "Some seats are not available"


class SeatsNotBlocked(Conflict):
    code = "seats_not_blocked"
    title = "Some seats are not blocked"


class UnknownSeats(Unprocessable):
    code = "unknown_seats"
    title = "Some seats do not exist in this hall"


class StartInPast(Unprocessable):
    code = "start_in_past"
    title = "The start time has passed"


class StartTooFar(Unprocessable):
    code = "start_too_far"
    title = "The start time is too far ahead"


class ScreenChangeNotAllowed(Unprocessable):
    code = "screen_change_not_allowed"
    title = "A showtime cannot move to another screen"
