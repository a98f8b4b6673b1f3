"""Idempotent retries over a lossy link: POST /uploads keys and the refresh-token grace window.

- ``upload_idempotency``: one row per (user, SHA-256 of the Idempotency-Key) — the primary key
  makes two requests with the same key create one upload, even at the same moment.
- ``refresh_token.successor_id`` / ``successor_sealed``: what a refresh token was exchanged for,
  so that the exchange can be answered again, identically, when its answer was lost.

Revision ID: 0006_upload_idempotency
Revises: 0005_audit_retention
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_upload_idempotency"
down_revision = "0005_audit_retention"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "upload_idempotency",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=True),
        sa.Column("token_sealed", sa.String(64), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("upload_idempotency_owner_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["upload.id"],
            name=op.f("upload_idempotency_upload_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner_id", "key_hash", name=op.f("upload_idempotency_pkey")),
    )
    op.create_index("upload_idempotency_upload_id_idx", "upload_idempotency", ["upload_id"])
    with op.batch_alter_table("refresh_token") as batch:
        batch.add_column(sa.Column("successor_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("successor_sealed", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_token") as batch:
        batch.drop_column("successor_sealed")
        batch.drop_column("successor_id")
    op.drop_table("upload_idempotency")
