"""Invoices, numbered per theater and year without gaps, and their counters."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.db import Base, IdMixin, Ratio, UTCDateTime


class InvoiceCounter(Base):
    """The last invoice number given out for one theater and calendar year (in the theater's
    timezone). Moved only when an invoice is issued (`documents.service.issue_invoice`), in
    the same statement or short transaction as the invoice's insert."""

    __tablename__ = "invoice_counters"

    theater_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("theaters.id"), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    last_number: Mapped[int]


class Invoice(IdMixin, Base):
    """The invoice of a confirmed booking: one per booking, issued right after its
    confirmation commits."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("theater_id", "year", "number"),)

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), unique=True)
    theater_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("theaters.id"))
    year: Mapped[int]
    number: Mapped[int]  # 1, 2, 3... per (theater, year)
    invoice_number: Mapped[str] = mapped_column(String(32), unique=True)  # 1A2B3C4D-2026-000042
    # The VAT rate the invoice states, frozen when it is issued: a later change of the
    # theater's rate does not rewrite issued invoices.
    vat_rate: Mapped[Decimal] = mapped_column(Ratio())
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
