"""After the gateway cuts every connection (it died), one chunk at a time, then back up to 4.

Real sockets: a small HTTP server that reads chunk bodies at a set pace, notes how many requests
are in flight when each begins, and at one moment aborts every connection (what a SIGKILLed
gateway does to them). The uploader's own chunk sender and client drive it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from relaypacs.client.api import GatewayClient, InFlightWindow, RetryPolicy
from relaypacs.client.engine import FilePlan, send_chunks

CHUNK = 256 * 1024


@dataclass
class Server:
    url: str = ""
    #: (requests in flight as this one began, did it begin after the cut)
    starts: list[tuple[int, bool]] = field(default_factory=list)
    active: set[int] = field(default_factory=set)
    cut: bool = False


@asynccontextmanager
async def cutting_server(cut_when_in_flight: int, bytes_per_s: float) -> AsyncIterator[Server]:
    state = Server()
    writers: set[asyncio.StreamWriter] = set()

    def cut_everything() -> None:
        state.cut = True
        state.active.clear()  # dead at once, whenever their handlers get to notice
        for writer in list(writers):
            writer.transport.abort()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
                request = len(state.starts)
                state.active.add(request)
                state.starts.append((len(state.active), state.cut))
                try:
                    if not state.cut and len(state.active) == cut_when_in_flight:
                        asyncio.get_running_loop().call_later(0.1, cut_everything)
                    while length:
                        piece = await reader.read(min(length, 16 * 1024))
                        if not piece:
                            return
                        length -= len(piece)
                        await asyncio.sleep(len(piece) / bytes_per_s)
                finally:
                    state.active.discard(request)
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            return
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


async def test_after_a_cut_one_chunk_goes_at_a_time_then_the_window_grows_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(os.urandom(16 * CHUNK))
    plan = FilePlan("f", path, 16 * CHUNK, list(range(16)))
    async with (
        cutting_server(cut_when_in_flight=4, bytes_per_s=1024 * 1024) as server,
        GatewayClient(server.url, retry=RetryPolicy(base=0.05, cap=0.1)) as client,
    ):
        await send_chunks(client, "u", "token", CHUNK, [plan], parallel=4)

    before = [n for n, after_cut in server.starts if not after_cut]
    after = [n for n, after_cut in server.starts if after_cut]
    assert max(before) == 4
    # The four chunks cut off mid-flight do not all go again at once: one, and only after it
    # landed a second...
    assert after[:2] == [1, 1]
    # ...and as chunks land, the window opens up again, to half of what the cut found.
    assert max(after) == 2
    assert client.stats.resent > 0
    assert client.chunk_window(4).cuts >= 1


def test_the_window_halves_its_ceiling_per_cut_and_recovers_slowly() -> None:
    window = InFlightWindow(4)
    assert window.allowed == 4
    window.succeeded()
    assert window.allowed == 4

    for _ in range(5):  # the four chunks in flight, then a retry refused while it restarts
        window.cut()
    assert (window.cuts, window.allowed, window.ceiling) == (1, 1, 2)
    growth = []
    for _ in range(InFlightWindow.RECOVERY + 2):
        window.succeeded()
        growth.append(window.allowed)
    # One more in flight per window of successes, up to the ceiling, which rises slowly.
    assert growth[:3] == [2, 2, 2]
    assert growth[InFlightWindow.RECOVERY - 1 :] == [2, 3, 3]

    window.cut()  # cut again, with 3 in flight
    assert (window.cuts, window.allowed, window.ceiling) == (2, 1, 1)
    window.succeeded()
    window.cut()
    assert (window.cuts, window.allowed, window.ceiling) == (3, 1, 1)
