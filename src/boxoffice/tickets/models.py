"""Tickets: one per booked seat, checked at the door once."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, UTCDateTime


class TicketStatus:
    VALID = "valid"
    USED = "used"
    VOID = "void"  # refunded


class Ticket(IdMixin, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_booking", "booking_id"),
        # Uniqueness of sold seats comes from showtime_seats (one conditional UPDATE per sale);
        # this index serves the door and the consistency checks.
        Index("ix_tickets_showtime_seat", "showtime_id", "seat_id"),
        Index("ix_tickets_used_by", "used_by"),
    )

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    showtime_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("showtimes.id"))
    seat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("seats.id"))
    seat_label: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(8), default=TicketStatus.VALID)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    used_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
