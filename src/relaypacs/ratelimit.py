"""Rate limits shared by every domain, on the `limits` library (moving window).

With ``RELAYPACS_REDIS_URL`` the counters live in Redis and so hold across every API instance;
without it they are per process, which is right for the single-process embedded deployment.

    limiter = resources.rate_limiter
    await limiter.hit("20/minute", "upload_start", str(user.id))   # raises TooManyRequests
"""

from __future__ import annotations

import hashlib
import math
import time
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from relaypacs import errors

KEY_PREFIX = "relaypacs"


@lru_cache(maxsize=64)
def _parse(limit: str) -> RateLimitItem:
    return parse(limit)


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        self.storage: Storage
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
            self.storage = RedisStorage(uri, key_prefix=KEY_PREFIX, implementation="redispy")
        else:
            self.storage = MemoryStorage()
        self._strategy = MovingWindowRateLimiter(self.storage)

    @staticmethod
    def _identifiers(key_parts: tuple[str, ...]) -> tuple[str, ...]:
        # Key parts may hold user names or addresses: keep them out of Redis key names.
        digest = hashlib.sha256("\x1f".join(key_parts).encode()).hexdigest()[:32]
        return (key_parts[0], digest) if key_parts else (digest,)

    async def hit(self, limit: str, *key_parts: str) -> None:
        """Count one event for ``key_parts`` (first part: a name for the limit, e.g. "login").

        Raises :class:`relaypacs.errors.TooManyRequests` (429 with ``Retry-After``) when the
        event would exceed ``limit`` (a `limits` string such as ``"5/minute"``).
        """
        item = _parse(limit)
        identifiers = self._identifiers(key_parts)
        if await self._strategy.hit(item, *identifiers):
            return
        stats = await self._strategy.get_window_stats(item, *identifiers)
        raise errors.TooManyRequests(max(1, math.ceil(stats.reset_time - time.time())))

    async def clear(self, limit: str, *key_parts: str) -> None:
        await self._strategy.clear(_parse(limit), *self._identifiers(key_parts))

    async def check_storage(self) -> None:
        if not await self.storage.check():
            raise ConnectionError("rate-limit storage does not answer")
