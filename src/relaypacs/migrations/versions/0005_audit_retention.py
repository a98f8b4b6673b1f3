"""Audit records may be removed by retention, and only once past the legal minimum.

The audit log stays append-only: no UPDATE ever, and no DELETE of a record younger than
AUDIT_MINIMUM_DAYS (six years, HIPAA §164.316(b)(2)(i)). The database enforces it, so neither a
bug nor a wrong RELAYPACS_RETENTION_AUDIT_DAYS can shorten the trail.

Revision ID: 0005_audit_retention
Revises: 0004_reports
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_audit_retention"
down_revision: str | None = "0004_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with relaypacs.config.AUDIT_MINIMUM_RETENTION_DAYS.
AUDIT_MINIMUM_DAYS = 2192


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION audit_event_is_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE'
                   AND OLD.occurred_at < now() - interval '{AUDIT_MINIMUM_DAYS} days' THEN
                    RETURN OLD;
                END IF;
                RAISE EXCEPTION 'audit_event is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")
        # SQLite keeps UTC datetimes as ISO text, which orders like the times it holds.
        op.execute(
            "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
            f"WHEN OLD.occurred_at >= strftime('%Y-%m-%d %H:%M:%f', 'now', "
            f"'-{AUDIT_MINIMUM_DAYS} days') "
            "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION audit_event_is_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_event is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")
        op.execute(
            "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
            "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END"
        )
