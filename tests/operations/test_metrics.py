"""/metrics moves with real requests and reports shared state read at scrape time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from relaypacs.app import create_app
from relaypacs.db.base import utcnow
from relaypacs.jobs.service import enqueue
from relaypacs.operations import metrics
from relaypacs.uploads.models import Upload, UploadState
from tests.conftest import client_for, make_settings
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.databases import throwaway_database
from tests.support.dicom_studies import instance

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_request_counters_move_by_exactly_the_requests_made(
    client: httpx.AsyncClient,
) -> None:
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/api/v1/no-such-thing/12345")).status_code == 404
    after = await scrape(client)
    assert value(after, "relaypacs_http_requests_total", **labels) - value(
        before, "relaypacs_http_requests_total", **labels
    ) == pytest.approx(3)
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, "relaypacs_http_requests_total", **unmatched) > value(
        before, "relaypacs_http_requests_total", **unmatched
    )
    latency = {"method": "GET", "route": "/healthz"}
    assert value(after, "relaypacs_http_request_duration_seconds_count", **latency) - value(
        before, "relaypacs_http_request_duration_seconds_count", **latency
    ) == pytest.approx(3)
    assert not any("12345" in str(labels) for _, labels in after)


async def test_scrape_reports_each_dependency_and_the_data_volume(
    client: httpx.AsyncClient,
) -> None:
    samples = await scrape(client)
    assert value(samples, "relaypacs_dependency_up", dependency="database") == 1
    size = value(samples, "relaypacs_disk_size_bytes", volume="data")
    free = value(samples, "relaypacs_disk_free_bytes", volume="data")
    assert 0 < free <= size
    assert any(name == "relaypacs_build_info" for name, _ in samples)


async def test_domain_helpers_move_their_metrics(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    metrics.record_chunk_stored(1_048_576)
    metrics.record_checksum_failure()
    started = utcnow() - timedelta(minutes=4)
    metrics.record_upload_finished("delivered", service_level="stat", started_at=started)
    metrics.observe_stow("orthanc", 0.8, stored=49, refused=1)
    with metrics.sse_connection():
        during = await scrape(client)
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("relaypacs_chunks_received_total") == 1
    assert moved("relaypacs_chunk_bytes_received_total") == 1_048_576
    assert moved("relaypacs_chunk_checksum_failures_total") == 1
    assert moved("relaypacs_uploads_finished_total", state="delivered") == 1
    assert moved("relaypacs_upload_delivery_seconds_count", service_level="stat") == 1
    # Four minutes lands in the 300 s bucket but not the 120 s one.
    assert moved("relaypacs_upload_delivery_seconds_bucket", service_level="stat", le="300.0") == 1
    assert moved("relaypacs_upload_delivery_seconds_bucket", service_level="stat", le="120.0") == 0
    assert moved("relaypacs_stow_instances_total", destination="orthanc", outcome="stored") == 49
    assert moved("relaypacs_stow_instances_total", destination="orthanc", outcome="refused") == 1
    assert value(after, "relaypacs_pacs_up", destination="orthanc") == 1
    assert value(during, "relaypacs_sse_connections") - value(
        before, "relaypacs_sse_connections"
    ) == pytest.approx(1)
    assert value(after, "relaypacs_sse_connections") == value(before, "relaypacs_sse_connections")


def test_label_values_outside_a_small_fixed_set_collapse() -> None:
    with pytest.raises(ValueError, match="not a final upload state"):
        metrics.record_upload_finished("DOE^JOHN")
    metrics.record_upload_started("Some Patient^Name")
    assert metrics.UPLOADS_STARTED.labels(service_level="other")._value.get() >= 1


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the same backend that no other test's jobs or worker touch."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    database = throwaway_database(backend, tmp_path)
    # Migrations run asyncio.run(): keep them off a thread where an event loop may be running.
    with ThreadPoolExecutor(1) as pool:
        url = pool.submit(database.__enter__).result()
        try:
            yield url
        finally:
            pool.submit(database.__exit__, None, None, None).result()


async def test_queue_depth_and_oldest_due_job_age_come_from_the_database(
    fresh_database_url: str, tmp_path: Path
) -> None:
    # No worker: the jobs must stay queued while we look at them.
    settings = make_settings(fresh_database_url, tmp_path / "data", run_worker_in_process=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        empty = await scrape(client)
        assert value(empty, "relaypacs_job_oldest_due_age_seconds") == 0
        async with app.state.sessionmaker() as session:
            now = utcnow()
            await enqueue(session, "operations.probe", {}, run_at=now - timedelta(minutes=5))
            await enqueue(session, "operations.probe", {}, run_at=now - timedelta(minutes=1))
            await enqueue(session, "operations.later", {}, run_at=now + timedelta(hours=1))
            await session.commit()
        samples = await scrape(client)
    jobs = "relaypacs_jobs"
    assert value(samples, jobs, kind="operations.probe", state="queued") == 2
    assert value(samples, jobs, kind="operations.later", state="queued") == 1
    # The job due in an hour is not waiting yet; the one due five minutes ago is.
    assert 300 <= value(samples, "relaypacs_job_oldest_due_age_seconds") < 360


async def test_each_destination_reports_its_waiting_studies_and_the_longest_wait(
    fresh_database_url: str, tmp_path: Path
) -> None:
    # No worker: the uploads must stay where the test puts them while it looks.
    settings = make_settings(fresh_database_url, tmp_path / "data", run_worker_in_process=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        destination = app.state.resources.pacs.primary.name
        empty = await scrape(client)
        for name, labels in (
            ("relaypacs_destination_studies", {"destination": destination, "state": "queued"}),
            ("relaypacs_destination_oldest_study_age_seconds", {"destination": destination}),
        ):
            assert empty[(name, frozenset(labels.items()))] == 0
        user = await sign_in(client, app)
        placed = {UploadState.queued: (20, 3), UploadState.forwarding: (2, 1)}
        started = {
            state: [
                await uploads.start(client, user.headers, [instance(rows=8, columns=8)])
                for _ in range(count)
            ]
            for state, (_, count) in placed.items()
        }
        async with app.state.sessionmaker() as session:
            for state, sessions in started.items():
                await session.execute(
                    update(Upload)
                    .where(Upload.id.in_([uuid.UUID(s.id) for s in sessions]))
                    .values(state=state, updated_at=utcnow() - timedelta(minutes=placed[state][0]))
                )
            await session.commit()
        samples = await scrape(client)
    studies = "relaypacs_destination_studies"
    assert value(samples, studies, destination=destination, state="queued") == 3
    assert value(samples, studies, destination=destination, state="forwarding") == 1
    age = value(samples, "relaypacs_destination_oldest_study_age_seconds", destination=destination)
    assert 20 * 60 <= age < 25 * 60
