"""Payments (one provider intent each), refunds and stored provider events."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, Money, TimestampMixin, UTCDateTime


class PaymentStatus:
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class Payment(IdMixin, TimestampMixin, Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "provider_ref"),
        Index("ix_payments_booking", "booking_id"),
        Index("ix_payments_status_created", "status", "created_at"),
    )

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    provider: Mapped[str] = mapped_column(String(16))
    provider_ref: Mapped[str] = mapped_column(String(100))  # the provider's intent/order id
    client_secret: Mapped[str | None] = mapped_column(String(200))
    # Redirect-based providers (PayPal): where the customer approves the payment.
    approval_url: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default=PaymentStatus.PENDING)
    amount: Mapped[Decimal] = mapped_column(Money())
    refunded_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0.00"))
    currency: Mapped[str] = mapped_column(String(3))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    succeeded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Refund(IdMixin, Base):
    __tablename__ = "refunds"
    __table_args__ = (
        Index("ix_refunds_booking", "booking_id"),
        Index("ix_refunds_payment", "payment_id"),
        Index("ix_refunds_requested_by", "requested_by"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    amount: Mapped[Decimal] = mapped_column(Money())
    fee: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0.00"))
    reason: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="succeeded")  # pending|succeeded|failed
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    seat_labels: Mapped[list[Any]] = mapped_column(default=list)
    requested_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PaymentEvent(IdMixin, Base):
    """A provider event, stored by (provider, event id) before it is applied: redeliveries
    find the row and do nothing."""

    __tablename__ = "payment_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        # Every confirmation reads the payment's refund events (a refund reported before
        # the success): without it, a scan of every event ever received.
        Index("ix_payment_events_payment", "payment_id"),
    )

    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(120))
    event_type: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payments.id"))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
