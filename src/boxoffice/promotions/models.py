"""Promo codes and their redemptions."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, Money, Ratio, TimestampMixin, UTCDateTime


class PromoKind:
    PERCENTAGE = "percentage"  # value: percent off (0 < value <= 100)
    FIXED = "fixed"  # value: amount off in the booking's currency


class PromoCode(IdMixin, TimestampMixin, Base):
    __tablename__ = "promo_codes"

    code: Mapped[str] = mapped_column(String(40), unique=True)  # stored upper-case
    description: Mapped[str | None] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[Decimal] = mapped_column(Ratio())
    currency: Mapped[str | None] = mapped_column(String(3))  # fixed amounts only
    min_order: Mapped[Decimal | None] = mapped_column(Money())
    max_discount: Mapped[Decimal | None] = mapped_column(Money())
    valid_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    total_limit: Mapped[int | None]
    per_customer_limit: Mapped[int | None]
    # Live uses (active redemptions): moved only by conditional UPDATEs, so a code with N
    # uses is used at most N times however many customers race for it.
    uses: Mapped[int] = mapped_column(default=0)
    movie_ids: Mapped[list[Any] | None]
    theater_ids: Mapped[list[Any] | None]
    days_of_week: Mapped[list[Any] | None]  # of the showtime, theater-local; 0 = Monday
    first_booking_only: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)


class RedemptionStatus:
    ACTIVE = "active"
    RELEASED = "released"  # the booking expired, was cancelled or refunded: the use came back


class PromoRedemption(IdMixin, Base):
    __tablename__ = "promo_redemptions"
    __table_args__ = (
        UniqueConstraint("booking_id"),
        Index("ix_promo_redemptions_code_user", "promo_code_id", "user_id", "status"),
        Index("ix_promo_redemptions_user", "user_id"),
    )

    promo_code_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("promo_codes.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    amount: Mapped[Decimal] = mapped_column(Money())
    status: Mapped[str] = mapped_column(String(12), default=RedemptionStatus.ACTIVE)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
