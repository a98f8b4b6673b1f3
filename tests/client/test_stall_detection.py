"""Idle-time stall detection on real sockets: abandon a request that stops, never one that moves."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

from relaypacs.client.api import GatewayClient, RetryPolicy, content_md5
from tests.client.slow_server import slow_server


async def _no_pause(size: int) -> None:
    await asyncio.sleep(0)


async def _400_kib_per_s(size: int) -> None:
    await asyncio.sleep(size / (400 * 1024))


def _quick_retries() -> RetryPolicy:
    return RetryPolicy(base=0.05, cap=0.1, give_up_after=30)


async def test_a_chunk_request_that_stops_moving_is_abandoned_and_sent_again() -> None:
    data = os.urandom(1024 * 1024)
    # The first connection reads the request head and then never another byte.
    async with (
        slow_server(lambda n: None if n == 1 else _no_pause) as (url, seen),
        GatewayClient(url, stall_timeout=1.0, retry=_quick_retries()) as client,
    ):
        started = time.monotonic()
        status = await client.put_chunk("u", "f", 0, data, content_md5(data), "token")
        took = time.monotonic() - started

    assert status == 201
    assert seen.connections == 2
    assert seen.bodies == [hashlib.md5(data, usedforsecurity=False).hexdigest()]
    assert client.stats.retries == 1
    assert took < 10
    # What the stalled attempt had put on the wire counts as re-sent, and never more than the chunk.
    assert 0 < client.stats.resent <= len(data)


async def test_a_slow_chunk_request_that_keeps_moving_is_never_abandoned() -> None:
    data = os.urandom(1536 * 1024)
    async with (
        slow_server(lambda n: _400_kib_per_s) as (url, seen),
        GatewayClient(url, stall_timeout=2.0, retry=_quick_retries()) as client,
    ):
        started = time.monotonic()
        status = await client.put_chunk("u", "f", 0, data, content_md5(data), "token")
        took = time.monotonic() - started

    assert status == 201
    # Far longer than the stall timeout, yet one connection and no retry: it was never idle.
    assert took > 3.0
    assert seen.connections == 1
    assert client.stats.retries == 0
    assert client.stats.resent == 0
