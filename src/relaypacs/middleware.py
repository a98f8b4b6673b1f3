"""Pure ASGI middleware: request ids, one log line and metrics per request, security headers,
the size limit of request bodies.

Pure ASGI (not ``BaseHTTPMiddleware``) so that streamed chunk bodies pass through untouched.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware as StarletteTrustedHost
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relaypacs.errors import (
    PROBLEM_MEDIA_TYPE,
    CorsRefused,
    InvalidHost,
    RelayError,
    RequestTooLarge,
)
from relaypacs.operations.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

log = structlog.get_logger("relaypacs.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths are collapsed so that probes cannot blow up metric cardinality.
    if not isinstance(path, str):
        return "<unmatched>"
    # A route included in a prefixed router knows only its own part ("/uploads/{upload_id}"):
    # the prefix is the literal start of the request path that the template does not cover.
    segments = str(scope.get("path", "")).split("/")
    template = path.split("/")
    prefix = segments[: max(1, len(segments) - (len(template) - 1))]
    values = {str(v) for v in (scope.get("path_params") or {}).values()}
    if any(segment in values for segment in prefix if segment):
        return path
    return "/".join(prefix) + path


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = _header(scope, b"x-request-id")
        request_id = supplied if supplied and _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_REQUEST_DURATION.labels(method=method, route=route).observe(duration)
            state: dict[str, Any] = scope.get("state", {})
            log.info(
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(duration * 1000, 2),
                user_id=state.get("user_id"),
            )
            structlog.contextvars.unbind_contextvars("request_id")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_https = self.hsts or scope.get("scheme") == "https"
        is_api = scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                names = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", b"frame-ancestors 'none'"))
                if is_api and b"cache-control" not in names:
                    # API answers may hold patient data: no shared or disk caches.
                    headers.append((b"cache-control", b"no-store"))
                if is_https:
                    headers.append(
                        (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
                    )
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _problem(error: RelayError, path: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        error.to_problem(path), error.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


_HOST_ADMITTED = "relaypacs.host_admitted"


async def _admit(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_HOST_ADMITTED] = True


async def _discard(message: Message) -> None:
    return None


#: Probed by address, never by the public name: the container's health check calls
#: 127.0.0.1, Prometheus scrapes each instance by its IP. They read nothing from ``Host``.
_PROBED_BY_ADDRESS = frozenset({"/healthz", "/readyz", "/metrics"})


class TrustedHostMiddleware:
    """Starlette's ``Host`` check (same patterns), but a refusal is a problem+json like every
    other error, not a plain-text body. Health checks and the scrape are exempt (see
    :data:`_PROBED_BY_ADDRESS`)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        # Starlette decides; its own plain-text answer is discarded and replaced below.
        self._gate = StarletteTrustedHost(_admit, allowed_hosts=allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._gate.allow_any or scope["path"] in _PROBED_BY_ADDRESS:
            await self.app(scope, receive, send)
            return
        await self._gate(scope, receive, _discard)
        if scope.pop(_HOST_ADMITTED, False):
            await self.app(scope, receive, send)
            return
        error = InvalidHost("The Host header names no host this gateway serves")
        await _problem(error, scope["path"])(scope, receive, send)


#: The chunk PUT (relaypacs.uploads.router): raw bytes, limited to the upload's chunk size while
#: they stream. The pattern also matches the route's OpenAPI path template.
_CHUNK_PUT_PATH = re.compile(r"/api/v1/uploads/[^/]+/files/[^/]+/chunks/[^/]+/?")


def is_chunk_put(method: str, path: str) -> bool:
    return method == "PUT" and _CHUNK_PUT_PATH.fullmatch(path) is not None


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` once a body passes the limit. An HTTPException because FastAPI
    passes those on unchanged; any other error while it reads a body becomes a 400."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class RequestBodyLimitMiddleware:
    """Every request body but a chunk PUT's is at most ``max_body_bytes``; a larger one is
    refused with 413 ``request_too_large``, and the app's own answer (if any) is discarded.

    A declared ``Content-Length`` over the limit is refused when the app first reads the body,
    before anything is read; a body without one (chunked) is counted as it arrives and refused
    as soon as it passes the limit. A route that never reads its body answers as usual.

    Not Starlette's ``RequestBodyLimitMiddleware`` (FastAPI's ``max_body_size``): it would wrap
    the chunk route's ``receive`` too, the gateway's hot path, and it answers in plain text.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_chunk_put(scope["method"], _route_path(scope)):
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(scope)
        # Refused at the app's first read, before a byte is read: by then the router has named
        # the route for the request log and metrics.
        over_declared = declared is not None and declared > limit
        received = 0
        refused = False
        started = False

        async def receive_within_limit() -> Message:
            nonlocal received, refused
            if refused or over_declared:
                refused = True
                raise _BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if started:
                        # Too late for a 413 (no route here reads its body after answering):
                        # to the app, the client is gone.
                        return {"type": "http.disconnect"}
                    refused = True
                    raise _BodyTooLarge()
            return message

        async def send_unless_refused(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's answer to the failed read; the 413 is sent below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        # Raised out of the app only when no handler took it; the 413 below is the answer anyway.
        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, receive_within_limit, send_unless_refused)
        if refused:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = RequestTooLarge(
            f"Request bodies other than chunks may be at most {self.max_body_bytes} bytes",
            max_body_bytes=self.max_body_bytes,
        )
        await _problem(error, scope["path"])(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the ``root_path`` a proxy may have set."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the server refuses a malformed one; counting covers the rest


class CORSMiddleware(StarletteCORSMiddleware):
    """Starlette's CORS allowlist; a refused preflight is a problem+json, not plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        detail = bytes(response.body).decode("utf-8", "replace")  # "Disallowed CORS origin"
        kept = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        return _problem(CorsRefused(detail), "", kept)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:
                return None
    return None
