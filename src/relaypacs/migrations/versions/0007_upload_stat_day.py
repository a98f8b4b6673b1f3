"""Daily roll-up of the analytics fact table for long trends.

- ``upload_stat_day``: sealed days of ``upload_stat`` summed by modality and service level.
- ``upload_stat_rolled_day``: which days those sums are complete and current for.
- ``upload_stat_day_idx``: the unsealed days are read from ``upload_stat`` by day.

Revision ID: 0007_upload_stat_day
Revises: 0006_upload_idempotency
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_upload_stat_day"
down_revision = "0006_upload_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_stat_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("service_level", sa.String(20), nullable=False),
        sa.Column("uploads", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "modality", "service_level", name=op.f("upload_stat_day_pkey")
        ),
    )
    op.create_table(
        "upload_stat_rolled_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("upload_stat_rolled_day_pkey")),
    )
    op.create_index("upload_stat_day_idx", "upload_stat", ["day"])


def downgrade() -> None:
    op.drop_index("upload_stat_day_idx", table_name="upload_stat")
    op.drop_table("upload_stat_rolled_day")
    op.drop_table("upload_stat_day")
