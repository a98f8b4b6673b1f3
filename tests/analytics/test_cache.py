"""The figure cache: one computation per key and window, shared by concurrent callers."""

from __future__ import annotations

import asyncio

import pytest

from relaypacs.analytics.cache import FigureCache


async def test_concurrent_identical_questions_share_one_computation() -> None:
    cache = FigureCache(60)
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    waiting = [asyncio.ensure_future(cache.get("k", compute)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [42] * 5
    assert await cache.get("k", compute) == 42
    assert calls == 1


async def test_a_failed_computation_is_not_kept_and_zero_seconds_turns_it_off() -> None:
    cache = FigureCache(60)

    async def broken() -> int:
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        await cache.get("k", broken)

    async def fine() -> int:
        return 7

    assert await cache.get("k", fine) == 7
    off = FigureCache(0)
    results = iter([1, 2])

    async def counting() -> int:
        return next(results)

    assert [await off.get("k", counting), await off.get("k", counting)] == [1, 2]


async def test_entries_expire_and_the_oldest_go_first() -> None:
    cache = FigureCache(0.05, max_entries=2)
    values = iter(range(100))

    async def compute() -> int:
        return next(values)

    first = await cache.get("a", compute)
    assert await cache.get("a", compute) == first
    await asyncio.sleep(0.06)
    assert await cache.get("a", compute) != first
    await cache.get("b", compute)
    await cache.get("c", compute)
    assert len(cache._entries) == 2
