"""Loyalty answers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from boxoffice.core.schema import CamelModel, Pagination
from boxoffice.loyalty.models import PointsEntry
from boxoffice.loyalty.service import AccountView


class PointsEntryOut(CamelModel):
    id: uuid.UUID
    kind: str  # earn | redeem | restore | reverse | adjust
    points: int  # signed: what the entry added to the balance
    booking_id: uuid.UUID | None
    note: str | None
    created_at: dt.datetime


class PointsOut(CamelModel):
    balance: int
    tier: str  # bronze | silver | gold
    earned_last_12_months: int
    next_tier: str | None  # null at the top tier
    points_to_next_tier: int | None
    entries: list[PointsEntryOut]
    pagination: Pagination

    @classmethod
    def of(
        cls, view: AccountView, entries: Sequence[PointsEntry], pagination: Pagination
    ) -> PointsOut:
        return cls(
            balance=view.balance,
            tier=view.tier,
            earned_last_12_months=view.earned_last_12_months,
            next_tier=view.next_tier,
            points_to_next_tier=view.points_to_next_tier,
            entries=[PointsEntryOut.model_validate(entry) for entry in entries],
            pagination=pagination,
        )
