"""The shared rate limiter: memory per process, Redis across API instances; 429 + Retry-After.

A Redis that does not answer is no error: the limits are counted per process until it does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing
from structlog.typing import EventDict

from relaypacs.errors import TooManyRequests
from relaypacs.ratelimit import RateLimiter
from tests.conftest import make_settings
from tests.support.accounts import assert_problem, new_client, running_app

REDIS_PORT = 6379
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"


@pytest.mark.parametrize("redis_url", [None, REDIS_URL], ids=["memory", "redis"])
async def test_limiter_refuses_past_the_limit_with_retry_after(redis_url: str | None) -> None:
    limiter = RateLimiter(redis_url)
    key = uuid.uuid4().hex
    for _ in range(3):
        await limiter.hit("3/minute", "test", key)
    with pytest.raises(TooManyRequests) as refused:
        await limiter.hit("3/minute", "test", key)
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    # Other keys have their own budget.
    await limiter.hit("3/minute", "test", uuid.uuid4().hex)


async def test_login_limit_holds_across_api_instances_sharing_redis(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, redis_url=REDIS_URL)
    # A random address: counters in Redis outlive a test run.
    address = f"127.9.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    attempt = {"username": "nobody_" + uuid.uuid4().hex[:8], "password": "Wrong-pass-1"}
    async with (
        running_app(settings) as first,
        running_app(settings) as second,
        new_client(first, address) as a,
        new_client(second, address) as b,
    ):
        for http in (a, b, a, b, a):
            assert_problem(
                await http.post("/api/v1/auth/login", json=attempt), 401, "invalid_credentials"
            )
        limited = await b.post("/api/v1/auth/login", json=attempt)
        assert_problem(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        ready = (await a.get("/readyz")).json()
        assert ready["checks"]["rate_limiter"] == "ok"


# --- Redis that does not answer: the same limits, counted per process --------------------------


@pytest.fixture
def limiter_log() -> Iterator[list[EventDict]]:
    """What the rate limiter logs from INFO up (the level production runs at), kept in a list."""
    wrapper_class = structlog.get_config()["wrapper_class"]
    with structlog.testing.capture_logs() as entries:
        # The session's apps set WARNING, which would hide the "Redis is back" line.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        try:
            yield entries
        finally:
            structlog.configure(wrapper_class=wrapper_class)


def _own(entries: list[EventDict]) -> list[EventDict]:
    """The limiter's own lines: the session's apps log too (their job workers keep running)."""
    return [entry for entry in entries if str(entry["event"]).startswith("rate_limiter_")]


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def forwarder_to_redis(port: int) -> AsyncIterator[None]:
    """Listen on ``port`` and pass every connection through to the real Redis."""
    handlers: set[asyncio.Task[Any]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        handlers.add(handler)
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", REDIS_PORT)
        await asyncio.gather(pipe(reader, redis_writer), pipe(redis_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        # The limiter keeps its pooled connection open; end the handlers holding it.
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server that accepts and never answers, like a hung Redis: (port, connections)."""
    accepted: list[int] = []
    stop = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await stop.wait()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        stop.set()
        server.close()
        await server.wait_closed()


async def test_limiter_counts_in_memory_while_redis_refuses_connections(
    limiter_log: list[EventDict],
) -> None:
    limiter = RateLimiter(f"redis://127.0.0.1:{closed_port()}/0")
    user = "alice_" + uuid.uuid4().hex[:8]
    for _ in range(3):
        await limiter.hit("3/minute", "test", user)
    with pytest.raises(TooManyRequests) as refused:
        await limiter.hit("3/minute", "test", user)
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    await limiter.hit("3/minute", "test", uuid.uuid4().hex)
    await limiter.clear("3/minute", "test", user)
    await limiter.hit("3/minute", "test", user)
    # /readyz still shows Redis down.
    with pytest.raises(ConnectionError):
        await limiter.check_storage()

    assert [(entry["event"], entry["log_level"]) for entry in _own(limiter_log)] == [
        ("rate_limiter_redis_unavailable", "warning")
    ]
    assert _own(limiter_log)[0]["error"] == "ConnectionError"
    assert user not in repr(limiter_log)


