"""Showtimes and the per-showtime seat inventory (the single source of truth for a seat)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.db import Base, IdMixin, Money, TimestampMixin, UTCDateTime


class Showtime(IdMixin, TimestampMixin, Base):
    __tablename__ = "showtimes"
    __table_args__ = (
        Index("ix_showtimes_screen_start", "screen_id", "start_time"),
        Index("ix_showtimes_movie_start", "movie_id", "start_time"),
        Index("ix_showtimes_theater_start", "theater_id", "start_time"),
    )

    movie_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("movies.id"))
    screen_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("screens.id"))
    theater_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("theaters.id"))
    start_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    base_price: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    format: Mapped[str] = mapped_column(String(8), default="2D")  # 2D | 3D | IMAX | 4DX
    language: Mapped[str | None] = mapped_column(String(16))  # spoken language
    subtitles: Mapped[str | None] = mapped_column(String(16))  # subtitle language, if any
    status: Mapped[str] = mapped_column(String(16), default="scheduled")  # scheduled | cancelled


class SeatStatus:
    AVAILABLE = "available"
    HELD = "held"
    BOOKED = "booked"
    BLOCKED = "blocked"


class ShowtimeSeat(Base):
    """One row per (showtime, seat). A held seat whose `held_until` has passed *is* available:
    expiry is a predicate every reader and writer applies, not a job."""

    __tablename__ = "showtime_seats"
    __table_args__ = (Index("ix_showtime_seats_showtime_status", "showtime_id", "status"),)

    showtime_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("showtimes.id", ondelete="CASCADE"), primary_key=True
    )
    seat_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("seats.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(12), default=SeatStatus.AVAILABLE)
    hold_id: Mapped[uuid.UUID | None]
    held_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    booking_id: Mapped[uuid.UUID | None]
    blocked_reason: Mapped[str | None] = mapped_column(String(200))
