"""Ticket errors."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, NotFound


class BookingNotFound(NotFound):
    title = "Booking not found"


class TicketsNotIssued(Conflict):
    code = "tickets_not_issued"
    title = "Tickets not issued"


class TicketTokenNotFound(NotFound):
    title = "Ticket not found"
