"""A small per-process cache of computed figures (summary, trends).

Dashboards ask for the same figures again and again (every open admin page polls); with
``RELAYPACS_ANALYTICS_CACHE_SECONDS`` > 0 each distinct question is computed at most once per
that many seconds per process, and concurrent identical questions share one computation. The
figures may then be that many seconds old; 0 turns the cache off.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class FigureCache:
    def __init__(self, seconds: float, *, max_entries: int = 512) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, asyncio.Task[Any]]] = OrderedDict()

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        if self.seconds <= 0:
            return await compute()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now and not _failed(entry[1]):
            self._entries.move_to_end(key)
            return await asyncio.shield(entry[1])
        task: asyncio.Task[Any] = asyncio.ensure_future(compute())
        self._entries[key] = (now + self.seconds, task)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        try:
            return await asyncio.shield(task)
        except BaseException:
            if self._entries.get(key, (0.0, None))[1] is task:
                del self._entries[key]
            raise


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
