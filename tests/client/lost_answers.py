"""An HTTP/1.1 proxy on real sockets that lets the gateway act and then loses its answer.

It stands in for the worst moment of a bad link: the request arrived and was carried out, the
response never reaches the client (the connection is cut, or held silent until the client is
killed, or another answer takes its place). Each request goes to the gateway on a connection of
its own; everything else passes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.threaded_server import threaded_server


@dataclass
class Lose:
    """Lose the answers of the next ``times`` requests ``method path-prefix``."""

    method: str
    path: str
    times: int = 1
    #: Keep the client's connection open and silent instead of cutting it.
    hold: bool = False
    #: Give the client this answer (status, JSON body) instead of the gateway's.
    answer: tuple[int, dict[str, Any]] | None = None


@dataclass
class Exchange:
    method: str
    path: str
    request_headers: dict[str, str]
    status: int
    response_headers: dict[str, str]
    body: bytes
    lost: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Proxy:
    port: int
    rules: list[Lose]
    exchanges: list[Exchange] = field(default_factory=list)

    def to(self, method: str, path: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == method and e.path == path]


def _headers(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            out[name.strip().lower()] = value.strip()
    return out


async def _exchange(
    proxy: Proxy, target: tuple[str, int], reader: asyncio.StreamReader
) -> tuple[Exchange, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = _headers(lines[1:])
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
    upstream_r, upstream_w = await asyncio.open_connection(*target)
    try:
        request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
        upstream_w.write(request + body)
        await upstream_w.drain()
        response = await upstream_r.read()  # to EOF: the gateway closes after its answer
    finally:
        upstream_w.close()
    response_head, _, response_body = response.partition(b"\r\n\r\n")
    response_lines = response_head.decode("latin-1").split("\r\n")
    exchange = Exchange(
        method=method,
        path=path.split("?", 1)[0],
        request_headers=headers,
        status=int(response_lines[0].split(" ")[1]),
        response_headers=_headers(response_lines[1:]),
        body=response_body,
        lost=False,
    )
    return exchange, response


def _json_response(status: int, document: dict[str, Any]) -> bytes:
    body = json.dumps(document).encode()
    head = (
        f"HTTP/1.1 {status} Answered by the proxy\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


@contextmanager
def lost_answers_proxy(target: tuple[str, int], rules: list[Lose]) -> Iterator[Proxy]:
    """Run the proxy in its own thread and event loop."""
    holder: dict[str, Proxy] = {}
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proxy: Proxy = holder["proxy"]
        try:
            while True:
                result = await _exchange(proxy, target, reader)
                if result is None:
                    return
                exchange, response = result
                rule = next(
                    (
                        r
                        for r in proxy.rules
                        if r.times > 0
                        and r.method == exchange.method
                        and exchange.path.startswith(r.path)
                    ),
                    None,
                )
                if rule is not None:
                    rule.times -= 1
                    exchange.lost = True
                proxy.exchanges.append(exchange)
                if rule is not None and rule.hold:
                    held.append(writer)
                    await asyncio.Event().wait()  # silent until the client gives up or dies
                if rule is not None and rule.answer is not None:
                    response = _json_response(*rule.answer)
                elif rule is not None:
                    transport = writer.transport
                    transport.abort()  # cut: the answer is lost on the way
                    return
                writer.write(response)
                await writer.drain()
                return  # the gateway said Connection: close, so does the client's side
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    with threaded_server(handle, name="lost-answers-proxy") as port:
        # Set before any client can connect: the port is known only now.
        holder["proxy"] = Proxy(port, rules)
        yield holder["proxy"]
