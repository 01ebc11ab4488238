"""bookings by confirmation time (the invoice repair job)

Revision ID: 0013_bookings_confirmed_at
Revises: 0012_privacy
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013_bookings_confirmed_at"
down_revision: str | Sequence[str] | None = "0012_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_bookings_confirmed_at", "bookings", ["confirmed_at"])


def downgrade() -> None:
    op.drop_index("ix_bookings_confirmed_at", table_name="bookings")
