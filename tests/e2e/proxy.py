"""A loopback HTTP/1.1 proxy between the browser and the gateway that throttles uploads, logs
every request and its answer, and can freeze: the "network" the PWA's engine must survive.

It parses request and response framing (Content-Length; chunked answers pass through), so the
tests can count exactly which chunk PUTs were sent and what the gateway answered.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field

CHUNK_PUT = re.compile(r"^/api/v1/uploads/([^/]+)/files/([^/]+)/chunks/(\d+)$")


@dataclass
class Exchange:
    method: str
    path: str
    status: int | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def chunk(self) -> tuple[str, int] | None:
        match = CHUNK_PUT.match(self.path)
        return (match.group(2), int(match.group(3))) if match and self.method == "PUT" else None


def _read_head(sock: socket.socket, buffer: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


def _content_length(head: bytes) -> int:
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    return int(match.group(1)) if match else 0


class ThrottlingProxy:
    def __init__(self, upstream_port: int, rate_bytes_per_second: float | None = None) -> None:
        self.upstream_port = upstream_port
        self.rate = rate_bytes_per_second
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port: int = self._server.getsockname()[1]
        self._stopped = False
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def freeze(self) -> None:
        """Stop moving bytes (connections stay open, like a link that went quiet)."""
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    def drop_connections(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def chunk_puts(self, since: int = 0) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges[since:] if e.chunk is not None]

    def mark(self) -> int:
        with self._lock:
            return len(self.exchanges)

    def close(self) -> None:
        self._stopped = True
        self._open.set()
        self._server.close()
        self.drop_connections()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _send(self, sock: socket.socket, data: bytes, throttle: bool) -> None:
        view = memoryview(data)
        step = 16384
        while view:
            self._open.wait()
            piece = view[:step]
            sock.sendall(piece)
            view = view[step:]
            if throttle and self.rate:
                time.sleep(len(piece) / self.rate)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.update((client, upstream))
        pending: list[Exchange] = []
        pending_lock = threading.Lock()

        def responses() -> None:
            buffer = bytearray()
            try:
                while True:
                    head = _read_head(upstream, buffer)
                    if head is None:
                        return
                    status = int(head.split(b" ", 2)[1])
                    with pending_lock:
                        exchange = pending.pop(0) if pending else None
                    if exchange:
                        exchange.status = status
                    self._send(client, head, throttle=False)
                    if b"transfer-encoding: chunked" in head.lower():
                        # Stream the rest as is; such answers end the exchange on close.
                        self._send(client, bytes(buffer), throttle=False)
                        buffer.clear()
                        while data := upstream.recv(65536):
                            self._send(client, data, throttle=False)
                        return
                    remaining = _content_length(head)
                    if (exchange and exchange.method == "HEAD") or status in (204, 304):
                        remaining = 0
                    while remaining > 0:
                        if not buffer:
                            data = upstream.recv(65536)
                            if not data:
                                return
                            buffer += data
                        piece = bytes(buffer[:remaining])
                        del buffer[: len(piece)]
                        remaining -= len(piece)
                        self._send(client, piece, throttle=False)
            except OSError:
                return
            finally:
                for sock in (client, upstream):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=responses, daemon=True).start()
        buffer = bytearray()
        try:
            while True:
                head = _read_head(client, buffer)
                if head is None:
                    return
                method, path = head.split(b" ", 2)[:2]
                exchange = Exchange(method.decode(), path.decode().split("?")[0])
                with self._lock:
                    self.exchanges.append(exchange)
                with pending_lock:
                    pending.append(exchange)
                self._send(upstream, head, throttle=False)
                remaining = _content_length(head)
                while remaining > 0:
                    if not buffer:
                        data = client.recv(65536)
                        if not data:
                            return
                        buffer += data
                    piece = bytes(buffer[:remaining])
                    del buffer[: len(piece)]
                    remaining -= len(piece)
                    self._send(upstream, piece, throttle=True)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._sockets.difference_update((client, upstream))
