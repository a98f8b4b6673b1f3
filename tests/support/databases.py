"""Throwaway databases: a SQLite file, or a fresh database on the local PostgreSQL server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from relaypacs.db.migrate import upgrade

POSTGRES_ADMIN_DSN = os.environ.get(
    "RELAYPACS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgresql")


def _in_thread(coro_factory: object) -> None:
    # Runs outside any pytest-asyncio loop, so asyncio.run is always allowed.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro_factory).result()  # type: ignore[arg-type]


async def _execute(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def backend_of(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


@contextmanager
def throwaway_database(backend: str, directory: Path) -> Iterator[str]:
    """Yield the async URL of a new, migrated database; drop it afterwards."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / 'relaypacs-test.db'}"
        upgrade(url)
        yield url
        return
    name = f"relaypacs_test_{uuid.uuid4().hex[:12]}"
    _in_thread(_execute(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        _in_thread(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
