"""Analytics on 100,000 uploads in PostgreSQL: P50/P95/P99 of summary and trends over HTTP.

    .venv/bin/python -m bench.analytics.bench [--uploads 100000] [--requests 200]
    (or: make bench-analytics)

1. A fresh database on the local PostgreSQL (``--admin-dsn``), migrated; ``--uploads`` uploads
   from 50 users over the last 400 days, each with the timeline the product writes (created …
   delivered), reports for delivered studies (most ready), through COPY; then ANALYZE.
2. One ``relaypacs serve`` process on that database (no in-process worker, analytics rate limit
   raised for the run), signed in as an admin and as one clinician.
3. For each case, ``--requests`` sequential GETs after a short warm-up; latency is measured at
   the client (loopback HTTP/1.1 keep-alive), so it includes authentication and JSON.

Results go to bench/results/analytics-<time>.json and a table on stdout. The target (issue 7)
is P99 < 200 ms for summary and trends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from relaypacs.analytics import repository as analytics_repository
from relaypacs.analytics.tasks import seal_due_days
from relaypacs.config import Settings
from relaypacs.db.engine import create_engine, create_sessionmaker
from relaypacs.db.migrate import upgrade
from relaypacs.users import service as users_service
from relaypacs.users.models import Role

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Vq8#relay-Pacs!"  # noqa: S105 (a throwaway benchmark account)
API = "/api/v1"

MODALITIES = [("CT", 35), ("MR", 20), ("CR", 20), ("US", 12), ("DX", 8), ("MG", 5)]
LEVELS = [("routine", 85), ("stat", 10), ("emergency", 5)]
OUTCOMES = [
    ("delivered", 80),
    ("partially_delivered", 4),
    ("failed", 4),
    ("rejected", 3),
    ("cancelled", 4),
    ("expired", 2),
    ("forwarding", 1),
    ("receiving", 2),
]
CASES: list[tuple[str, str, dict[str, str]]] = [
    ("summary", "admin", {"period": "all"}),
    ("summary", "admin", {"period": "6m"}),
    ("summary", "admin", {"period": "1m"}),
    ("summary", "admin", {"period": "all", "modality": "CT"}),
    ("summary", "user", {"period": "all"}),
    ("trends", "admin", {"period": "all"}),
    ("trends", "admin", {"period": "6m"}),
    ("trends", "admin", {"period": "1m"}),
    ("trends", "user", {"period": "all"}),
]
CACHED_CASES = [CASES[0], CASES[5]]
TIMELINE = ["created", "receiving", "assembling", "validated", "queued", "forwarding"]


def _pick(rng: random.Random, table: list[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _create_users(dsn: str, users: int) -> list[uuid.UUID]:
    """An admin and ``users`` clinicians, through the users service (its rules, its schema)."""
    settings = Settings(
        database_url=dsn.replace("postgresql://", "postgresql+asyncpg://"), bcrypt_rounds=4
    )
    engine = create_engine(settings.resolved_database_url)
    ids = []
    try:
        async with create_sessionmaker(engine)() as session:
            for n in range(users + 1):
                name = "bench_admin_0" if n == 0 else f"bench_user_{n}"
                user = await users_service.create_user(
                    session,
                    settings,
                    username=name,
                    email=f"{name}@example.org",
                    password=PASSWORD,
                    role=Role.admin if n == 0 else Role.clinician,
                )
                ids.append(user.id)
            await session.commit()
    finally:
        await engine.dispose()
    return ids


async def _fill_upload_stats(dsn: str) -> None:
    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        while True:
            async with create_sessionmaker(engine)() as session:
                stale = await analytics_repository.stale_stat_upload_ids(session, 5000)
                if not stale:
                    break
                await analytics_repository.refresh_stats(session, stale)
                await session.commit()
        # What the product's ten-minute job has done by then: every day before yesterday sealed.
        await seal_due_days(create_sessionmaker(engine), limit=100_000)
    finally:
        await engine.dispose()


async def generate(dsn: str, uploads: int, users: int, seed: int) -> dict[str, Any]:
    """Fill the database through COPY; returns the ids the benchmark signs in as."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    user_ids = await _create_users(dsn, users)
    upload_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    report_rows: list[tuple[Any, ...]] = []
    for _ in range(uploads):
        upload_id = uuid.uuid4()
        owner = rng.choice(user_ids[1:])
        created_at = now - timedelta(seconds=rng.uniform(0, 400 * 86400))
        state = _pick(rng, OUTCOMES)
        level = _pick(rng, LEVELS)
        size = int(rng.lognormvariate(17.5, 1.0))
        files = rng.randint(1, 600)
        upload_rows.append(
            (
                upload_id,
                created_at,
                owner,
                state,
                uuid.uuid4().hex * 2,
                created_at + timedelta(hours=24),
                created_at,
                created_at + timedelta(minutes=5),
                None,
                "BENCH^PATIENT",
                None,
                date(2024, 1, 1),
                _pick(rng, MODALITIES),
                level,
                None,
                None,
                uuid.uuid4().hex * 2,
                False,
                1024 * 1024,
                size,
                files,
                files,
                "[]",
                None,
            )
        )
        at = created_at
        steps = TIMELINE if state not in ("receiving", "cancelled", "expired") else TIMELINE[:2]
        for step in steps:
            event_rows.append((uuid.uuid4(), upload_id, step, at, None))
            at += timedelta(seconds=rng.uniform(1, 120))
        if state in (
            "delivered",
            "partially_delivered",
            "failed",
            "rejected",
            "cancelled",
            "expired",
        ):
            at += timedelta(seconds=rng.lognormvariate(5, 1.2))
            event_rows.append((uuid.uuid4(), upload_id, state, at, None))
        if state in ("delivered", "partially_delivered"):
            ready = rng.random() < 0.7
            ready_at = at + timedelta(seconds=rng.lognormvariate(8, 1)) if ready else None
            report_rows.append(
                (
                    uuid.uuid4(),
                    at,
                    upload_id,
                    owner,
                    "ready" if ready else "assigned",
                    None,
                    at,
                    ready_at or at,
                    ready_at,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None if ready else at,
                    None,
                )
            )
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "upload",
            records=upload_rows,
            columns=[
                "id",
                "created_at",
                "owner_id",
                "state",
                "token_hash",
                "expires_at",
                "updated_at",
                "completed_at",
                "purged_at",
                "patient_name",
                "patient_id",
                "study_date",
                "modality",
                "service_level",
                "study_description",
                "clinical_history",
                "duplicate_key",
                "forced",
                "chunk_size",
                "total_bytes",
                "file_count",
                "instance_count",
                "warnings",
                "failure_reason",
            ],
        )
        await connection.copy_records_to_table(
            "upload_event", records=event_rows, columns=["id", "upload_id", "state", "at", "detail"]
        )
        await connection.copy_records_to_table(
            "report",
            records=report_rows,
            columns=[
                "id",
                "created_at",
                "upload_id",
                "owner_id",
                "status",
                "study_instance_uid",
                "delivered_at",
                "updated_at",
                "ready_at",
                "radiologist_id",
                "radiologist_name",
                "text",
                "message",
                "source",
                "pacs_destination",
                "pacs_series_instance_uid",
                "pacs_sop_instance_uid",
                "pacs_sop_class_uid",
                "pdf_series_instance_uid",
                "pdf_sop_instance_uid",
                "last_synced_at",
                "next_sync_at",
                "sync_error",
            ],
        )
    finally:
        await connection.close()
    # COPY bypasses the session hooks: fill the fact table the way the reconcile job repairs it.
    await _fill_upload_stats(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return {
        "admin": "bench_admin_0",
        "user": "bench_user_1",
        "users": users,
        "uploads": len(upload_rows),
        "events": len(event_rows),
        "reports": len(report_rows),
    }


def start_server(
    database_url: str, data_dir: Path, log: Path, cache_seconds: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "RELAYPACS_DATA_DIR": str(data_dir),
        "RELAYPACS_DATABASE_URL": database_url,
        "RELAYPACS_LOG_LEVEL": "WARNING",
        "RELAYPACS_RUN_WORKER_IN_PROCESS": "false",
        "RELAYPACS_ANALYTICS_RATE_LIMIT": "1000000/minute",
        "RELAYPACS_ANALYTICS_CACHE_SECONDS": cache_seconds,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relaypacs",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"relaypacs serve did not start; see {log}")


async def measure(
    http: httpx.AsyncClient, path: str, params: dict[str, str], headers: dict[str, str], n: int
) -> dict[str, float]:
    for _ in range(5):
        response = await http.get(path, params=params, headers=headers)
        response.raise_for_status()
    timings = []
    for _ in range(n):
        started = time.perf_counter()
        response = await http.get(path, params=params, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    timings.sort()
    return {
        "requests": n,
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[int(0.95 * (n - 1))], 1),
        "p99_ms": round(timings[int(0.99 * (n - 1))], 1),
        "max_ms": round(timings[-1], 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"relaypacs_bench_analytics_{uuid.uuid4().hex[:8]}"
    admin_connection = await asyncpg.connect(args.admin_dsn)
    await admin_connection.execute(f'CREATE DATABASE "{name}"')
    await admin_connection.close()
    base = args.admin_dsn.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    database_url = dsn.replace("postgresql://", "postgresql+asyncpg://")
    process = None
    try:
        await asyncio.to_thread(upgrade, database_url)
        started = time.perf_counter()
        generated = await generate(dsn, args.uploads, args.users, args.seed)
        generated["generate_seconds"] = round(time.perf_counter() - started, 1)
        print(f"generated {generated}", flush=True)
        data_dir = Path(tempfile.mkdtemp(prefix="relaypacs-bench-analytics-"))
        results = []
        # "sql": the cache off, every request computes its figures (the honest cold path);
        # "cached": the default 30 s figure cache, as a dashboard polling the same view sees it.
        for mode, cache_seconds, cases in (("sql", "0", CASES), ("cached", "30", CACHED_CASES)):
            process, url = start_server(
                database_url, data_dir, data_dir / f"serve-{mode}.log", cache_seconds
            )
            try:
                async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                    tokens = {}
                    for who in ("admin", "user"):
                        login = await http.post(
                            f"{API}/auth/login",
                            json={"username": generated[who], "password": PASSWORD},
                        )
                        login.raise_for_status()
                        tokens[who] = {"Authorization": f"Bearer {login.json()['access_token']}"}
                    for endpoint, who, params in cases:
                        timing = await measure(
                            http, f"{API}/analytics/{endpoint}", params, tokens[who], args.requests
                        )
                        row = {"mode": mode, "endpoint": endpoint, "as": who, "params": params}
                        row.update(timing)
                        results.append(row)
                        print(json.dumps(row), flush=True)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
                process = None
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        if args.keep_database:
            print(f"kept database {name} (drop it when done)", flush=True)
        else:
            admin_connection = await asyncpg.connect(args.admin_dsn)
            await admin_connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin_connection.close()
    return {"generated": generated, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--uploads", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the filled database for EXPLAIN"
    )
    parser.add_argument(
        "--admin-dsn",
        default=os.environ.get(
            "RELAYPACS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    outcome = asyncio.run(run(args))
    outcome["machine"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    outcome["date"] = datetime.now(UTC).isoformat()
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"analytics-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(outcome, indent=2))
    print("\n| mode | endpoint | as | params | P50 ms | P95 ms | P99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in outcome["results"]:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        print(
            f"| {r['mode']} | {r['endpoint']} | {r['as']} | {params} | {r['p50_ms']} | "
            f"{r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} |"
        )
    print(f"\nraw: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
