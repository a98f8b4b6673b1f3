"""Uploads: sessions, declared files, stored chunks, timeline, validated DICOM instances.

Revision ID: 0003_uploads
Revises: 0002_jobs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_uploads"
down_revision = "0002_jobs"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "upload",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.Column("completed_at", _TZ, nullable=True),
        sa.Column("purged_at", _TZ, nullable=True),
        sa.Column("patient_name", sa.String(200), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("service_level", sa.String(20), nullable=False),
        sa.Column("study_description", sa.String(200), nullable=True),
        sa.Column("clinical_history", sa.Text(), nullable=True),
        sa.Column("duplicate_key", sa.String(64), nullable=False),
        sa.Column("forced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("instance_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("failure_reason", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("upload_owner_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("upload_pkey")),
        sa.UniqueConstraint("token_hash", name=op.f("upload_token_hash_key")),
    )
    op.create_index("upload_owner_id_created_at_idx", "upload", ["owner_id", "created_at"])
    op.create_index("upload_duplicate_key_idx", "upload", ["owner_id", "duplicate_key"])
    op.create_index("upload_state_expires_at_idx", "upload", ["state", "expires_at"])

    op.create_table(
        "upload_file",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("store_key", sa.String(300), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["upload.id"],
            name=op.f("upload_file_upload_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("upload_file_pkey")),
        sa.UniqueConstraint("upload_id", "position", name=op.f("upload_file_upload_id_key")),
    )

    op.create_table(
        "upload_chunk",
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["upload_file.id"],
            name=op.f("upload_chunk_file_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["upload.id"],
            name=op.f("upload_chunk_upload_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_id", "chunk_index", name=op.f("upload_chunk_pkey")),
    )
    op.create_index("upload_chunk_upload_id_idx", "upload_chunk", ["upload_id"])

    op.create_table(
        "upload_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["upload.id"],
            name=op.f("upload_event_upload_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("upload_event_pkey")),
    )
    op.create_index("upload_event_upload_id_at_idx", "upload_event", ["upload_id", "at"])

    op.create_table(
        "dicom_instance",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("entry_name", sa.String(255), nullable=True),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("store_key", sa.String(300), nullable=False),
        sa.Column("forward_status", sa.String(16), nullable=False),
        sa.Column("forward_reason", sa.String(500), nullable=True),
        sa.Column("forwarded_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["upload.id"],
            name=op.f("dicom_instance_upload_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["upload_file.id"],
            name=op.f("dicom_instance_file_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("dicom_instance_pkey")),
        sa.UniqueConstraint(
            "upload_id", "sop_instance_uid", name=op.f("dicom_instance_upload_id_key")
        ),
    )
    op.create_index(
        "dicom_instance_study_instance_uid_idx", "dicom_instance", ["study_instance_uid"]
    )


def downgrade() -> None:
    op.drop_table("dicom_instance")
    op.drop_table("upload_event")
    op.drop_table("upload_chunk")
    op.drop_table("upload_file")
    op.drop_table("upload")
