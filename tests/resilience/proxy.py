"""A user-space TCP proxy that adds round-trip delay (netem is not available in this kernel).

Every byte is held for ``one_way_delay`` seconds in each direction before it is passed on, so a
request/response exchange costs an extra ``2 * one_way_delay`` like a satellite hop. Bytes in
flight per direction are capped (back-pressure on the reader) so the proxy behaves like a link
with a bounded buffer, not like an infinite queue that would hide stalls from the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

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


async def _serve(
    listen_port: int, target: tuple[str, int], one_way_delay: float, ready: threading.Event
) -> asyncio.Server:
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

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    ready.set()
    return server


@contextmanager
def delay_proxy(target: tuple[str, int], one_way_delay: float) -> Iterator[int]:
    """Run the proxy in its own thread and event loop; yields the local port to connect to."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, asyncio.Server] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            holder["server"] = await _serve(0, target, one_way_delay, ready)

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="delay-proxy", daemon=True)
    thread.start()
    ready.wait(10)
    port = int(holder["server"].sockets[0].getsockname()[1])
    try:
        yield port
    finally:

        async def stop() -> None:
            holder["server"].close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
