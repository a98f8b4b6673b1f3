"""Real sockets that fail the way a lossy network or a struggling PACS does.

:class:`FaultyStowServer` answers every request itself with one fault (no PACS behind it);
:class:`CountingServer` gives every connection one canned answer and counts the connections;
:class:`DrainingServer` reads and drops every body and answers 200;
:class:`FaultyProxy` stands in front of a real Orthanc and spoils the first STOW-RS requests
only, passing everything else through untouched. Both run in the test's event loop on
127.0.0.1 and speak just enough HTTP/1.1 for httpx (requests carry ``Content-Length``;
Orthanc's answers too).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from enum import StrEnum
from typing import Self

ORTHANC_READ_FAILED = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


class Fault(StrEnum):
    #: Reads a little of the body, answers 400 with no body (what Orthanc does when its own
    #: read of the request body fails), then discards the rest of the body.
    early_400 = "early_400"
    #: Reads the whole request, then resets the connection (RST) without answering.
    reset_after_request = "reset_after_request"
    #: Reads the whole request, then closes without answering.
    close_without_answer = "close_without_answer"
    #: Answers 200 with a Content-Length, sends part of the body, closes.
    cut_body_with_length = "cut_body_with_length"
    #: Answers 200 with a Content-Length, sends part of the body, resets.
    reset_mid_body = "reset_mid_body"
    #: Answers 409 with a JSON body delimited by the connection's close, cut off.
    cut_409_without_length = "cut_409_without_length"
    #: Answers 200 with a JSON body delimited by the connection's close, cut off.
    cut_200_without_length = "cut_200_without_length"
    #: Answers 200 with a chunked JSON body, resets after the first chunk.
    reset_mid_chunked_body = "reset_mid_chunked_body"
    #: Sends half a status line, resets.
    reset_mid_headers = "reset_mid_headers"
    #: Never answers (the client's read timeout fires).
    silent = "silent"


_PARTIAL_JSON = b'{"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2'


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER 0: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head, length


async def _discard(reader: asyncio.StreamReader, count: int) -> None:
    while count > 0:
        piece = await reader.read(min(count, 1 << 16))
        if not piece:
            return
        count -= len(piece)


async def _apply(fault: Fault, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _, length = await _read_head(reader)
    if fault is Fault.early_400:
        taken = min(length, 4096)
        await reader.readexactly(taken)
        writer.write(ORTHANC_READ_FAILED)
        await writer.drain()
        await _discard(reader, length - taken)
        writer.close()
        return
    await _discard(reader, length)
    if fault is Fault.reset_after_request:
        _reset(writer)
    elif fault is Fault.close_without_answer:
        writer.close()
    elif fault in (Fault.cut_body_with_length, Fault.reset_mid_body):
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
            b"Content-Length: 4000\r\n\r\n" + _PARTIAL_JSON
        )
        await writer.drain()
        if fault is Fault.reset_mid_body:
            _reset(writer)
        else:
            writer.close()
    elif fault in (Fault.cut_409_without_length, Fault.cut_200_without_length):
        status = b"409 Conflict" if fault is Fault.cut_409_without_length else b"200 OK"
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/dicom+json\r\n"
            b"Connection: close\r\n\r\n" + _PARTIAL_JSON
        )
        await writer.drain()
        writer.close()
    elif fault is Fault.reset_mid_chunked_body:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(_PARTIAL_JSON):x}\r\n".encode()
            + _PARTIAL_JSON
            + b"\r\n"
        )
        await writer.drain()
        _reset(writer)
    elif fault is Fault.reset_mid_headers:
        writer.write(b"HTTP/1.1 200 O")
        await writer.drain()
        _reset(writer)
    elif fault is Fault.silent:
        await asyncio.sleep(30)
        writer.close()


class _LoopbackServer:
    """A TCP server on a free loopback port; its connection handlers end when it does."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
        finally:
            self._tasks.discard(task)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class FaultyStowServer(_LoopbackServer):
    """Answers every request with ``fault``."""

    def __init__(self, fault: Fault) -> None:
        super().__init__()
        self.fault = fault
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        await _apply(self.fault, reader, writer)


class FaultyProxy(_LoopbackServer):
    """In front of a real PACS: the first ``faults`` STOW-RS requests (``POST …/studies``) get
    ``fault``; every other request goes to the PACS and its answer comes back unchanged."""

    def __init__(self, upstream_port: int, fault: Fault, *, faults: int = 1) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.fault = fault
        self.faults_left = faults
        self.spoiled = 0
        self.passed = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request at a time (keep-alive included), each to a fresh upstream connection."""
        while True:
            try:
                head, length = await _read_head(reader)
            except asyncio.IncompleteReadError:
                return
            is_stow = head.startswith(b"POST ") and head.split(b" ", 2)[1].endswith(b"/studies")
            if is_stow and self.faults_left > 0:
                self.faults_left -= 1
                self.spoiled += 1
                await _apply(self.fault, _Replay(head, reader), writer)
                return
            self.passed += 1
            body = await reader.readexactly(length)
            if not await self._forward(head, body, writer):
                return

    async def _forward(self, head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            up_writer.write(head + body)
            await up_writer.drain()
            answer_head, answer_length = await _read_head(up_reader)
            chunked = b"transfer-encoding: chunked" in answer_head.lower()
            has_length = b"content-length:" in answer_head.lower()
            writer.write(answer_head)
            if has_length:
                writer.write(await up_reader.readexactly(answer_length))
            elif chunked:
                while True:
                    size_line = await up_reader.readuntil(b"\r\n")
                    writer.write(size_line)
                    size = int(size_line.split(b";")[0], 16)
                    if size == 0:
                        writer.write(await up_reader.readuntil(b"\r\n"))
                        break
                    writer.write(await up_reader.readexactly(size + 2))
            else:
                # Delimited by the close: pass it through, then this connection ends too.
                while piece := await up_reader.read(1 << 16):
                    writer.write(piece)
                await writer.drain()
                return False
            await writer.drain()
            return True
        finally:
            up_writer.close()


class _Replay(asyncio.StreamReader):
    """A reader that first yields a request head already read, then the real stream."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader) -> None:
        super().__init__()
        self.feed_data(head)
        self._rest = reader

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        return await super().readuntil(separator)

    async def readexactly(self, n: int) -> bytes:
        return await self._rest.readexactly(n)

    async def read(self, n: int = -1) -> bytes:
        return await self._rest.read(n)


class CountingServer(_LoopbackServer):
    """Gives every connection one canned ``answer`` and closes it; counts the connections and
    keeps each request line, so a test can tell a call that reached the network from one that
    did not."""

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self.answer = answer
        self.connections = 0
        self.request_lines: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        self.request_lines.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
        writer.write(self.answer)
        await writer.drain()
        writer.close()


class DrainingServer(_LoopbackServer):
    """Reads each request's body in 64 KiB pieces, keeps only its length, answers 200 ``{}``."""

    def __init__(self) -> None:
        super().__init__()
        self.received = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, length = await _read_head(reader)
        await _discard(reader, length)
        self.received += length
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()


# A PACS that is up but broken: 502 with no body.
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
# A STOW-only endpoint: no QIDO-RS here.
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
