"""The loyalty points ledger (append-only) and each customer's account."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, UTCDateTime


class EntryKind:
    EARN = "earn"  # 10% of the paid amount, when a ticket is checked in or the show passed
    REVERSE = "reverse"  # earned points taken back (refund)
    REDEEM = "redeem"  # spent on a booking
    RESTORE = "restore"  # spent points given back (the booking expired or was cancelled)
    ADJUST = "adjust"  # by staff


class Tier:
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"


class LoyaltyAccount(Base):
    """`balance` is the sum of the customer's entries, kept here so spending is one
    conditional UPDATE (`balance >= n`): never negative under concurrent spending."""

    __tablename__ = "loyalty_accounts"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(default=0)
    tier: Mapped[str] = mapped_column(String(8), default=Tier.BRONZE)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class PointsEntry(IdMixin, Base):
    __tablename__ = "points_entries"
    __table_args__ = (
        Index("ix_points_entries_user_created", "user_id", "created_at"),
        # One earn, one redeem, ... per booking: applying an event twice adds nothing.
        UniqueConstraint("booking_id", "kind", "ref"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    booking_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(8))
    # What within the booking (e.g. a refund id for a reversal); "" when the booking says it all.
    ref: Mapped[str] = mapped_column(String(64), default="")
    points: Mapped[int]  # signed: earn/restore positive, redeem/reverse negative
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
