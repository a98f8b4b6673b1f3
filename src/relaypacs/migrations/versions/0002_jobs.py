"""Jobs: the durable background job queue and the schedule of periodic jobs.

Revision ID: 0002_jobs
Revises: 0001_accounts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_jobs"
down_revision = "0001_accounts"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)
_UNFINISHED = sa.text("state IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("abandoned_count", sa.Integer(), nullable=False),
        sa.Column("run_at", _TZ, nullable=False),
        sa.Column("queued_at", _TZ, nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", _TZ, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dedupe_key", sa.String(200), nullable=True),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="job_pkey"),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'dead')",
            name="job_state_check",
        ),
    )
    op.create_index("job_claim_idx", "job", ["state", sa.text("priority DESC"), "run_at"])
    op.create_index(
        "job_dedupe_key_unfinished_key",
        "job",
        ["dedupe_key"],
        unique=True,
        postgresql_where=_UNFINISHED,
        sqlite_where=_UNFINISHED,
    )
    op.create_index("job_finished_at_idx", "job", ["finished_at"])
    op.create_table(
        "job_schedule",
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("next_run_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("kind", name="job_schedule_pkey"),
    )


def downgrade() -> None:
    op.drop_table("job_schedule")
    op.drop_index("job_finished_at_idx", table_name="job")
    op.drop_index("job_dedupe_key_unfinished_key", table_name="job")
    op.drop_index("job_claim_idx", table_name="job")
    op.drop_table("job")
