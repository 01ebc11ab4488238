"""Admin-managed pricing rules (see pricing/rules.py for how they combine)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, ForeignKey, String, Time
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.db import Base, IdMixin, Money, Ratio, TimestampMixin


class RuleKind:
    MULTIPLIER = "multiplier"  # price * value
    SURCHARGE = "surcharge"  # price + value (negative: a discount)
    FIXED = "fixed"  # price = value


class PricingRule(IdMixin, TimestampMixin, Base):
    """A price change applying to the seats that match every condition set (None: any).

    Days, times and dates are the theater's local ones. `occupancy_min/max` (0..1, sold and
    held seats over sellable ones) make a rule dynamic; `min_price/max_price` bound the
    result of every rule that matched."""

    __tablename__ = "pricing_rules"

    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(default=True)
    priority: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[Decimal] = mapped_column(Ratio())
    hall_types: Mapped[list[Any] | None]
    seat_classes: Mapped[list[Any] | None]
    city_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    theater_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("theaters.id", ondelete="CASCADE")
    )
    movie_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"))
    days_of_week: Mapped[list[Any] | None]  # 0 = Monday .. 6 = Sunday
    time_from: Mapped[dt.time | None] = mapped_column(Time())
    time_to: Mapped[dt.time | None] = mapped_column(Time())  # exclusive; before from: wraps
    date_from: Mapped[dt.date | None] = mapped_column(Date())
    date_to: Mapped[dt.date | None] = mapped_column(Date())  # inclusive
    occupancy_min: Mapped[Decimal | None] = mapped_column(Ratio())
    occupancy_max: Mapped[Decimal | None] = mapped_column(Ratio())
    min_price: Mapped[Decimal | None] = mapped_column(Money())
    max_price: Mapped[Decimal | None] = mapped_column(Money())
