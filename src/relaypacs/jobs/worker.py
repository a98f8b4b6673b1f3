"""The job worker: claims due jobs, runs their handlers, records the outcome.

One :class:`Worker` runs up to ``concurrency`` jobs at once in one event loop. Any number of
workers (in ``serve`` processes and ``relaypacs worker`` processes) can share one database:

- a claimed job is leased to its worker (``RELAYPACS_JOB_LEASE_SECONDS``); a heartbeat renews
  the leases of running jobs every third of that. A worker that cannot renew a lease (the row
  was taken over, or the database is unreachable until the lease would have expired) cancels
  that handler, so that two workers never run one job at the same time;
- the jobs of a worker that died are claimed again once their lease has expired;
- a stopping worker gives its unfinished jobs back untouched after a grace period;
- each periodic kind is enqueued once per period across all workers (``job_schedule`` row
  update, plus a per-period dedupe key).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.jobs import repository, wakeup
from relaypacs.jobs.exceptions import PermanentFailure, RetryLater
from relaypacs.jobs.models import JobState
from relaypacs.jobs.registry import (
    HandlerSpec,
    JobContext,
    JobRegistry,
    default_registry,
    load_task_modules,
)
from relaypacs.jobs.repository import ClaimedJob
from relaypacs.jobs.service import enqueue
from relaypacs.logging import configure_logging
from relaypacs.operations.metrics import record_job_finished
from relaypacs.resources import Resources, open_resources

log = structlog.get_logger(__name__)

_random = secrets.SystemRandom()


@dataclass
class _Running:
    job: ClaimedJob
    task: asyncio.Task[None]
    # Monotonic time until which this worker surely holds the lease.
    lease_deadline: float
    lost: bool = False
    releasing: bool = False


@dataclass
class _Schedule:
    every: timedelta
    next_run_at: datetime | None = None


@dataclass
class _Counters:
    """What this worker did (for tests and the shut-down log line)."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0
    released: int = 0
    periodic_enqueued: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def retry_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential back-off with "equal jitter": between half and all of ``base·2^(attempt-1)``.

    The jitter spreads the retries of jobs that failed together (a PACS outage) so they do not
    return as one burst; keeping half the delay fixed keeps the back-off meaningful.
    """
    exponent = min(max(attempt - 1, 0), 62)
    delay = min(cap, base * 2.0**exponent)
    return delay / 2 + _random.uniform(0, delay / 2)


def worker_runs_in_process(settings: Settings) -> bool:
    if settings.run_worker_in_process is not None:
        return settings.run_worker_in_process
    return settings.is_sqlite


class Worker:
    def __init__(
        self,
        resources: Resources,
        *,
        concurrency: int | None = None,
        registry: JobRegistry | None = None,
        name: str | None = None,
    ) -> None:
        self.resources = resources
        self.settings = resources.settings
        self.registry = registry if registry is not None else default_registry
        self.concurrency = concurrency or self.settings.worker_concurrency
        # Unique per worker instance: the lease owner that fences every write to a claimed job.
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.counters = _Counters()
        # Called with (job, outcome) after each recorded outcome: succeeded, retry, failed,
        # released, lost. For tests and embedding; must not block.
        self.listeners: list[Callable[[ClaimedJob, str], None]] = []
        self._running: dict[uuid.UUID, _Running] = {}
        self._schedules: dict[str, _Schedule] = {}
        self._schedules_ready = False
        self._stopping = False
        self._wakeup: wakeup.Wakeup | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._idle = asyncio.Event()

    # --- life cycle ---

    def start(self) -> None:
        """Run in the background of the current event loop (``serve``, tests)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"job-worker {self.name}")

    async def started(self) -> None:
        """Wait until the worker listens for wake-ups (jobs committed after this wake it)."""
        await self._started.wait()

    async def idle(self) -> None:
        """Wait until the worker has claimed what was due and sleeps until the next poll."""
        await self._idle.wait()

    def request_stop(self) -> None:
        self._stopping = True
        self._kick()

    async def stop(self) -> None:
        self.request_stop()
        if self._task is not None:
            await self._task

    async def run(self) -> None:
        engine = self.resources.engine
        self._wakeup = wakeup.Wakeup()
        wakeup.subscribe(engine, self._wakeup)
        self._started.set()
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"job-heartbeat {self.name}")
        watchdog = asyncio.create_task(self._watch_leases(), name=f"job-leases {self.name}")
        log.info("job_worker_started", worker=self.name, concurrency=self.concurrency)
        try:
            await self._loop()
        finally:
            wakeup.unsubscribe(engine, self._wakeup)
            await self._drain()
            for task in (heartbeat, watchdog):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            log.info("job_worker_stopped", worker=self.name, claimed=self.counters.claimed)

    # --- the loop ---

    def _kick(self) -> None:
        if self._wakeup is not None:
            self._wakeup.notify()

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while not self._stopping:
            self._wakeup.event.clear()
            free = self.concurrency - len(self._running)
            claimed = 0
            try:
                await self._enqueue_due_periodic()
                if free > 0:
                    claimed = await self._claim(free)
            except Exception:
                # The database may be briefly unreachable: try again at the next poll.
                log.exception("job_claim_failed", worker=self.name)
            if free > 0 and claimed == free:
                continue  # more may be due right now
            self._idle.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.event.wait(), self._wait_seconds())
            self._idle.clear()

    def _wait_seconds(self) -> float:
        wait = self.settings.job_poll_seconds
        now = utcnow()
        for schedule in self._schedules.values():
            if schedule.next_run_at is not None:
                wait = min(wait, (schedule.next_run_at - now).total_seconds())
        return max(wait, 0.005)

    async def _claim(self, free: int) -> int:
        lease = self.settings.job_lease_seconds
        sessionmaker = self.resources.sessionmaker
        async with sessionmaker() as session:
            # The lease is counted from when the claim can run: time spent waiting for a pooled
            # connection (or SQLite's write lock) would otherwise be taken from the job.
            await session.connection()
            started = time.monotonic()
            now = utcnow()
            buried = await repository.bury_abandoned(
                session, now=now, max_abandoned=self.settings.job_max_abandoned
            )
            jobs = await repository.claim_jobs(
                session,
                kinds=self.registry.kinds,
                owner=self.name,
                now=now,
                lease_expires_at=now + timedelta(seconds=lease),
                limit=free,
            )
            await session.commit()
        for job_id, kind in buried:
            log.error("job_dead", job_id=str(job_id), job_kind=kind)
            record_job_finished(kind, "dead")
        for job in jobs:
            self._start_job(job, lease_deadline=started + lease)
        return len(jobs)

    def _start_job(self, job: ClaimedJob, *, lease_deadline: float) -> None:
        self.counters.claimed += 1
        self.counters.by_kind[job.kind] = self.counters.by_kind.get(job.kind, 0) + 1
        task = asyncio.create_task(self._execute(job), name=f"job {job.kind} {job.id}")
        self._running[job.id] = _Running(job=job, task=task, lease_deadline=lease_deadline)

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(job.id, None)
            self._kick()

        task.add_done_callback(done)

    # --- one job ---

    async def _execute(self, job: ClaimedJob) -> None:
        spec = self.registry.handlers[job.kind]
        structlog.contextvars.bind_contextvars(
            job_id=str(job.id), job_kind=job.kind, attempt=job.attempt
        )
        context = JobContext(
            resources=self.resources,
            sessionmaker=self.resources.sessionmaker,
            settings=self.settings,
            job_id=job.id,
            kind=job.kind,
            attempt=job.attempt,
        )
        try:
            await spec.handler(context, dict(job.payload))
        except asyncio.CancelledError:
            running = self._running.get(job.id)
            if running is not None and running.lost:
                self.counters.lost += 1
                log.warning("job_lease_lost")
                self._tell(job, "lost")
                return
            await self._release(job)
            raise
        except PermanentFailure as exc:
            await self._fail(job, exc.reason)
        except RetryLater as exc:
            await self._retry(job, spec, exc.reason, exc.delay)
        except Exception as exc:
            # The message may quote data it choked on: only the type goes to the database.
            log.exception("job_error", error_type=type(exc).__name__)
            await self._retry(job, spec, f"{type(exc).__name__} (see the worker log)", None)
        else:
            if await self._record(
                repository.finish_job,
                job,
                state=JobState.succeeded,
            ):
                self.counters.succeeded += 1
                record_job_finished(job.kind, "succeeded")
                log.info("job_succeeded")
                self._tell(job, "succeeded")

    async def _retry(
        self, job: ClaimedJob, spec: HandlerSpec, reason: str, delay: float | None
    ) -> None:
        now = utcnow()
        if delay is None:
            delay = retry_delay(
                job.attempt,
                base=self.settings.job_retry_base_seconds,
                cap=self.settings.job_retry_cap_seconds,
            )
        run_at = now + timedelta(seconds=max(delay, 0.0))
        max_age = spec.max_age or timedelta(hours=self.settings.job_max_age_hours)
        out_of_attempts = job.max_attempts is not None and job.attempt >= job.max_attempts
        if out_of_attempts or run_at > job.queued_at + max_age:
            await self._fail(job, f"gave up after {job.attempt} attempts: {reason}")
            return
        if await self._record(repository.reschedule_job, job, run_at=run_at, error=reason):
            self.counters.retried += 1
            record_job_finished(job.kind, "retry")
            log.warning("job_retry_scheduled", delay_seconds=round(delay, 3), reason=reason)
            self._tell(job, "retry")
            if delay < self.settings.job_poll_seconds:
                asyncio.get_running_loop().call_later(delay, self._kick)

    async def _fail(self, job: ClaimedJob, reason: str) -> None:
        if await self._record(repository.finish_job, job, state=JobState.failed, error=reason):
            self.counters.failed += 1
            record_job_finished(job.kind, "failed")
            log.error("job_failed", reason=reason)
            self._tell(job, "failed")

    async def _release(self, job: ClaimedJob) -> None:
        if await self._record(repository.release_job, job):
            self.counters.released += 1
            log.info("job_released")
            self._tell(job, "released")

    def _tell(self, job: ClaimedJob, outcome: str) -> None:
        for listener in self.listeners:
            listener(job, outcome)

    async def _record(
        self, write: Callable[..., Awaitable[bool]], job: ClaimedJob, **values: object
    ) -> bool:
        """One fenced write about ``job`` in its own transaction; False if the lease was lost.

        When the database cannot be reached the outcome is lost with it; the lease then
        expires and the job runs again, which handlers are written to tolerate.
        """
        try:
            async with self.resources.sessionmaker() as session:
                written = await write(
                    session, job.id, owner=self.name, attempt=job.attempt, now=utcnow(), **values
                )
                await session.commit()
        except Exception:
            log.exception("job_outcome_not_recorded")
            return False
        if not written:
            log.warning("job_outcome_discarded_lease_lost")
        return bool(written)

    # --- leases ---

    async def _heartbeat(self) -> None:
        lease = self.settings.job_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            if self._running:
                try:
                    # A renewal stuck behind a lock must not hold up the next one.
                    await asyncio.wait_for(self._renew_leases(lease), timeout=lease / 3)
                except TimeoutError:
                    log.warning("job_lease_renewal_slow", worker=self.name)

    async def _watch_leases(self) -> None:
        """Stop handlers whose lease this worker could not renew, before it expires.

        Independent of the heartbeat, so that a renewal blocked on the database cannot keep a
        handler running past the moment another worker may take its job over.
        """
        lease = self.settings.job_lease_seconds
        while True:
            await asyncio.sleep(lease / 10)
            self._cancel_expired_leases(margin=lease / 10)

    async def _renew_leases(self, lease: float) -> None:
        leases = [(job_id, running.job.attempt) for job_id, running in self._running.items()]
        started = time.monotonic()
        now = utcnow()
        try:
            async with self.resources.sessionmaker() as session:
                held = await repository.renew_leases(
                    session,
                    leases,
                    owner=self.name,
                    now=now,
                    lease_expires_at=now + timedelta(seconds=lease),
                )
                await session.commit()
        except Exception:
            log.exception("job_lease_renewal_failed", worker=self.name)
            return
        for job_id, _ in leases:
            running = self._running.get(job_id)
            if running is None:
                continue
            if job_id in held:
                running.lease_deadline = started + lease
            else:
                self._lose(running)

    def _cancel_expired_leases(self, margin: float) -> None:
        now = time.monotonic()
        for running in list(self._running.values()):
            if running.lease_deadline - margin <= now:
                self._lose(running)

    def _lose(self, running: _Running) -> None:
        if not running.lost and not running.task.done():
            running.lost = True
            running.task.cancel()

    async def _drain(self) -> None:
        tasks = [running.task for running in self._running.values()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.job_shutdown_grace_seconds)
        for running in list(self._running.values()):
            if running.task in pending:
                running.releasing = True
                running.task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- periodic jobs ---

    async def _enqueue_due_periodic(self) -> None:
        if not self.registry.periodic:
            return
        now = utcnow()
        if not self._schedules_ready:
            await self._load_schedules(now)
        due = [
            kind
            for kind, schedule in self._schedules.items()
            if schedule.next_run_at is not None and schedule.next_run_at <= now
        ]
        if not due:
            return
        async with self.resources.sessionmaker() as session:
            for kind in due:
                every = self._schedules[kind].every
                period = int(now.timestamp() // every.total_seconds())
                next_run_at = datetime.fromtimestamp((period + 1) * every.total_seconds(), UTC)
                if await repository.advance_schedule(
                    session, kind, now=now, next_run_at=next_run_at
                ):
                    await enqueue(
                        session,
                        kind,
                        {"period": period},
                        dedupe_key=f"periodic:{kind}:{period}",
                    )
                    self.counters.periodic_enqueued += 1
            fresh = await repository.get_schedules(session, due)
            await session.commit()
        for kind, next_run_at in fresh.items():
            self._schedules[kind].next_run_at = next_run_at

    async def _load_schedules(self, now: datetime) -> None:
        overrides = self.settings.job_periodic_seconds
        self._schedules = {
            kind: _Schedule(
                every=timedelta(seconds=overrides[kind]) if kind in overrides else every
            )
            for kind, every in self.registry.periodic.items()
        }
        async with self.resources.sessionmaker() as session:
            await repository.ensure_schedules(session, dict.fromkeys(self._schedules, now), now=now)
            stored = await repository.get_schedules(session, list(self._schedules))
            await session.commit()
        for kind, next_run_at in stored.items():
            self._schedules[kind].next_run_at = next_run_at
        self._schedules_ready = True


async def start_in_process_worker(resources: Resources) -> Worker | None:
    """Start the worker inside ``serve`` when configured; it stops with ``resources``."""
    if not worker_runs_in_process(resources.settings):
        return None
    load_task_modules(resources.settings.job_modules)
    worker = Worker(resources)
    worker.start()
    await worker.started()
    resources.exit_stack.push_async_callback(worker.stop)
    return worker


def run_worker_process(settings: Settings, *, concurrency: int | None = None) -> None:
    """``relaypacs worker``: run jobs until SIGTERM or SIGINT, then stop gracefully."""
    configure_logging(settings.log_level)
    asyncio.run(_run_worker_process(settings, concurrency))


async def _run_worker_process(settings: Settings, concurrency: int | None) -> None:
    modules = load_task_modules(settings.job_modules)
    async with open_resources(settings) as resources:
        worker = Worker(resources, concurrency=concurrency)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.request_stop)
        log.info("job_worker_process", kinds=worker.registry.kinds, modules=modules)
        await worker.run()
