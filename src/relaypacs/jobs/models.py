"""The durable job queue's tables: ``job`` (one row per unit of background work) and
``job_schedule`` (when each periodic kind is next due, shared by every worker process)."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Enum, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from relaypacs.db.base import Base, IdMixin, TimestampMixin, utcnow


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    # Retries exhausted (max age or max attempts) or a permanent failure; an admin can requeue.
    failed = "failed"
    # Its workers kept dying while running it (lease expired too often): likely a poison job.
    dead = "dead"


UNFINISHED_STATES = (JobState.queued, JobState.running)
REQUEUEABLE_STATES = (JobState.failed, JobState.dead)


class JobPriority(IntEnum):
    """Higher runs first. Service levels map onto these; any int in between is allowed."""

    routine = 0
    urgent = 50
    stat = 100
    emergency = 200


# Literal SQL, not bound parameters: PostgreSQL matches ON CONFLICT to the partial index by
# this predicate, which it cannot do with parameters once it switches to a generic plan.
UNFINISHED_SQL = "state IN ('queued', 'running')"


def _state_type() -> Enum:
    return Enum(
        JobState,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda states: [s.value for s in states],
    )


class Job(IdMixin, TimestampMixin, Base):
    __tablename__ = "job"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'dead')", name="state"
        ),
        # The claim query: unfinished jobs by priority, then due time.
        Index("job_claim_idx", "state", text("priority DESC"), "run_at"),
        # "Unique among unfinished jobs": a finished job never blocks a new one with its key.
        Index(
            "job_dedupe_key_unfinished_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text(UNFINISHED_SQL),
            sqlite_where=text(UNFINISHED_SQL),
        ),
        Index("job_finished_at_idx", "finished_at"),
    )

    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(default=0)
    state: Mapped[JobState] = mapped_column(_state_type(), default=JobState.queued)
    # Attempts started so far; also the fencing token of the current lease.
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int | None] = mapped_column(default=None)
    # How many times a worker's lease on this job expired while running it (worker died).
    abandoned_count: Mapped[int] = mapped_column(default=0)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Start of the current retry budget (the maximum age counts from here): the enqueue, or the
    # admin's last requeue.
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Reasons are written by our own code and never hold patient data.
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class JobSchedule(Base):
    """When a periodic kind is next due; the row lock makes one worker win each period."""

    __tablename__ = "job_schedule"

    kind: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_run_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
