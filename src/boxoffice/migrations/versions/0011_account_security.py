"""account security (sessions, login failures)

Revision ID: 0011_account_security
Revises: 0010_reports
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import boxoffice.core.db

revision: str = "0011_account_security"
down_revision: str | Sequence[str] | None = "0010_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sessions_revoked_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=True
            )
        )
    # Existing sessions were not signed in with a one-time code (the default is only for
    # them: new rows always carry the value).
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ip", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("mfa", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.alter_column("mfa", existing_type=sa.Boolean(), server_default=None)

    op.create_table(
        "login_failures",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locks", sa.Integer(), nullable=False),
        sa.Column(
            "window_started_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("locked_until", boxoffice.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("succeeded_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
        sa.UniqueConstraint(
            "scope", "account_key", "ip", name=op.f("uq_login_failures_scope_account_key_ip")
        ),
    )
    op.create_index(
        "ix_login_failures_account_key", "login_failures", ["account_key"], unique=False
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("mfa")
        batch_op.drop_column("ip")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("sessions_revoked_at")
