"""reviews and ratings

Adds `reviews` (one per customer and movie), `review_votes` (helpful votes) and
`movies.rating_sum`. The movie's `review_count`, `rating_sum` and `average_rating` now
describe its visible reviews; there were none before this revision, so they start at zero.

Revision ID: 0008_reviews
Revises: 0007_notifications
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import boxoffice.core.db

revision: str = "0008_reviews"
down_revision: str | Sequence[str] | None = "0007_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("movies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rating_sum", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute("UPDATE movies SET review_count = 0, rating_sum = 0, average_rating = NULL")

    op.create_table(
        "reviews",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("movie_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("hidden_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("hidden_by", sa.Uuid(), nullable=True),
        sa.Column("helpful_count", sa.Integer(), nullable=False),
        sa.Column("edited_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["movie_id"],
            ["movies.id"],
            name=op.f("fk_reviews_movie_id_movies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_reviews_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("movie_id", "user_id", name=op.f("uq_reviews_movie_id_user_id")),
    )
    op.create_index(
        "ix_reviews_movie_newest", "reviews", ["movie_id", "hidden", "created_at"], unique=False
    )
    op.create_index(
        "ix_reviews_movie_helpful",
        "reviews",
        ["movie_id", "hidden", "helpful_count"],
        unique=False,
    )
    op.create_index("ix_reviews_user", "reviews", ["user_id"], unique=False)

    op.create_table(
        "review_votes",
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", boxoffice.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.id"],
            name=op.f("fk_review_votes_review_id_reviews"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_review_votes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("review_id", "user_id", name=op.f("pk_review_votes")),
    )
    op.create_index("ix_review_votes_user", "review_votes", ["user_id"], unique=False)


def downgrade() -> None:
    # Tables with their indexes (MariaDB refuses to drop an index a foreign key needs).
    op.drop_table("review_votes")
    op.drop_table("reviews")
    with op.batch_alter_table("movies", schema=None) as batch_op:
        batch_op.drop_column("rating_sum")
    op.execute("UPDATE movies SET review_count = 0, average_rating = NULL")
