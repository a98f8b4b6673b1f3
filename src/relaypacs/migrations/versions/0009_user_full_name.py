"""The user's full name, for the profile (PRD FR-SETTINGS-01).

- ``user_account.full_name``: optional, at most 200 characters; null until the user sets it, so
  existing accounts need no backfill.

Revision ID: 0009_user_full_name
Revises: 0008_stream_ticket_session
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_user_full_name"
down_revision = "0008_stream_ticket_session"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(sa.Column("full_name", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("full_name")
