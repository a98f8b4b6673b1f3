"""An ASGI response for one Server-Sent Events stream.

Unlike a plain streaming response, each write has a deadline (a client that stops reading is
disconnected instead of holding a task forever), and ``on_close`` always runs, however the
stream ends: client gone, overflow, shut-down or error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import structlog
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from relaypacs.operations.metrics import sse_connection

log = structlog.get_logger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store",
    # nginx and similar proxies must pass each event on at once.
    "X-Accel-Buffering": "no",
}


class EventSourceResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        send_timeout: float,
        on_close: Callable[[], None],
    ) -> None:
        # As StreamingResponse does: no ``body``, hence no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.body_iterator = body
        self.send_timeout = send_timeout
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with sse_connection():
                await self._run(receive, send)
        finally:
            self.on_close()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _run(self, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                try:
                    with anyio.fail_after(self.send_timeout):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except TimeoutError:
                    # The client stopped reading; the server closes the connection.
                    log.info("sse_client_too_slow")
                    group.cancel_scope.cancel()
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()
