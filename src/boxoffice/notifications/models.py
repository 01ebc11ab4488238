"""In-app notifications, each customer's channel preferences, and the reminders sent."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, UTCDateTime


class NotificationType:
    """What a notification is about (the in-app `type`)."""

    BOOKING = "booking"
    PAYMENT = "payment"
    PROMOTION = "promotion"
    SYSTEM = "system"
    TIER_UPGRADE = "tier_upgrade"

    ALL = (BOOKING, PAYMENT, PROMOTION, SYSTEM, TIER_UPGRADE)


class Notification(IdMixin, Base):
    """One in-app notification of a customer; `read_at` is set once it was read."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))  # NotificationType
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]  # e.g. {"bookingId": ..., "reference": ...}
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NotificationPreference(Base):
    """A customer's channels and language. No row: the defaults (email and in-app on, SMS
    off, English), so accounts that never chose cost nothing."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[bool] = mapped_column(default=True)
    sms: Mapped[bool] = mapped_column(default=False)
    in_app: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str] = mapped_column(String(8), default="en")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ShowReminder(Base):
    """A booking whose show reminder went out: the primary key makes it once, whichever
    process runs the reminder job."""

    __tablename__ = "show_reminders"

    booking_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), primary_key=True
    )
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
