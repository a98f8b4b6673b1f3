"""Reports, notifications, the live-event log and stream tickets; analytics indexes.

Revision ID: 0004_reports
Revises: 0003_uploads
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_reports"
down_revision = "0003_uploads"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)
_UNREAD = sa.text("read_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "report",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=True),
        sa.Column("delivered_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.Column("ready_at", _TZ, nullable=True),
        sa.Column("radiologist_id", sa.Uuid(), nullable=True),
        sa.Column("radiologist_name", sa.String(200), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("message", sa.String(2000), nullable=True),
        sa.Column("source", sa.String(32), nullable=True),
        sa.Column("pacs_destination", sa.String(100), nullable=True),
        sa.Column("pacs_series_instance_uid", sa.String(64), nullable=True),
        sa.Column("pacs_sop_instance_uid", sa.String(64), nullable=True),
        sa.Column("pacs_sop_class_uid", sa.String(64), nullable=True),
        sa.Column("pdf_series_instance_uid", sa.String(64), nullable=True),
        sa.Column("pdf_sop_instance_uid", sa.String(64), nullable=True),
        sa.Column("last_synced_at", _TZ, nullable=True),
        sa.Column("next_sync_at", _TZ, nullable=True),
        sa.Column("sync_error", sa.String(300), nullable=True),
        sa.ForeignKeyConstraint(
            ["upload_id"], ["upload.id"], name=op.f("report_upload_id_fkey"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("report_owner_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["radiologist_id"],
            ["user_account.id"],
            name=op.f("report_radiologist_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("report_pkey")),
        sa.UniqueConstraint("upload_id", name=op.f("report_upload_id_key")),
    )
    op.create_index("report_owner_id_created_at_idx", "report", ["owner_id", "created_at"])
    op.create_index("report_status_created_at_idx", "report", ["status", "created_at"])
    op.create_index("report_next_sync_at_idx", "report", ["next_sync_at"])

    op.create_table(
        "notification",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.String(2000), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=True),
        sa.Column("report_id", sa.Uuid(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("read_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("notification_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["upload.id"],
            name=op.f("notification_upload_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("notification_report_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("notification_pkey")),
    )
    op.create_index(
        "notification_user_id_created_at_idx", "notification", ["user_id", "created_at", "id"]
    )
    op.create_index(
        "notification_user_id_unread_idx",
        "notification",
        ["user_id"],
        postgresql_where=_UNREAD,
        sqlite_where=_UNREAD,
    )

    op.create_table(
        "stream_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("stream_event_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("stream_event_pkey")),
    )
    op.create_index("stream_event_user_id_id_idx", "stream_event", ["user_id", "id"])
    op.create_index("stream_event_created_at_idx", "stream_event", ["created_at"])

    op.create_table(
        "stream_ticket",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.Column("used_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("stream_ticket_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("stream_ticket_pkey")),
    )
    op.create_index("stream_ticket_expires_at_idx", "stream_ticket", ["expires_at"])

    # Analytics (relaypacs.analytics.models): the admin's upload list, and the fact table.
    op.create_index("upload_created_at_idx", "upload", ["created_at"])
    op.create_table(
        "upload_stat",
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("service_level", sa.String(20), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("seconds_to_pacs", sa.Float(), nullable=True),
        sa.Column("seconds_to_report", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["upload.id"],
            name=op.f("upload_stat_upload_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("upload_stat_owner_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", name=op.f("upload_stat_pkey")),
    )
    op.create_index(
        "upload_stat_created_at_idx",
        "upload_stat",
        ["created_at"],
        postgresql_include=[
            "owner_id",
            "modality",
            "service_level",
            "state",
            "total_bytes",
            "seconds_to_pacs",
        ],
    )
    op.create_index(
        "upload_stat_owner_id_created_at_idx", "upload_stat", ["owner_id", "created_at"]
    )
    _backfill_upload_stat()


def _backfill_upload_stat() -> None:
    """Uploads made before this revision get their rows (later ones are kept by the app)."""
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        day = "(u.created_at AT TIME ZONE 'UTC')::date"
        delivered = "EXTRACT(EPOCH FROM d.at - u.created_at)"
        ready = "EXTRACT(EPOCH FROM r.ready_at - u.created_at)"
    else:
        day = "date(u.created_at)"
        delivered = "(julianday(d.at) - julianday(u.created_at)) * 86400.0"
        ready = "(julianday(r.ready_at) - julianday(u.created_at)) * 86400.0"
    op.execute(
        f"""
        INSERT INTO upload_stat (upload_id, owner_id, created_at, day, modality, service_level,
                                 state, total_bytes, file_count, seconds_to_pacs,
                                 seconds_to_report)
        SELECT u.id, u.owner_id, u.created_at, {day}, u.modality, u.service_level, u.state,
               u.total_bytes, u.file_count, {delivered}, {ready}
        FROM upload u
        LEFT JOIN (SELECT upload_id, MIN(at) AS at FROM upload_event
                   WHERE state IN ('delivered', 'partially_delivered')
                   GROUP BY upload_id) d ON d.upload_id = u.id
        LEFT JOIN report r ON r.upload_id = u.id
        """  # noqa: S608  (no input: fixed expressions per dialect)
    )


def downgrade() -> None:
    op.drop_table("upload_stat")
    op.drop_index("upload_created_at_idx", table_name="upload")
    op.drop_table("stream_ticket")
    op.drop_table("stream_event")
    op.drop_table("notification")
    op.drop_table("report")
