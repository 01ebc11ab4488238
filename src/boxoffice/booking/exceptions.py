"""Booking errors. `seats_unavailable` and `unknown_seats` come from scheduling."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, Gone, NotFound, Unprocessable


class ShowtimeClosed(Conflict):
    code = "showtime_closed"
    title = "Sales for this showtime are closed"


class TooManySeats(Unprocessable):
    code = "too_many_seats"
    title = "Too many seats in one hold"


class HoldLimit(Conflict):
    code = "hold_limit"
    title = "Too many seats held at once"


class HoldNotFound(NotFound):
    code = "hold_not_found"
    title = "No such hold"


class HoldExpired(Gone):
    code = "hold_expired"
    title = "The hold has expired"


class HoldMismatch(Conflict):
    code = "hold_mismatch"
    title = "The request does not match the hold"


class HoldAlreadyBooked(Conflict):
    code = "hold_already_booked"
    title = "The hold was already turned into a booking"


class ExtensionLimit(Conflict):
    code = "extension_limit"
    title = "The hold cannot be extended further"


class NoSeatsAvailable(Conflict):
    code = "no_seats_available"
    title = "No adjacent seats are available"


class BookingNotFound(NotFound):
    code = "not_found"
    title = "No such booking"


class BookingNotCancellable(Conflict):
    code = "booking_not_cancellable"
    title = "The booking cannot be cancelled"


class RefundNotAllowed(Conflict):
    code = "refund_not_allowed"
    title = "The booking cannot be refunded"


class NotSupportedYet(Unprocessable):
    code = "not_supported"
    title = "Not supported yet"


class PointsExceedCap(Unprocessable):
    code = "points_exceed_cap"
    title = "Too many points for this order"