async def test_limiter_tries_a_hung_redis_only_every_few_seconds(
    limiter_log: list[EventDict],
) -> None:
    async with silent_server() as (port, accepted):
        limiter = RateLimiter(f"redis://127.0.0.1:{port}/0")
        key = uuid.uuid4().hex
        started = time.monotonic()
        await limiter.hit("50/minute", "test", key)
        # redis-py's default would wait 5 s for the answer.
        assert time.monotonic() - started < 3
        tried = len(accepted)
        assert tried >= 1

        started = time.monotonic()
        for _ in range(20):
            await limiter.hit("50/minute", "test", key)
        assert time.monotonic() - started < 1
        assert len(accepted) == tried
    assert [entry["event"] for entry in _own(limiter_log)] == ["rate_limiter_redis_unavailable"]
    assert _own(limiter_log)[0]["error"] == "TimeoutError"


async def test_limits_are_shared_between_limiters_on_the_same_redis() -> None:
    """Also shows that the limiter really talks to Redis (a silent fallback would pass
    the single-limiter test above)."""
    first, second = RateLimiter(REDIS_URL), RateLimiter(REDIS_URL)
    key = uuid.uuid4().hex
    for limiter in (first, second, first):
        await limiter.hit("3/minute", "test", key)
    with pytest.raises(TooManyRequests):
        await second.hit("3/minute", "test", key)
    await first.clear("3/minute", "test", key)
    await second.hit("3/minute", "test", key)


async def test_limiter_goes_back_to_redis_once_it_answers(
    limiter_log: list[EventDict],
) -> None:
    port = closed_port()
    limiter = RateLimiter(f"redis://127.0.0.1:{port}/0", redis_retry_seconds=1.0)
    direct = RateLimiter(REDIS_URL)
    key = uuid.uuid4().hex
    await limiter.hit("3/minute", "test", key)  # memory: 1
    with pytest.raises(ConnectionError):
        await limiter.check_storage()

    async with forwarder_to_redis(port):  # Redis comes up on the limiter's port
        await limiter.check_storage()
        await limiter.hit("3/minute", "test", key)  # memory: 2, before the retry time
        await asyncio.sleep(1.1)
        # In memory the second of these would be refused; in Redis they are 1 to 3.
        for _ in range(3):
            await limiter.hit("3/minute", "test", key)
        with pytest.raises(TooManyRequests):
            await direct.hit("3/minute", "test", key)
        with pytest.raises(TooManyRequests):
            await limiter.hit("3/minute", "test", key)

    assert [(entry["event"], entry["log_level"]) for entry in _own(limiter_log)] == [
        ("rate_limiter_redis_unavailable", "warning"),
        ("rate_limiter_redis_recovered", "info"),
    ]


async def test_login_answers_while_redis_is_down(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url, tmp_path, redis_url=f"redis://127.0.0.1:{closed_port()}/0"
    )
    attempt = {"username": "nobody_" + uuid.uuid4().hex[:8], "password": "Wrong-pass-1"}
    async with running_app(settings) as app, new_client(app) as http:
        for _ in range(5):  # login_rate_limit: 5/minute
            assert_problem(
                await http.post("/api/v1/auth/login", json=attempt), 401, "invalid_credentials"
            )
        limited = await http.post("/api/v1/auth/login", json=attempt)
        assert_problem(limited, 429, "rate_limited")
        # Shown as down, but the gateway serves (in memory): still ready for traffic.
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"]["rate_limiter"] == "unavailable: ConnectionError"
        metrics = (await http.get("/metrics")).text
        assert 'relaypacs_dependency_up{dependency="rate_limiter"} 0.0' in metrics
