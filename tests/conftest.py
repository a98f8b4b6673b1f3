"""Shared fixtures: every black-box test runs against SQLite and against the real PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from relaypacs.app import create_app
from relaypacs.config import Settings
from tests.support.databases import BACKENDS, throwaway_database

_client_addresses = itertools.count(1)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with throwaway_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        yield url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Path:
    return tmp_path_factory.mktemp("data")


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "bcrypt_rounds": 4,  # cost 12 in production; tests check the configured cost separately
        "log_level": "WARNING",
        # The app runs the job worker in-process on both databases, like `serve` on SQLite.
        "run_worker_in_process": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(database_url: str, data_dir: Path) -> Settings:
    return make_settings(database_url, data_dir)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def client_for(app: FastAPI) -> httpx.AsyncClient:
    """A client with its own source address, so per-IP rate limits do not leak between tests."""
    n = next(_client_addresses)
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=(f"127.1.{n // 250}.{n % 250 + 1}", 40000)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http
