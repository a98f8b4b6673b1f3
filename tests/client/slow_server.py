"""A tiny HTTP/1.1 server on a real socket that reads request bodies as slowly as we say.

It stands in for the far end of a bad link in tests of the client's idle-time stall detection:
the network edge is real (kernel sockets, small buffers), only the pace of reading is scripted.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

RECEIVE_BUFFER = 16 * 1024
Pace = Callable[[int], Awaitable[None]]


@dataclass
class Seen:
    connections: int = 0
    bodies: list[str] = field(default_factory=list)  # MD5 hex of every complete body


async def _read_head(reader: asyncio.StreamReader) -> dict[str, str]:
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


@asynccontextmanager
async def slow_server(
    pace_for_connection: Callable[[int], Pace | None],
) -> AsyncIterator[tuple[str, Seen]]:
    """Answer every request 201; connection *n* reads bodies at ``pace(n)`` (None: stalls)."""
    seen = Seen()
    blocked: list[asyncio.Event] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        pace = pace_for_connection(seen.connections)
        try:
            while True:
                headers = await _read_head(reader)
                remaining = int(headers.get("content-length", "0"))
                digest = hashlib.md5(usedforsecurity=False)
                while remaining:
                    if pace is None:
                        stop = asyncio.Event()
                        blocked.append(stop)
                        await stop.wait()  # hold the connection open, never read again
                        return
                    piece = await reader.read(min(remaining, 8192))
                    if not piece:
                        return
                    digest.update(piece)
                    remaining -= len(piece)
                    await pace(len(piece))
                seen.bodies.append(digest.hexdigest())
                writer.write(
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = await asyncio.start_server(handle, sock=sock, limit=RECEIVE_BUFFER)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        for event in blocked:
            event.set()
        server.close()
        await server.wait_closed()
