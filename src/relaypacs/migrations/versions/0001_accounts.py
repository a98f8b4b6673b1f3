"""Accounts: users, sign-in sessions, refresh tokens, revoked access tokens, recovery codes, audit.

Revision ID: 0001_accounts
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_accounts"
down_revision = None
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "user_account",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.Column("username", sa.String(50), nullable=False),
        sa.Column("username_key", sa.String(50), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "must_change_password", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("token_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_login_at", _TZ, nullable=True),
        sa.Column("failed_login_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", _TZ, nullable=True),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("default_service_level", sa.String(20), server_default="routine", nullable=False),
        sa.Column("chunk_size", sa.Integer(), server_default=sa.text("1048576"), nullable=False),
        sa.Column(
            "duplicate_warnings", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
        sa.CheckConstraint(
            "chunk_size >= 524288 AND chunk_size <= 10485760",
            name=op.f("user_account_chunk_size_range_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("user_account_pkey")),
        sa.UniqueConstraint("username_key", name=op.f("user_account_username_key_key")),
        sa.UniqueConstraint("email", name=op.f("user_account_email_key")),
    )
    op.create_table(
        "login_session",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("ip_address", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.Column("revoked_at", _TZ, nullable=True),
        sa.Column("revoked_reason", sa.String(40), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("login_session_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("login_session_pkey")),
    )
    op.create_index(op.f("login_session_user_id_idx"), "login_session", ["user_id"])
    op.create_table(
        "refresh_token",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.Column("used_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["login_session.id"],
            name=op.f("refresh_token_session_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("refresh_token_pkey")),
        sa.UniqueConstraint("token_hash", name=op.f("refresh_token_token_hash_key")),
    )
    op.create_index(op.f("refresh_token_session_id_idx"), "refresh_token", ["session_id"])
    op.create_table(
        "revoked_access_token",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.Column("revoked_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("revoked_access_token_pkey")),
    )
    op.create_index(
        op.f("revoked_access_token_expires_at_idx"), "revoked_access_token", ["expires_at"]
    )
    op.create_table(
        "totp_recovery_code",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("totp_recovery_code_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("totp_recovery_code_pkey")),
    )
    op.create_index("totp_recovery_code_user_id_idx", "totp_recovery_code", ["user_id"])
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", _TZ, nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(40), nullable=True),
        sa.Column("target_id", sa.String(100), nullable=True),
        sa.Column("ip_address", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("audit_event_pkey")),
    )
    op.create_index(op.f("audit_event_occurred_at_idx"), "audit_event", ["occurred_at"])
    op.create_index(op.f("audit_event_actor_id_idx"), "audit_event", ["actor_id"])
    op.create_index(op.f("audit_event_action_idx"), "audit_event", ["action"])
    _make_audit_append_only()


def _make_audit_append_only() -> None:
    # The database itself refuses to change or remove audit rows, whatever the application does.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_event_is_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_event is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
            "FOR EACH ROW EXECUTE FUNCTION audit_event_is_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_event_no_{verb.lower()} BEFORE {verb} ON audit_event "
                "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS audit_event_is_append_only()")
    op.drop_table("audit_event")
    op.drop_table("totp_recovery_code")
    op.drop_table("revoked_access_token")
    op.drop_table("refresh_token")
    op.drop_table("login_session")
    op.drop_table("user_account")
