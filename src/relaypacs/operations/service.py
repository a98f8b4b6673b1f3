"""Metrics read at scrape time: views of shared state rather than of one process.

Queue depth, the age of the oldest waiting job, whether each dependency answers and the free
space of the data volume are the same whichever worker process answers the scrape, so they are
computed on each scrape instead of being kept in (and summed over) every process. Several
gateways report the same database values: dashboards and alerts combine them with ``max``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import anyio
import structlog
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from relaypacs import __version__
from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.jobs import service as jobs_service
from relaypacs.jobs.models import JobState
from relaypacs.operations import repository
from relaypacs.resources import Resources
from relaypacs.uploads.models import UploadState

log = structlog.get_logger(__name__)

# A slow database must not make the scrape time out and hide every other metric.
QUEUE_QUERY_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class QueueState:
    """The durable queue and the delivery backlog, as the database holds them now."""

    #: Jobs by (kind, state).
    depth: dict[tuple[str, str], int]
    oldest_due_job_age_seconds: float
    #: Uploads waiting for (queued) or being sent to (forwarding) the PACS: state, count, since.
    awaiting_delivery: list[tuple[UploadState, int, datetime | None]]

    def jobs_in(self, state: JobState) -> int:
        return sum(count for (_, in_state), count in self.depth.items() if in_state == state.value)

    def studies_awaiting_delivery(self) -> int:
        return sum(count for _, count, _ in self.awaiting_delivery)


async def read_queue(resources: Resources) -> QueueState | None:
    """The queue's state for metrics and readiness; ``None`` when the database cannot say in
    time (its being down is reported by the readiness check itself)."""
    try:
        async with asyncio.timeout(QUEUE_QUERY_TIMEOUT_SECONDS):
            async with resources.sessionmaker() as session:
                depth = await jobs_service.queue_depth(session)
                age = await jobs_service.oldest_due_job_age_seconds(session)
                awaiting = await repository.uploads_awaiting_delivery(session)
    except Exception as exc:
        log.warning("queue_state_unavailable", error=type(exc).__name__)
        return None
    return QueueState(depth, age, awaiting)


@dataclass(frozen=True)
class VolumeUsage:
    volume: str
    free_bytes: int
    size_bytes: int


async def collect_scrape_time_metrics(resources: Resources) -> list[Metric]:
    readiness, queue, volumes = await asyncio.gather(
        resources.readiness.run(),
        _queue_metrics(resources),
        anyio.to_thread.run_sync(volume_usage, resources.settings),
    )
    families: list[Metric] = []
    build = GaugeMetricFamily(
        "relaypacs_build_info", "The running RelayPACS version", labels=["version"]
    )
    build.add_metric([__version__], 1)
    families.append(build)

    dependency_up = GaugeMetricFamily(
        "relaypacs_dependency_up",
        "1 when the dependency (database, chunk store, each PACS...) answered its readiness check "
        "during this scrape",
        labels=["dependency"],
    )
    for name, result in sorted(readiness.items()):
        dependency_up.add_metric([name], 1 if result == "ok" else 0)
    families.append(dependency_up)

    families.extend(queue)

    free = GaugeMetricFamily(
        "relaypacs_disk_free_bytes",
        "Bytes available to the gateway on the volume holding its data",
        labels=["volume"],
    )
    size = GaugeMetricFamily(
        "relaypacs_disk_size_bytes",
        "Size of the volume holding the gateway's data",
        labels=["volume"],
    )
    for usage in volumes:
        free.add_metric([usage.volume], usage.free_bytes)
        size.add_metric([usage.volume], usage.size_bytes)
    families.extend([free, size])
    return families


async def _queue_metrics(resources: Resources) -> list[Metric]:
    queue = await read_queue(resources)
    if queue is None:
        return []
    jobs = GaugeMetricFamily(
        "relaypacs_jobs", "Jobs in the durable queue by kind and state", labels=["kind", "state"]
    )
    oldest = GaugeMetricFamily(
        "relaypacs_job_oldest_due_age_seconds",
        "How long the longest-waiting due job has waited (0 when none waits)",
    )
    for (kind, state), count in sorted(queue.depth.items()):
        jobs.add_metric([kind, state], count)
    oldest.add_metric([], queue.oldest_due_job_age_seconds)
    return [jobs, oldest, *_delivery_backlog(resources, queue.awaiting_delivery)]


def _delivery_backlog(
    resources: Resources, awaiting: list[tuple[UploadState, int, datetime | None]]
) -> list[Metric]:
    # Every study goes to the primary destination, so its backlog is the uploads not yet there.
    destination = resources.pacs.primary.name
    studies = GaugeMetricFamily(
        "relaypacs_destination_studies",
        "Studies waiting for (queued) or being sent to (forwarding) a PACS destination",
        labels=["destination", "state"],
    )
    oldest = GaugeMetricFamily(
        "relaypacs_destination_oldest_study_age_seconds",
        "How long the longest-waiting study for a destination has waited (0 when none waits)",
        labels=["destination"],
    )
    now = utcnow()
    counts = {state: (count, since) for state, count, since in awaiting}
    for state in (UploadState.queued, UploadState.forwarding):
        studies.add_metric([destination, state.value], counts.get(state, (0, None))[0])
    waits = [now - since for _, since in counts.values() if since is not None]
    oldest.add_metric([destination], max(waits).total_seconds() if waits else 0.0)
    return [studies, oldest]


def volume_usage(settings: Settings) -> list[VolumeUsage]:
    """Free and total bytes of the data directory and, when elsewhere, the chunk directory."""
    paths = {"data": settings.data_dir}
    chunks = _local_storage_path(settings.storage_url)
    if chunks is not None:
        paths["chunks"] = chunks
    seen_devices: set[int] = set()
    usages = []
    for volume, path in paths.items():
        try:
            device = path.stat().st_dev
            stats = os.statvfs(path)
        except OSError:
            continue
        if device in seen_devices:
            continue
        seen_devices.add(device)
        usages.append(
            VolumeUsage(
                volume=volume,
                free_bytes=stats.f_bavail * stats.f_frsize,
                size_bytes=stats.f_blocks * stats.f_frsize,
            )
        )
    return usages


def _local_storage_path(storage_url: str | None) -> Path | None:
    if not storage_url or not storage_url.startswith("file://"):
        return None
    return Path(unquote(urlparse(storage_url).path))
