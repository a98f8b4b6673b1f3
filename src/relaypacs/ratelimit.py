"""Rate limits shared by every domain, on the `limits` library (moving window).

With ``RELAYPACS_REDIS_URL`` the counters live in Redis and so hold across every API instance;
without it they are per process, which is right for the single-process embedded deployment.
While Redis does not answer, the limits are counted per process (the same limits, in memory) and
Redis is tried again every few seconds: Redis holds only these counters, so losing it must not
turn logins and chunk PUTs into 500s (the PRD: degrade gracefully).

    limiter = resources.rate_limiter
    await limiter.hit("20/minute", "upload_start", str(user.id))   # raises TooManyRequests
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TypeVar

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from relaypacs import errors

KEY_PREFIX = "relaypacs"

#: redis-py waits 5 s by default to connect and for each answer; every request that tries a
#: dead or hung Redis pays this. A ``socket_timeout``/``socket_connect_timeout`` in the URL's
#: query wins over these.
REDIS_TIMEOUT_SECONDS = 1.0
#: Between tries of a Redis that failed, so that it costs at most one request that long.
REDIS_RETRY_SECONDS = 5.0

log = structlog.get_logger(__name__)

T = TypeVar("T")


@lru_cache(maxsize=64)
def _parse(limit: str) -> RateLimitItem:
    return parse(limit)


class RateLimiter:
    def __init__(
        self, redis_url: str | None = None, *, redis_retry_seconds: float = REDIS_RETRY_SECONDS
    ) -> None:
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: MovingWindowRateLimiter | None = None
        self.storage: Storage = self._memory.storage
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
            self.storage = RedisStorage(
                uri,
                key_prefix=KEY_PREFIX,
                implementation="redispy",
                # One exception type for every redis-py failure (connection, timeout, LOADING…).
                wrap_exceptions=True,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self._redis = MovingWindowRateLimiter(self.storage)
        self._redis_retry_seconds = redis_retry_seconds
        #: ``None`` while Redis answers; else when to try it again.
        self._redis_retry_at: float | None = None

    @staticmethod
    def _identifiers(key_parts: tuple[str, ...]) -> tuple[str, ...]:
        # Key parts may hold user names or addresses: keep them out of Redis key names.
        digest = hashlib.sha256("\x1f".join(key_parts).encode()).hexdigest()[:32]
        return (key_parts[0], digest) if key_parts else (digest,)

    async def _run(self, operation: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        redis = self._redis
        retry_at = self._redis_retry_at
        if redis is not None and (retry_at is None or time.monotonic() >= retry_at):
            if retry_at is not None:
                # Requests arriving while this one tries Redis stay in memory.
                self._redis_retry_at = time.monotonic() + self._redis_retry_seconds
            try:
                result = await operation(redis)
            except StorageError as exc:
                if self._redis_retry_at is None:
                    # No key parts here: they can hold user names and client addresses.
                    log.warning(
                        "rate_limiter_redis_unavailable",
                        error=type(exc.storage_error).__name__,
                        retry_seconds=self._redis_retry_seconds,
                    )
                self._redis_retry_at = time.monotonic() + self._redis_retry_seconds
            else:
                if self._redis_retry_at is not None:
                    self._redis_retry_at = None
                    log.info("rate_limiter_redis_recovered")
                return result
        return await operation(self._memory)

    async def hit(self, limit: str, *key_parts: str) -> None:
        """Count one event for ``key_parts`` (first part: a name for the limit, e.g. "login").

        Raises :class:`relaypacs.errors.TooManyRequests` (429 with ``Retry-After``) when the
        event would exceed ``limit`` (a `limits` string such as ``"5/minute"``).
        """
        item = _parse(limit)
        identifiers = self._identifiers(key_parts)

        async def count(strategy: MovingWindowRateLimiter) -> float | None:
            if await strategy.hit(item, *identifiers):
                return None
            return (await strategy.get_window_stats(item, *identifiers)).reset_time

        reset_time = await self._run(count)
        if reset_time is not None:
            raise errors.TooManyRequests(max(1, math.ceil(reset_time - time.time())))

    async def clear(self, limit: str, *key_parts: str) -> None:
        item = _parse(limit)
        identifiers = self._identifiers(key_parts)

        async def clear(strategy: MovingWindowRateLimiter) -> None:
            await strategy.clear(item, *identifiers)

        await self._run(clear)

    async def check_storage(self) -> None:
        # The storage itself, not the fallback: /readyz must show a Redis that does not answer.
        if not await self.storage.check():
            raise ConnectionError("rate-limit storage does not answer")
