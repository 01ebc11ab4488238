"""indexes on the foreign keys rows are looked up by, or whose referenced rows are deleted

Every confirmation reads a payment's refund events (payment_events.payment_id); refunds are
read by payment; deleting an account (retention) makes the database look for rows that refer
to it (tickets.used_by, refunds.requested_by, promo_redemptions.user_id) and to its holds
(bookings.hold_id). Without an index each of those is a scan of the whole table.

Revision ID: 0014_foreign_key_indexes
Revises: 0013_bookings_confirmed_at
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_foreign_key_indexes"
down_revision: str | Sequence[str] | None = "0013_bookings_confirmed_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_payment_events_payment", "payment_events", "payment_id"),
    ("ix_refunds_payment", "refunds", "payment_id"),
    ("ix_refunds_requested_by", "refunds", "requested_by"),
    ("ix_tickets_used_by", "tickets", "used_by"),
    ("ix_promo_redemptions_user", "promo_redemptions", "user_id"),
    ("ix_bookings_hold", "bookings", "hold_id"),
)


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    mysql = op.get_bind().dialect.name == "mysql"
    for name, table, column in INDEXES:
        if mysql:
            _drop_index_under_foreign_key(name, table, column)
        else:
            op.drop_index(name, table_name=table)


def _drop_index_under_foreign_key(name: str, table: str, column: str) -> None:
    """InnoDB will not drop the only index of a foreign key: drop the key, the index, and
    add the key again (which brings back InnoDB's own index, as before the upgrade)."""
    keys = sa.inspect(op.get_bind()).get_foreign_keys(table)
    key = next(key for key in keys if key["constrained_columns"] == [column])
    assert key["name"] is not None
    op.drop_constraint(key["name"], table, type_="foreignkey")
    op.drop_index(name, table_name=table)
    op.create_foreign_key(
        key["name"],
        table,
        key["referred_table"],
        [column],
        key["referred_columns"],
        ondelete=key.get("options", {}).get("ondelete"),
    )
