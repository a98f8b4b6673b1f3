"""A user-space TCP proxy that adds round-trip delay (netem is not available in this kernel).

Every byte is held for ``one_way_delay`` seconds in each direction before it is passed on, so a
request/response exchange costs an extra ``2 * one_way_delay`` like a satellite hop. Bytes in
flight per direction are capped (back-pressure on the reader) so the proxy behaves like a link
with a bounded buffer, not like an infinite queue that would hide stalls from the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.threaded_server import Handler, threaded_server

IN_FLIGHT_LIMIT = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: deque[tuple[float, bytes]] = deque()
    queued = 0
    more = asyncio.Event()
    room = asyncio.Event()
    room.set()
    done = False

    async def receive() -> None:
        nonlocal queued, done
        try:
            while True:
                await room.wait()
                data = await reader.read(65536)
                if not data:
                    break
                queue.append((time.monotonic() + delay, data))
                queued += len(data)
                if queued >= IN_FLIGHT_LIMIT:
                    room.clear()
                more.set()
        except ConnectionError:
            pass
        finally:
            done = True
            more.set()

    async def deliver() -> None:
        nonlocal queued
        while True:
            if not queue:
                if done:
                    break
                more.clear()
                await more.wait()
                continue
            due, data = queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            queue.popleft()
            writer.write(data)
            await writer.drain()
            queued -= len(data)
            if queued < IN_FLIGHT_LIMIT:
                room.set()
        if writer.can_write_eof():
            writer.write_eof()

    receiving = asyncio.ensure_future(receive())
    try:
        await deliver()
    except ConnectionError:
        pass
    finally:
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await receiving


def _delaying_handler(target: tuple[str, int], one_way_delay: float) -> Handler:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                _pipe(client_r, server_w, one_way_delay),
                _pipe(server_r, client_w, one_way_delay),
            )
        finally:
            for w in (client_w, server_w):
                w.close()

    return handle


@contextmanager
def delay_proxy(target: tuple[str, int], one_way_delay: float) -> Iterator[int]:
    """Run the proxy in its own thread and event loop; yields the local port to connect to."""
    with threaded_server(_delaying_handler(target, one_way_delay), name="delay-proxy") as port:
        yield port
