"""An asyncio TCP server on loopback in a thread of its own, for callers that block (a CLI run
as a subprocess, a synchronous test): the server keeps answering while they wait."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextmanager
def threaded_server(handle: Handler, *, name: str) -> Iterator[int]:
    """Serve ``handle`` on a free 127.0.0.1 port; yields the port. On exit the server closes
    and every connection handler is cancelled."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, asyncio.Server] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            holder["server"] = await asyncio.start_server(handle, "127.0.0.1", 0)
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"{name} did not start")
    try:
        yield int(holder["server"].sockets[0].getsockname()[1])
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
