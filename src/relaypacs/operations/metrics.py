"""Prometheus metrics: the HTTP layer plus the domain metrics other domains increment.

Labels are route templates, states, service levels and configured destination names: small fixed
sets, never ids, file names or anything taken from a study. Domains call the ``record_*`` helpers
(or use the metric objects directly) at the moment the event becomes true, i.e. after the commit
that made it durable, so that a rolled-back request never counts.

Several worker processes (``relaypacs serve --workers N``) each hold their own values; with
``PROMETHEUS_MULTIPROC_DIR`` set (before start), every process writes its samples to that
directory and ``/metrics`` returns their sum (see :func:`render_metrics`). Values that are a view
of the database (queue depth, oldest job age) are not kept per process: they are read at scrape
time by :mod:`relaypacs.operations.service`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.multiprocess import mark_process_dead as _mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if _samples_dir := os.environ.get(MULTIPROC_ENV):
    # Every metric below opens its file in this directory as it is created.
    Path(_samples_dir).mkdir(parents=True, exist_ok=True)

# prometheus_client ships these without annotations.
mark_process_dead = cast(Callable[[int, str], None], _mark_process_dead)
_multiprocess_collector = cast(Callable[..., Collector], MultiProcessCollector)

# --- HTTP (per route template; the middleware records these) ---
HTTP_REQUESTS = Counter(
    "relaypacs_http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "relaypacs_http_request_duration_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# --- uploads ---
UPLOADS_STARTED = Counter(
    "relaypacs_uploads_started_total",
    "Upload sessions created, by service level",
    ["service_level"],
)
CHUNKS_RECEIVED = Counter(
    "relaypacs_chunks_received_total",
    "Chunks newly stored (201); a repeated identical chunk (200) is not counted again",
)
CHUNK_BYTES_RECEIVED = Counter(
    "relaypacs_chunk_bytes_received_total",
    "Bytes of newly stored chunks",
)
CHECKSUM_FAILURES = Counter(
    "relaypacs_chunk_checksum_failures_total",
    "Chunks refused because their bytes did not match the client's Content-MD5",
)
UPLOADS_FINISHED = Counter(
    "relaypacs_uploads_finished_total",
    "Uploads that reached a final state, by that state",
    ["state"],
)
UPLOADS_REQUEUED = Counter(
    "relaypacs_uploads_requeued_total",
    # The success rate subtracts these: such a failure was not the upload's outcome after all.
    "Failed uploads an administrator sent on again (each was counted as failed before)",
)
UPLOAD_DELIVERY_SECONDS = Histogram(
    "relaypacs_upload_delivery_seconds",
    "Time from upload session creation to the PACS confirming every instance, by service level",
    ["service_level"],
    # From a STAT CT over 4G (minutes) to an overnight batch over satellite (hours).
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)

# --- PACS forwarding ---
STOW_DURATION = Histogram(
    "relaypacs_stow_request_duration_seconds",
    "STOW-RS request latency by destination and outcome",
    ["destination", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
STOW_INSTANCES = Counter(
    "relaypacs_stow_instances_total",
    "Instances sent with STOW-RS by destination and outcome (stored, refused, failed)",
    ["destination", "outcome"],
)
PACS_UP = Gauge(
    "relaypacs_pacs_up",
    "1 when the destination answered its last check or request, 0 when it did not",
    ["destination"],
    multiprocess_mode="mostrecent",
)
PACS_LAST_CHECK = Gauge(
    "relaypacs_pacs_last_check_timestamp_seconds",
    "Unix time of the last reachability check or request to the destination",
    ["destination"],
    multiprocess_mode="max",
)

# --- notifications ---
SSE_CONNECTIONS = Gauge(
    "relaypacs_sse_connections",
    "Open server-sent event streams",
    multiprocess_mode="livesum",
)

# --- jobs and retention ---
JOBS_FINISHED = Counter(
    "relaypacs_jobs_finished_total",
    "Jobs that finished an attempt, by kind and outcome (succeeded, retry, failed, dead)",
    ["kind", "outcome"],
)
RETENTION_DELETED = Counter(
    "relaypacs_retention_deleted_total",
    "Records removed by the retention job, by kind of record",
    ["record"],
)

# The final states of DESIGN.md's lifecycle; anything else would be a bug, not a new label.
FINAL_UPLOAD_STATES = frozenset(
    {"delivered", "partially_delivered", "rejected", "failed", "cancelled", "expired"}
)
STOW_OUTCOMES = frozenset({"stored", "refused", "failed"})
_SAFE_LABEL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _label(value: str | None) -> str:
    """Metric labels must stay a small fixed set: anything unexpected collapses to ``other``."""
    if value is None:
        return "unknown"
    lowered = value.lower()
    return lowered if _SAFE_LABEL.match(lowered) else "other"


def record_upload_started(service_level: str | None) -> None:
    UPLOADS_STARTED.labels(service_level=_label(service_level)).inc()


def record_chunk_stored(size: int) -> None:
    CHUNKS_RECEIVED.inc()
    CHUNK_BYTES_RECEIVED.inc(size)


def record_checksum_failure() -> None:
    CHECKSUM_FAILURES.inc()


def record_upload_requeued() -> None:
    UPLOADS_REQUEUED.inc()


def record_upload_finished(
    state: str,
    *,
    service_level: str | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> None:
    """Count an upload reaching ``state``; a delivery also observes its time since creation."""
    if state not in FINAL_UPLOAD_STATES:
        raise ValueError(f"not a final upload state: {state!r}")
    UPLOADS_FINISHED.labels(state=state).inc()
    if state in {"delivered", "partially_delivered"} and started_at is not None:
        end = finished_at or datetime.now(UTC)
        UPLOAD_DELIVERY_SECONDS.labels(service_level=_label(service_level)).observe(
            max(0.0, (end - started_at).total_seconds())
        )


def observe_stow(
    destination: str,
    seconds: float,
    *,
    stored: int = 0,
    refused: int = 0,
    failed: int = 0,
) -> None:
    """One STOW-RS request: its latency, and its instances by outcome.

    The request's outcome label is ``failed`` when the request itself failed (no answer, 5xx),
    ``refused`` when the PACS answered but refused some instance, else ``stored``.
    """
    name = _label(destination)
    outcome = "failed" if failed else "refused" if refused else "stored"
    STOW_DURATION.labels(destination=name, outcome=outcome).observe(seconds)
    for label, count in (("stored", stored), ("refused", refused), ("failed", failed)):
        if count:
            STOW_INSTANCES.labels(destination=name, outcome=label).inc(count)
    set_pacs_reachable(destination, reachable=not failed or bool(stored or refused))


def set_pacs_reachable(destination: str, *, reachable: bool) -> None:
    name = _label(destination)
    PACS_UP.labels(destination=name).set(1 if reachable else 0)
    PACS_LAST_CHECK.labels(destination=name).set(datetime.now(UTC).timestamp())


def record_job_finished(kind: str, outcome: str) -> None:
    JOBS_FINISHED.labels(kind=_label(kind), outcome=_label(outcome)).inc()


@contextmanager
def sse_connection() -> Iterator[None]:
    """Wrap the lifetime of one SSE stream."""
    SSE_CONNECTIONS.inc()
    try:
        yield
    finally:
        SSE_CONNECTIONS.dec()


# --- exposition ---


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiprocess_dir() -> None:
    """Create the directory and drop the files of a previous run (call once, before workers start).

    Counters from an earlier run would otherwise be added to this run's and dead processes'
    live gauges would linger.
    """
    directory = multiprocess_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    own = os.getpid()
    for stale in directory.glob("*.db"):
        # This process already holds its own files open (metrics are created at import):
        # deleting them would send its samples to unlinked files that no scrape reads.
        if _pid_of(stale) != own:
            stale.unlink(missing_ok=True)


def _pid_of(file: Path) -> int | None:
    match = re.search(r"_(\d+)\.db$", file.name)
    return int(match.group(1)) if match else None


def forget_process(pid: int | None = None) -> None:
    """Remove a finished process's live gauges (e.g. its open SSE streams) from the sum."""
    directory = multiprocess_dir()
    if directory is not None and directory.is_dir():
        mark_process_dead(pid if pid is not None else os.getpid(), str(directory))


