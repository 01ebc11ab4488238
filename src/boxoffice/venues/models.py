"""Cities, theaters, screens (halls) and the seats derived from each screen's layout."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.db import Base, IdMixin, Ratio, TimestampMixin


class City(IdMixin, TimestampMixin, Base):
    __tablename__ = "cities"

    name: Mapped[str] = mapped_column(String(120), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))  # IANA name, e.g. Europe/Berlin


class Theater(IdMixin, TimestampMixin, Base):
    __tablename__ = "theaters"
    __table_args__ = (UniqueConstraint("city_id", "name"),)

    city_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cities.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    location: Mapped[str] = mapped_column(String(300), default="")
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))  # ISO 4217
    # VAT contained in this theater's prices (0.0700 = 7%), shown on bookings and invoices.
    vat_rate: Mapped[Decimal] = mapped_column(
        Ratio(), default=Decimal("0"), server_default="0.0000"
    )
    # endTime = start + movie duration + ads/trailers + cleaning (minutes)
    ads_minutes: Mapped[int] = mapped_column(default=15)
    cleaning_minutes: Mapped[int] = mapped_column(default=15)


class Screen(IdMixin, TimestampMixin, Base):
    __tablename__ = "screens"
    __table_args__ = (UniqueConstraint("theater_id", "screen_number"),)

    theater_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("theaters.id"), index=True)
    screen_number: Mapped[int]
    name: Mapped[str] = mapped_column(String(100))
    hall_type: Mapped[str] = mapped_column(String(16))  # STANDARD | VIP | IMAX | 4DX
    # The layout in its explicit-rows form (grids are expanded), as the admin gave it.
    layout: Mapped[dict[str, Any]]
    capacity: Mapped[int]  # active seats


class Seat(IdMixin, Base):
    """One physical seat. `row_index` 0 is the row nearest the screen; `position` is the
    column (gaps between positions are aisles or missing seats)."""

    __tablename__ = "seats"
    __table_args__ = (UniqueConstraint("screen_id", "label"),)

    screen_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("screens.id", ondelete="CASCADE"))
    row_label: Mapped[str] = mapped_column(String(4))
    number: Mapped[int]
    label: Mapped[str] = mapped_column(String(12))  # e.g. "F7"
    seat_class: Mapped[str] = mapped_column(String(16))
    row_index: Mapped[int]
    position: Mapped[int]
    active: Mapped[bool] = mapped_column(default=True)
