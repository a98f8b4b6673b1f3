"""Several worker processes: /metrics answers the sum over all of them, also after one is killed.

Two real uvicorn worker processes (`relaypacs serve --workers 2`) on PostgreSQL share one
PROMETHEUS_MULTIPROC_DIR. Which worker takes a connection is the kernel's choice, so the test
makes it certain by stopping one worker (SIGSTOP) while the other serves, then the other way round.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.databases import POSTGRES_ADMIN_DSN
from tests.support.s3 import free_port

pytestmark = pytest.mark.slow

HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}


@contextmanager
def empty_postgres_database() -> Iterator[str]:
    """A new, empty database: `serve` and `worker` apply the migrations themselves.

    Created from a thread of its own, because a sync test may run while an earlier test's
    event loop is still running in the main thread.
    """
    name = f"relaypacs_test_{uuid.uuid4().hex[:12]}"

    def execute(sql: str) -> None:
        async def run() -> None:
            connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()

    execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _children(pid: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    workers = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            workers.add(int(child))
    return workers


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    # No event to await across processes: poll the observable state, bounded in time.
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _healthz_total(url: str) -> float:
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "relaypacs_http_requests_total" and sample.labels == HEALTHZ:
                return sample.value
    return 0.0


def _hit_healthz(url: str, times: int) -> None:
    # A new connection each time, so that the kernel hands each one to a waiting worker.
    for _ in range(times):
        with httpx.Client(timeout=10) as client:
            assert client.get(url + "/healthz").status_code == 200


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    metrics_dir = tmp_path / "metrics"
    with empty_postgres_database() as database_url:
        port = free_port()
        env = {
            **os.environ,
            "RELAYPACS_DATABASE_URL": database_url,
            "RELAYPACS_DATA_DIR": str(tmp_path / "data"),
            "RELAYPACS_LOG_LEVEL": "WARNING",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        log = (tmp_path / "serve.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "relaypacs", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(lambda: len(_children(process.pid)) >= 2 and _answers(url), "2 workers")
            yield url, process, metrics_dir
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def test_metrics_of_two_worker_processes_add_up_and_survive_a_killed_worker(
    gateway: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, supervisor, metrics_dir = gateway
    # Only workers that import the app have metrics files; wait until both answered once.
    _wait_for(lambda: len(_children(supervisor.pid)) == 2, "worker processes")
    workers = sorted(_children(supervisor.pid))
    before = _healthz_total(url)

    for serving, stopped in ((workers[0], workers[1]), (workers[1], workers[0])):
        # Keep the pause short: uvicorn's supervisor replaces a worker that misses its health
        # checks for 5 s, and a loaded machine must not turn that into a flaky test.
        os.kill(stopped, signal.SIGSTOP)
        try:
            _hit_healthz(url, 5)
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert (metrics_dir / f"counter_{serving}.db").exists()

    assert _healthz_total(url) - before == 10

    # A worker killed outright: its counts stay in the sum, and its replacement joins it.
    os.kill(workers[0], signal.SIGKILL)
    _wait_for(
        lambda: workers[0] not in _children(supervisor.pid) and len(_children(supervisor.pid)) == 2,
        "the supervisor to replace the killed worker",
    )
    _wait_for(lambda: _answers(url), "the gateway to answer again")
    assert _healthz_total(url) - before == 10
    _hit_healthz(url, 5)
    assert _healthz_total(url) - before == 15


def _sample(url: str, name: str, labels: dict[str, str]) -> float | None:
    try:
        response = httpx.get(url + "/metrics", timeout=2)
    except httpx.TransportError:
        return None
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_the_job_worker_serves_its_own_metrics(tmp_path: Path) -> None:
    with empty_postgres_database() as database_url:
        port = free_port()
        env = {
            **os.environ,
            "RELAYPACS_DATABASE_URL": database_url,
            "RELAYPACS_DATA_DIR": str(tmp_path / "data"),
            "RELAYPACS_LOG_LEVEL": "WARNING",
            "RELAYPACS_WORKER_METRICS_PORT": str(port),
            "RELAYPACS_WORKER_METRICS_HOST": "127.0.0.1",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        }
        with (tmp_path / "worker.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "relaypacs", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        retention_done = {"kind": "operations.retention", "outcome": "succeeded"}
        try:
            # Periodic jobs run once when a worker first starts: the retention job among them.
            _wait_for(
                lambda: _sample(url, "relaypacs_jobs_finished_total", retention_done) == 1,
                "the worker's /metrics to show the retention job",
            )
        finally:
            process.terminate()
            process.wait(30)
