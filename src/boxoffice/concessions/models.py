"""Snacks and the snack lines of bookings (with tickets, or a standalone preorder)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.db import Base, IdMixin, Money, TimestampMixin


class Snack(IdMixin, TimestampMixin, Base):
    __tablename__ = "snacks"
    __table_args__ = (Index("ix_snacks_category", "category", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    category: Mapped[str] = mapped_column(String(32))  # popcorn, drinks, combos, sweets, ...
    price: Mapped[Decimal] = mapped_column(Money())  # in the theater's currency
    image_url: Mapped[str | None] = mapped_column(String(500))
    available: Mapped[bool] = mapped_column(default=True)
    # None: not counted. Otherwise decremented by conditional UPDATEs: never below zero.
    stock: Mapped[int | None]


class BookingSnack(IdMixin, Base):
    """A snack line with its price frozen when the booking was made."""

    __tablename__ = "booking_snacks"
    __table_args__ = (Index("ix_booking_snacks_booking", "booking_id"),)

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    snack_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("snacks.id"))
    name: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int]
    unit_price: Mapped[Decimal] = mapped_column(Money())
    total_price: Mapped[Decimal] = mapped_column(Money())
    # Stock given back (the booking expired, was cancelled or refunded): at most once.
    restocked: Mapped[bool] = mapped_column(default=False)
