"""The shared rate limiter: memory per process, Redis across API instances; 429 + Retry-After."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest

from relaypacs.errors import TooManyRequests
from relaypacs.ratelimit import RateLimiter
from tests.conftest import make_settings
from tests.support.accounts import assert_problem, new_client, running_app

REDIS_URL = "redis://127.0.0.1:6379/0"


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
