"""Server-Sent Events over real HTTP: an in-process uvicorn server for an app, and a reader.

async with serve_app(app) as base_url:
    async with open_stream(base_url, ticket) as events:
        event = await events.next(timeout=5)      # ServerEvent(id, event, data)
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from relaypacs.notifications import service
from relaypacs.notifications.models import NotificationType
from tests.support.s3 import free_port

API = "/api/v1"


@dataclass(frozen=True)
class ServerEvent:
    id: str | None
    event: str
    data: Any


class EventReader:
    """Parses an SSE body as it arrives (comments and heartbeats are kept aside, not returned)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self.heartbeats: list[ServerEvent] = []
        self._want_heartbeat = False
        self.retry: int | None = None
        self._lines = response.aiter_lines()
        self._pending: str | None = None

    async def next(self, wait: float = 10.0) -> ServerEvent:
        async with asyncio.timeout(wait):
            return await self._next()

    async def _next(self) -> ServerEvent:
        event_id: str | None = None
        name = "message"
        data: list[str] = []
        pending = getattr(self, "_pending", None)
        self._pending = None
        lines = self._lines
        async for line in _prefixed(pending, lines):
            if line == "":
                if data:
                    found = ServerEvent(event_id, name, json.loads("\n".join(data)))
                    if found.event != "heartbeat" or self._want_heartbeat:
                        return found
                    self.heartbeats.append(found)
                event_id, name, data = None, "message", []
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                self.comments.append(value)
            elif field == "id":
                event_id = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "retry":
                self.retry = int(value)
        raise EOFError("the server ended the stream")

    async def until(self, event: str, wait: float = 10.0, **match: Any) -> ServerEvent:
        """Skip events until one named ``event`` whose data has the ``match`` items."""
        async with asyncio.timeout(wait):
            while True:
                found = await self._next()
                if found.event == event and all(
                    isinstance(found.data, dict) and found.data.get(k) == v
                    for k, v in match.items()
                ):
                    return found

    async def next_heartbeat(self, wait: float = 10.0) -> ServerEvent:
        """Read until the next heartbeat event (other events in between are dropped)."""
        self._want_heartbeat = True
        try:
            async with asyncio.timeout(wait):
                while (found := await self._next()).event != "heartbeat":
                    pass
                return found
        finally:
            self._want_heartbeat = False

    async def read_to_end(self) -> list[ServerEvent]:
        """Every event until the server ends the stream."""
        events: list[ServerEvent] = []
        while True:
            try:
                events.append(await self.next())
            except EOFError:
                return events


async def _prefixed(first: str | None, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    if first is not None:
        yield first
    async for line in rest:
        yield line


@asynccontextmanager
async def serve_app(app: FastAPI, *, send_buffer_bytes: int | None = None) -> AsyncIterator[str]:
    """Serve an already started app over real HTTP on a free port (lifespan stays the app's).

    ``send_buffer_bytes`` caps the kernel's send buffer of every accepted connection. On
    loopback it otherwise grows to megabytes, so a test of a client that never reads would
    have to write all of that before the application sees any back-pressure.
    """
    sockets: list[socket.socket] | None = None
    if send_buffer_bytes is None:
        port = free_port()
    else:
        listener = socket.socket()
        # Set before listen(): accepted connections inherit it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        listener.bind(("127.0.0.1", 0))
        port = int(listener.getsockname()[1])
        sockets = [listener]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def stream_ticket(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post(f"{API}/notifications/stream-ticket", headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


@asynccontextmanager
async def open_stream(
    base_url: str,
    *,
    ticket: str | None = None,
    headers: dict[str, str] | None = None,
    last_event_id: str | None = None,
) -> AsyncIterator[EventReader]:
    params = {"ticket": ticket} if ticket else {}
    request_headers = dict(headers or {})
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0)) as http,
        http.stream(
            "GET", f"{API}/notifications/stream", params=params, headers=request_headers
        ) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            raise StreamRefusedError(response)
        yield EventReader(response)


class StreamRefusedError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}: {response.text}")
        self.response = response


async def notify(
    app: FastAPI,
    user_id: uuid.UUID,
    kind: NotificationType = NotificationType.report_ready,
    *,
    title: str = "Report ready",
    body: str = "The report of CT HEAD is ready",
    data: dict[str, Any] | None = None,
) -> uuid.UUID:
    """A notification raised as another domain would, committed in its own transaction."""
    async with app.state.sessionmaker() as session:
        notification = await service.notify(
            session, user_id, kind, title=title, body=body, data=data
        )
        await session.commit()
        return notification.id
