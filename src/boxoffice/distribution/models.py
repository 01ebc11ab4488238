"""Distributors, rental contracts and the recorded weekly settlement entries."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.db import Base, IdMixin, Money, TimestampMixin, UTCDateTime


class Distributor(IdMixin, TimestampMixin, Base):
    __tablename__ = "distributors"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    contact_email: Mapped[str | None] = mapped_column(String(320))
    address: Mapped[str] = mapped_column(String(500), default="")


class Contract(IdMixin, TimestampMixin, Base):
    """A film rental: the movie (and optionally one format) from a distributor, between two
    dates, on weekly percentage terms (week n beyond the list pays the last one)."""

    __tablename__ = "film_contracts"
    __table_args__ = (Index("ix_film_contracts_movie", "movie_id", "start_date"),)

    distributor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("distributors.id"))
    movie_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("movies.id"))
    format: Mapped[str | None] = mapped_column(String(8))  # None: every format
    start_date: Mapped[dt.date] = mapped_column(Date())
    end_date: Mapped[dt.date] = mapped_column(Date())
    week_start_weekday: Mapped[int] = mapped_column(default=3)  # 0 Monday .. 6 Sunday
    # Percentages as decimal strings ("60", "47.5"): JSON keeps them exact on every backend.
    terms: Mapped[list[Any]]
    house_allowance: Mapped[Decimal | None] = mapped_column(Money())  # per week (90/10)
    minimum_guarantee: Mapped[Decimal | None] = mapped_column(Money())  # over the contract
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(default=True)


class SettlementStatus:
    DUE = "due"
    PAID = "paid"


class SettlementEntry(IdMixin, Base):
    """What was due for one contract-week when the weekly job recorded it (once), and whether
    it has been paid."""

    __tablename__ = "settlement_entries"
    __table_args__ = (UniqueConstraint("contract_id", "week_start"),)

    contract_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("film_contracts.id", ondelete="CASCADE")
    )
    week_start: Mapped[dt.date] = mapped_column(Date())
    amount_due: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(8), default=SettlementStatus.DUE)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
