"""distributors, rental contracts, settlements

Revision ID: 0009_distribution
Revises: 0008_reviews
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import boxoffice.core.db

revision: str = "0009_distribution"
down_revision: str | Sequence[str] | None = "0008_reviews"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "distributors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("contact_email", sa.String(length=320), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("created_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distributors")),
        sa.UniqueConstraint("name", name=op.f("uq_distributors_name")),
    )
    op.create_table(
        "film_contracts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("distributor_id", sa.Uuid(), nullable=False),
        sa.Column("movie_id", sa.Uuid(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("week_start_weekday", sa.Integer(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("house_allowance", boxoffice.core.db.Money(), nullable=True),
        sa.Column("minimum_guarantee", boxoffice.core.db.Money(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["distributor_id"],
            ["distributors.id"],
            name=op.f("fk_film_contracts_distributor_id_distributors"),
        ),
        sa.ForeignKeyConstraint(
            ["movie_id"], ["movies.id"], name=op.f("fk_film_contracts_movie_id_movies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_film_contracts")),
    )
    op.create_index(
        "ix_film_contracts_movie", "film_contracts", ["movie_id", "start_date"], unique=False
    )
    op.create_table(
        "settlement_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("contract_id", sa.Uuid(), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("amount_due", boxoffice.core.db.Money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("paid_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["film_contracts.id"],
            name=op.f("fk_settlement_entries_contract_id_film_contracts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_entries")),
        sa.UniqueConstraint(
            "contract_id",
            "week_start",
            name=op.f("uq_settlement_entries_contract_id_week_start"),
        ),
    )


def downgrade() -> None:
    op.drop_table("settlement_entries")
    op.drop_table("film_contracts")  # with its indexes (MariaDB refuses to drop an FK's index)
    op.drop_table("distributors")
