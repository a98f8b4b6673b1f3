"""A live stream belongs to the sign-in that asked for its ticket.

- ``stream_ticket.session_id``: the login session whose access token asked for the ticket, so
  that the stream it opens ends when that sign-in ends (logout, sign-out everywhere, password
  change, refresh-token reuse). Null for tickets issued before this revision (they live 60 s).

Revision ID: 0008_stream_ticket_session
Revises: 0007_upload_stat_day
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_stream_ticket_session"
down_revision = "0007_upload_stat_day"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stream_ticket") as batch:
        batch.add_column(sa.Column("session_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("stream_ticket_session_id_fkey"),
            "login_session",
            ["session_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("stream_ticket") as batch:
        batch.drop_constraint(op.f("stream_ticket_session_id_fkey"), type_="foreignkey")
        batch.drop_column("session_id")
