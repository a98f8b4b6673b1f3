"""An upload token ends with its owner's sign-ins.

- ``upload.token_revoked_at``: when the owner signed out everywhere, changed the password or was
  disabled, every upload token of theirs still within its session stops working; null while the
  token is live (existing uploads need no backfill). A new token for the upload clears it.

Revision ID: 0010_upload_token_revoked
Revises: 0009_user_full_name
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_upload_token_revoked"
down_revision = "0009_user_full_name"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upload") as batch:
        batch.add_column(sa.Column("token_revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload") as batch:
        batch.drop_column("token_revoked_at")
