"""One settings object, read from ``RELAYPACS_*`` environment variables and validated at start."""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


# HIPAA §164.316(b)(2)(i): six years. Migration 0005 enforces the same floor in the database.
AUDIT_MINIMUM_RETENTION_DAYS = 2192


class Environment(StrEnum):
    development = "development"
    production = "production"


class UnsafeConfigurationError(RuntimeError):
    """Raised when production settings would put patient data at risk."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAYPACS_", extra="ignore")

    env: Environment = Environment.development
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite in DATA_DIR"
    )
    database_pool_size: PositiveInt = Field(
        default=10, description="PostgreSQL connections each process keeps open"
    )
    database_max_overflow: NonNegativeInt = Field(
        default=20, description="Further PostgreSQL connections a process may open at a peak"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = Field(
        default=None, description="The URL clients use, e.g. https://relay.example.org"
    )
    jwt_private_key_file: Path | None = None
    jwt_issuer: str = "relaypacs"
    jwt_audience: str = "relaypacs-api"
    access_token_minutes: int = 60
    refresh_token_days: int = 7
    refresh_reuse_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        le=300,
        description="A refresh token presented again this soon after its exchange, while its "
        "successor is unused, gets the same successor (a lost answer); 0 = always reuse",
    )
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    redis_url: str | None = None
    sentry_dsn: str | None = None
    cors_origins: list[str] = Field(default_factory=list)
    trusted_hosts: list[str] = Field(default_factory=lambda: ["*"])
    allow_self_registration: bool = True
    login_rate_limit: str = "5/minute"
    register_rate_limit: str = Field(
        default="10/minute",
        description="Self-registrations per client address (each costs a bcrypt hash)",
    )
    login_lockout_threshold: int = Field(
        default=5, ge=1, description="Consecutive failed sign-ins that lock an account"
    )
    login_lockout_seconds: int = Field(
        default=30, ge=1, description="First lockout; doubles with each further failure"
    )
    login_lockout_max_seconds: int = 15 * 60
    jwt_key_reload_seconds: float = Field(
        default=5.0, ge=0, description="How often to look for a rotated signing key"
    )
    storage_url: str | None = Field(
        default=None, description="file:///path or s3://bucket/prefix; default: DATA_DIR/chunks"
    )
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    max_upload_bytes: int = 2 * GIB
    # The largest body a valid request can have is an upload start: 10,000 files with names of
    # 255 characters is 10.0 MiB of compact UTF-8 JSON at most (2.8 MiB for ASCII names); a
    # report text of 100,000 characters is under 0.4 MiB. nginx in deploy/ takes 16 MiB too.
    max_json_body_bytes: int = Field(
        default=16 * MIB,
        ge=64 * KIB,
        description="Largest request body but a chunk's (every other body is JSON); a larger "
        "one is refused with 413 `request_too_large` before it is read whole",
    )
    web_dir: Path | None = Field(
        default=None, description="The built PWA to serve at /; default: web/dist of the source"
    )
    upload_session_hours: int = 24
    # --- uploads (relaypacs.uploads) ---
    upload_start_rate_limit: str = Field(default="20/minute", description="Upload starts per user")
    chunk_rate_limit: str = Field(default="2000/minute", description="Chunk PUTs per user")
    log_level: str = "INFO"
    run_worker_in_process: bool | None = Field(
        default=None, description="Run background jobs inside `serve`; default: on with SQLite"
    )
    assemble_while_receiving: bool | None = Field(
        default=None,
        description="Assemble and validate each file as soon as its chunks are stored, while "
        "the rest of the study arrives; default: on when the jobs run in another process than "
        "`serve` (inside it, the work slows the upload down more than it saves)",
    )
    forward_while_receiving: bool = Field(
        default=False,
        description="Send each validated instance to the PACS while the rest of the study is "
        "still arriving (implies ASSEMBLE_WHILE_RECEIVING). Off by default: a study cancelled "
        "or left to expire after that keeps the instances the PACS already stored",
    )
    # --- jobs (relaypacs.jobs) ---
    worker_concurrency: int = Field(default=4, ge=1, le=64, description="Jobs run at once")
    job_poll_seconds: float = Field(default=1.0, gt=0, description="Look for due jobs this often")
    job_lease_seconds: float = Field(
        default=60.0, gt=0, description="A dead worker's job is taken over after this"
    )
    job_retry_base_seconds: float = Field(default=10.0, gt=0, description="First retry delay")
    job_retry_cap_seconds: float = Field(default=900.0, gt=0, description="Longest retry delay")
    job_max_age_hours: float = Field(
        default=168.0, gt=0, description="Retry a job this long, then mark it failed"
    )
    job_max_abandoned: int = Field(
        default=3, ge=1, description="A job whose worker died this often is marked dead"
    )
    job_retention_days: float = Field(default=14.0, gt=0, description="Keep succeeded jobs")
    job_shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    job_modules: list[str] = Field(
        default_factory=list, description="Extra modules with job handlers to import"
    )
    job_periodic_seconds: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="How often a periodic job runs instead of its own period, e.g. "
        '{"reports.sync": 15} (JSON; seconds)',
    )
    # --- PACS destinations (relaypacs.pacs) ---
    pacs_url: str | None = Field(
        default=None, description="DICOMweb server; none: the local archive under DATA_DIR"
    )
    pacs_kind: str = Field(default="generic", description="orthanc | dcm4chee | generic")
    pacs_name: str = Field(default="pacs", description="Name in logs, metrics and /readyz")
    pacs_aet: str | None = Field(
        default=None, description="dcm4chee-arc AE title, when PACS_URL is the server's URL"
    )
    pacs_username: str | None = None
    pacs_password: str | None = Field(default=None, repr=False)
    pacs_token: str | None = Field(default=None, repr=False, description="Bearer token")
    pacs_ca_file: Path | None = Field(default=None, description="CA bundle for https")
    pacs_destinations_file: Path | None = Field(
        default=None, description="JSON list of further destinations"
    )
    pacs_archive_dir: Path | None = Field(default=None, description="Default: DATA_DIR/archive")
    pacs_timeout_seconds: float = Field(default=300.0, gt=0)
    pacs_confirm_with_qido: bool = Field(
        default=True, description="Count the study with QIDO-RS before `delivered`"
    )
    forward_max_age_hours: float | None = Field(
        default=None,
        gt=0,
        description="Retry a study's delivery this long, then mark it failed "
        "(default: JOB_MAX_AGE_HOURS)",
    )
    pacs_breaker_failures: int = Field(default=5, ge=1)
    pacs_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    stow_max_batch_bytes: int = Field(default=64 * MIB, ge=MIB)
    stow_max_batch_instances: int = Field(default=50, ge=1)
    stow_parallel_requests: int = Field(default=4, ge=1, le=32)
    # --- operations (relaypacs.operations): retention (PRD C-BIZ-01), 0 = keep forever ---
    retention_delivered_study_days: int = Field(
        default=7, ge=0, description="Delete a delivered study's stored files this long after"
    )
    retention_expired_session_days: int = Field(
        default=30, ge=0, description="Delete sign-in sessions this long after they ended"
    )
    retention_notification_days: int = Field(
        default=180, ge=0, description="Delete notifications (read or not) this old"
    )
    retention_audit_days: int = Field(
        default=0,
        ge=0,
        description="Delete audit records this old; 0 keeps them forever, else at least "
        f"{AUDIT_MINIMUM_RETENTION_DAYS} days (six years; the database refuses younger deletes)",
    )
    worker_metrics_port: int | None = Field(
        default=None, description="`relaypacs worker` serves /metrics on this port"
    )
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104  (inside a container network)
    # --- reports, notifications, analytics (relaypacs.reports / .notifications / .analytics) ---
    report_sync_seconds: float = Field(
        default=300.0, ge=1, description="Ask the PACS for each unfinished report this often"
    )
    report_sync_max_days: float = Field(
        default=30.0, gt=0, description="Stop asking the PACS for a report after this long"
    )
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, description="SSE keep-alive comment")
    sse_queue_size: int = Field(
        default=256, ge=1, description="Events buffered per stream; a slower client is dropped"
    )
    sse_send_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A stream whose client takes longer to read is closed"
    )
    sse_max_streams_per_user: int = Field(default=5, ge=1, description="Open streams per user")
    sse_event_retention_hours: float = Field(
        default=24.0, gt=0, description="Keep live events this long for Last-Event-ID replay"
    )
    analytics_rate_limit: str = Field(default="10/minute", description="Analytics reads per user")
    analytics_cache_seconds: float = Field(
        default=30.0, ge=0, description="Reuse computed figures this long per process (0: off)"
    )

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'relaypacs.db').resolve()}"

    @cached_property
    def resolved_jwt_key_file(self) -> Path:
        return self.jwt_private_key_file or self.data_dir / "keys" / "jwt-signing.pem"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @model_validator(mode="after")
    def _audit_retention_floor(self) -> Settings:
        if 0 < self.retention_audit_days < AUDIT_MINIMUM_RETENTION_DAYS:
            raise ValueError(
                f"RELAYPACS_RETENTION_AUDIT_DAYS must be 0 (keep forever) or at least "
                f"{AUDIT_MINIMUM_RETENTION_DAYS} (six years)"
            )
        return self

    @model_validator(mode="after")
    def _forwarding_needs_early_assembly(self) -> Settings:
        if self.forward_while_receiving and self.assemble_while_receiving is False:
            raise ValueError(
                "RELAYPACS_FORWARD_WHILE_RECEIVING needs the files assembled while they arrive: "
                "it cannot be combined with RELAYPACS_ASSEMBLE_WHILE_RECEIVING=false"
            )
        return self

    @model_validator(mode="after")
    def _reject_unsafe_production(self) -> Settings:
        if self.env is not Environment.production:
            return self
        problems: list[str] = []
        if self.jwt_private_key_file is None or not self.jwt_private_key_file.exists():
            problems.append(
                "RELAYPACS_JWT_PRIVATE_KEY_FILE must name an existing key "
                "(generated keys are for development only)"
            )
        if "*" in self.cors_origins:
            problems.append("RELAYPACS_CORS_ORIGINS must not contain '*'")
        if not self.public_url or not self.public_url.startswith("https://"):
            problems.append("RELAYPACS_PUBLIC_URL must be an https:// URL")
        if "*" in self.trusted_hosts:
            problems.append("RELAYPACS_TRUSTED_HOSTS must list the gateway's host names")
        if problems:
            raise UnsafeConfigurationError(
                "refusing to start in production: " + "; ".join(problems)
            )
        return self