def _forget_killed_processes(directory: Path) -> None:
    # A worker killed with SIGKILL never runs its shut-down: its live gauges stay on disk.
    pids = {pid for file in directory.glob("gauge_live*_*.db") if (pid := _pid_of(file))}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, str(directory))
        except PermissionError:
            continue


class _Snapshot(Collector):
    """Metric families computed elsewhere (at scrape time), served through a registry."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


def _exposition_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory is not None and directory.is_dir():
        _forget_killed_processes(directory)
        _multiprocess_collector(registry, path=str(directory))
    else:
        registry.register(_Forward(REGISTRY))
    return registry


def start_worker_metrics_server(port: int | None, host: str = "0.0.0.0") -> bool:  # noqa: S104
    """``relaypacs worker`` has no API: serve its /metrics (STOW, deliveries, jobs) on ``port``.

    Values read from the database at scrape time come from the gateways' /metrics only.
    """
    if port is None:
        return False
    prepare_multiprocess_dir()
    start_http_server(port, addr=host, registry=_LazyExposition())
    return True


class _LazyExposition(CollectorRegistry):
    """Builds the (multiprocess-aware) registry on each scrape, like /metrics does."""

    def __init__(self) -> None:
        super().__init__(auto_describe=False)

    def collect(self) -> Iterator[Metric]:
        yield from _exposition_registry().collect()


def render_metrics(scrape_time: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text exposition: this process (or all workers) plus scrape-time families.

    Blocking (reads the multiprocess files): call it in a thread from async code.
    """
    registry = _exposition_registry()
    registry.register(_Snapshot(scrape_time))
    return generate_latest(registry)
