"""Seat holds and bookings with their frozen price lines."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, Money, TimestampMixin, UTCDateTime


class HoldStatus:
    ACTIVE = "active"  # seats held until expires_at (a predicate: past it, they are free)
    RELEASED = "released"  # given back by the customer or replaced by a newer hold
    CONVERTED = "converted"  # turned into a booking


class Hold(IdMixin, Base):
    """A customer's hold on some seats of one showtime; its id is the `lockToken`."""

    __tablename__ = "holds"
    __table_args__ = (Index("ix_holds_user_showtime", "user_id", "showtime_id", "status"),)

    showtime_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("showtimes.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(12), default=HoldStatus.ACTIVE)
    seat_labels: Mapped[list[Any]]
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    extensions: Mapped[int] = mapped_column(default=0)


class BookingStatus:
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    USED = "used"
    REFUNDED = "refunded"


class Booking(IdMixin, TimestampMixin, Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_user_created", "user_id", "created_at"),
        Index("ix_bookings_status_expires", "status", "expires_at"),
        Index("ix_bookings_showtime", "showtime_id"),
        Index("ix_bookings_confirmed_at", "confirmed_at"),  # the invoice repair job
        Index("ix_bookings_hold", "hold_id"),  # a deleted hold sets its bookings' to null
    )

    reference: Mapped[str] = mapped_column(String(12), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    showtime_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("showtimes.id"))
    hold_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("holds.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(12), default=BookingStatus.PENDING)
    currency: Mapped[str] = mapped_column(String(3))
    # total_amount - discount_amount = final_amount, always. The parts:
    # total = tickets + snacks (tickets already include the pricing rules' adjustments);
    # discount = promo + points + tier; tax is the VAT contained in final.
    total_amount: Mapped[Decimal] = mapped_column(Money())
    discount_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0.00"))
    final_amount: Mapped[Decimal] = mapped_column(Money())
    tickets_amount: Mapped[Decimal] = mapped_column(
        Money(), default=Decimal("0.00"), server_default="0.00"
    )
    snacks_amount: Mapped[Decimal] = mapped_column(
        Money(), default=Decimal("0.00"), server_default="0.00"
    )
    adjustments_amount: Mapped[Decimal] = mapped_column(
        Money(), default=Decimal("0.00"), server_default="0.00"
    )
    promo_discount: Mapped[Decimal] = mapped_column(
        Money(), default=Decimal("0.00"), server_default="0.00"
    )
    points_redeemed: Mapped[int] = mapped_column(default=0, server_default="0")
    points_discount: Mapped[Decimal] = mapped_column(
        Money(), default=Decimal("0.00"), server_default="0.00"
    )
    tier_discount: Mapped[Decimal] = mapped_column(
        Money(), default=Decimal("0.00"), server_default="0.00"
    )
    tax_amount: Mapped[Decimal] = mapped_column(
        Money(), default=Decimal("0.00"), server_default="0.00"
    )
    # Snacks are collected at the counter with this code (bookings with snacks only).
    pickup_code: Mapped[str | None] = mapped_column(String(12), unique=True)
    snacks_collected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    refunded_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0.00"))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class BookingLine(IdMixin, Base):
    """One seat of a booking with the price frozen when the booking was made."""

    __tablename__ = "booking_lines"
    __table_args__ = (UniqueConstraint("booking_id", "seat_id"),)

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    seat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("seats.id"))
    seat_label: Mapped[str] = mapped_column(String(12))
    seat_class: Mapped[str] = mapped_column(String(16))
    unit_price: Mapped[Decimal] = mapped_column(Money())
    refunded: Mapped[bool] = mapped_column(default=False)
