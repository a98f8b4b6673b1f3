"""The HTTP contract of the gateway, as the uploader speaks it.

Exceptions::

    ClientError
    ├── ApiError          the server answered with a problem+json we do not retry (``code``)
    ├── NotSignedIn       no usable sign-in for this server; `relaypacs login` fixes it
    └── GaveUp            transient failures only, for longer than ``give_up_after``

Transient failures (connection refused or reset, a link that went down, no bytes moving for
``stall_timeout`` seconds, 408/429/5xx, a problem code in ``RETRY_CODES``) are retried with
exponential backoff and full jitter, for as long as *some* request of the run succeeds (a chunk
stored, an answer given) at least every ``give_up_after`` seconds. Bytes handed to the socket are
not progress: a proxy that takes every body and answers 503 moves bytes forever. There is
deliberately no whole-request deadline: on a link losing half its packets one chunk can take
minutes and still arrive, so a request is abandoned only when it stops moving bytes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from relaypacs import __version__
from relaypacs.client.credentials import CredentialStore, SavedSignIn

log = logging.getLogger("relaypacs.client")

API = "/api/v1"
SEND_PIECE = 64 * 1024
# A small kernel send buffer makes "bytes handed to the socket" close to "bytes the link carried",
# so idle detection sees a stall within seconds instead of after megabytes of buffered data.
SEND_BUFFER = 128 * 1024
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Linux: retransmit on a linear, not exponential, timer while few packets are in flight. Under
# heavy loss a connection's window collapses to a packet or two and exponential backoff then
# leaves it silent for tens of seconds at a time; measured on the 50%-loss link of the harness,
# one 5 MB study took 319 s with this (21% re-sent) and 490 s without (68% re-sent).
TCP_THIN_LINEAR_TIMEOUTS = 16
#: What the gateway answers a request made with an upload token that no longer opens its upload:
#: ended by the owner's sign-out everywhere or new password, or replaced by a newer token.
ENDED_UPLOAD_TOKEN_CODES = frozenset({"upload_token_revoked", "invalid_upload_token"})
#: Problems that are not final despite their status: a 409 ``idempotency_key_in_flight`` means an
#: earlier attempt with this key (whose answer was lost, or which stalled) is still being carried
#: out; once it commits, the same request is answered with its upload.
RETRY_CODES = frozenset({"idempotency_key_in_flight"})
#: The gateway's default ``refresh_reuse_grace_seconds``: a refresh token presented again this
#: soon after its exchange gets the same successor (the answer was lost); later it is reuse, and
#: the gateway ends the whole sign-in. The client cannot ask for the setting, so it keeps to this.
REFRESH_GRACE_S = 30.0
#: One refresh attempt waits this long for its answer (a few hundred bytes) before it is sent
#: again: well inside the grace, so the resend still gets the same successor.
REFRESH_TIMEOUT_S = 10.0
#: Answers that say the request was not carried out: a refresh answered so exchanged nothing.
NOT_CARRIED_OUT = frozenset({408, 429, 503})


class ClientError(Exception):
    """Base of every error the uploader reports to its user."""


class ApiError(ClientError):
    def __init__(self, status: int, body: dict[str, Any], retry_after: float | None = None) -> None:
        self.status = status
        self.body = body
        # The server's Retry-After (seconds), for a 429 the caller chose not to wait out.
        self.retry_after = retry_after
        self.code = str(body.get("code") or f"http_{status}")
        self.detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
        super().__init__(f"{self.code}: {self.detail}")


class NotSignedIn(ClientError):
    pass


class _ResendWindowClosed(ClientError):
    """A request that may already have been carried out can no longer safely be sent again."""

    def __init__(self, last_failure: str) -> None:
        super().__init__(last_failure)
        self.last_failure = last_failure


class GaveUp(ClientError):
    def __init__(self, message: str, last_failure: str) -> None:
        super().__init__(message)
        #: Why the last attempt failed (e.g. ``ConnectError``, ``HTTP 503``).
        self.last_failure = last_failure


@dataclass
class RetryPolicy:
    """Backoff with full jitter; ``give_up_after`` counts seconds without any progress."""

    base: float = 0.5
    cap: float = 10.0
    give_up_after: float = 3600.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 20)))  # noqa: S311


@dataclass
class Liveness:
    """When a request of the run last succeeded; shared by every request of one run."""

    last_progress: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_progress = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_progress


class InFlightWindow:
    """How many chunk requests may be on the wire at once (like TCP's window after a timeout).

    A gateway that dies (SIGKILL, a crash, a restart) cuts every connection: each chunk in flight
    loses the bytes it had sent. After such a cut (a refused or reset connection, or a 502/503/504
    from a proxy in front) one chunk at a time goes out; every success adds ``1/allowed`` (one
    more request in flight per window of successes) up to a ceiling, which each cut halves and
    every ``RECOVERY`` successes raise by one, back to ``maximum``. So the first cut costs what
    was in flight, and a gateway that keeps dying costs one partial chunk per cut, not
    ``maximum``. Stalls (no bytes moving on a lossy link) do not shrink it: there more streams
    are what keeps the upload moving.
    """

    #: Chunks that must land for the ceiling to rise by one again.
    RECOVERY = 16

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.ceiling = self.maximum
        self.limit = float(self.maximum)
        self.in_flight = 0
        self.cuts = 0
        self._successes = 0  # since the last cut
        self._freed = asyncio.Event()

    @property
    def allowed(self) -> int:
        return max(1, min(self.ceiling, int(self.limit)))

    async def acquire(self) -> None:
        while self.in_flight >= self.allowed:
            self._freed.clear()
            await self._freed.wait()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._freed.set()

    def cut(self) -> None:
        # Every request in flight fails at one cut, and the retries fail until the gateway is
        # back: all of that is one cut until a chunk has landed since.
        if self.cuts == 0 or self._successes > 0:
            self.cuts += 1
            self.ceiling = max(1, self.allowed // 2)
        self._successes = 0
        self.limit = 1.0

    def succeeded(self) -> None:
        before = self.allowed
        self._successes += 1
        if self._successes % self.RECOVERY == 0:
            self.ceiling = min(self.maximum, self.ceiling + 1)
        self.limit = min(float(self.ceiling), self.limit + 1 / self.allowed)
        if self.allowed > before:
            self._freed.set()


def is_cut(error: httpx.TransportError | None, status: int | None) -> bool:
    """The far end went away (not: the link is slow or lossy)."""
    if error is not None:
        return isinstance(error, httpx.NetworkError | httpx.RemoteProtocolError)
    return status in (502, 503, 504)


def reason_of(error: httpx.TransportError | None, status: int | None) -> str:
    return type(error).__name__ if error is not None else f"HTTP {status}"


@dataclass
class TransferStats:
    """Chunk body bytes put on the wire, and how many of them were wasted by failed attempts."""

    sent: int = 0
    resent: int = 0
    retries: int = 0


def _socket_options() -> list[tuple[int, int, int]]:
    options = [(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)]
    if sys.platform == "linux":
        options.append((socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, 1))
    return options


def content_md5(data: bytes | memoryview) -> str:
    import hashlib

    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code, "detail": response.text[:200]}
    return body if isinstance(body, dict) else {"status": response.status_code}


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    """How long to wait before a retry: the server's word, but never more than 5 minutes."""
    seconds = _retry_after_seconds(response)
    return None if seconds is None else min(seconds, 300.0)


class GatewayClient:
    """One connection pool to one gateway, with sign-in, retries and stall detection."""

    def __init__(
        self,
        server: str,
        *,
        credentials: CredentialStore | None = None,
        stall_timeout: float = 60.0,
        connections: int = 6,
        retry: RetryPolicy | None = None,
        refresh_timeout: float = REFRESH_TIMEOUT_S,
        refresh_grace: float = REFRESH_GRACE_S,
    ) -> None:
        self.server = server.rstrip("/")
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.liveness = Liveness()
        self.stats = TransferStats()
        self._refresh_lock = asyncio.Lock()
        self._access_token: str | None = None
        # Upload tokens the gateway said ended: asked with the sign-in instead from then on.
        self._ended_upload_tokens: set[str] = set()
        self._chunk_window: InFlightWindow | None = None
        self.must_change_password = False
        # Each timeout bounds one socket operation (connect, one 64 KiB write, the wait for the
        # next bytes of a response): together they are an idle timeout, not a request deadline.
        timeout = httpx.Timeout(stall_timeout, pool=None)
        self._refresh_timeout = min(stall_timeout, refresh_timeout)
        # A resend must reach the gateway within the grace of the first send's exchange: one
        # that starts later than this after it could arrive too late, even connecting slowly.
        self._refresh_resend_window = max(0.0, refresh_grace - self._refresh_timeout)
        transport = httpx.AsyncHTTPTransport(
            retries=0,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            socket_options=_socket_options(),
        )
        self._http = httpx.AsyncClient(
            base_url=self.server,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"relaypacs-cli/{__version__}"},
        )

    def chunk_window(self, parallel: int) -> InFlightWindow:
        """The run's window of chunks in flight, at most ``parallel`` (see InFlightWindow)."""
        if self._chunk_window is None or self._chunk_window.maximum != max(1, parallel):
            self._chunk_window = InFlightWindow(parallel)
        return self._chunk_window

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    # ---- sign-in -------------------------------------------------------------------------

    async def login(
        self, username: str, password: str, totp_code: str | None = None
    ) -> SavedSignIn:
        body: dict[str, Any] = {"username": username, "password": password}
        if totp_code:
            body["totp_code"] = totp_code
        # 429 here means "account locked" or "too many sign-ins": waiting it out and sending the
        # same (possibly wrong) password again would only keep the account locked, silently.
        response = await self._request(
            "POST",
            f"{API}/auth/login",
            json=body,
            signed=False,
            retry_statuses=TRANSIENT_STATUSES - {429},
        )
        tokens = response.json()
        self.must_change_password = bool(tokens.get("must_change_password"))
        saved = SavedSignIn.from_tokens(username, tokens)
        if self.credentials is not None:
            self.credentials.save(self.server, saved)
        self._access_token = saved.access_token
        return saved

    async def _bearer(self) -> str:
        if self._access_token is not None:
            return self._access_token
        if self.credentials is None:
            raise NotSignedIn(f"not signed in to {self.server}")
        saved = self.credentials.load(self.server)
        if saved is None:
            raise NotSignedIn(f"not signed in to {self.server}")
        if saved.access_token_usable():
            self._access_token = saved.access_token
            return saved.access_token
        return await self._refresh(rejected=None)

    async def _refresh(self, rejected: str | None) -> str:
        """Swap the refresh token for new tokens, once, even when many requests ask at once."""
        if self.credentials is None:
            raise NotSignedIn(f"not signed in to {self.server}")
        async with self._refresh_lock:
            if self._access_token is not None and self._access_token != rejected:
                return self._access_token
            store = self.credentials
            # Held across the exchange, so no other uploader presents the same token meanwhile;
            # waited for without blocking, so the chunks in flight here keep moving meanwhile.
            async with store.lock_async():
                # Another uploader process may have rotated the token a moment ago.
                saved = store.load(self.server)
                if saved is None:
                    raise NotSignedIn(f"not signed in to {self.server}")
                if saved.access_token != rejected and saved.access_token_usable():
                    self._access_token = saved.access_token
                    return saved.access_token
                try:
                    response = await self._request(
                        "POST",
                        f"{API}/auth/refresh",
                        json={"refresh_token": saved.refresh_token},
                        signed=False,
                        on_status={401: NotSignedIn, 403: NotSignedIn},
                        idle_timeout=self._refresh_timeout,
                        resend_window=self._refresh_resend_window,
                    )
                except _ResendWindowClosed as closed:
                    raise NotSignedIn(
                        f"the sign-in to {self.server} could not be renewed: the gateway did not "
                        f"answer in {self._refresh_resend_window:.0f} s (last: "
                        f"{closed.last_failure}), and sending the same refresh token any later "
                        "would end the sign-in"
                    ) from None
                renewed = SavedSignIn.from_tokens(saved.username, response.json())
                # Refresh tokens are single-use: the new one must be on disk before anything else.
                store.save(self.server, renewed)
            self._access_token = renewed.access_token
            return renewed.access_token

    # ---- uploads -------------------------------------------------------------------------

    async def create_upload(
        self, body: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Start an upload. With a key, every retry of it (here or after a crash) gets the same
        upload back from the gateway, so a lost 201 neither makes a second upload nor a 409."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = await self._request("POST", f"{API}/uploads", json=body, headers=headers)
        return dict(response.json())

    async def get_upload(self, upload_id: str, upload_token: str | None = None) -> dict[str, Any]:
        response = await self._with_upload_token("GET", f"{API}/uploads/{upload_id}", upload_token)
        return dict(response.json())

    async def complete_upload(
        self, upload_id: str, upload_token: str | None = None
    ) -> dict[str, Any]:
        response = await self._with_upload_token(
            "POST", f"{API}/uploads/{upload_id}/complete", upload_token
        )
        try:
            return dict(response.json())
        except ValueError:
            return {}

    async def renew_upload_token(self, upload_id: str) -> dict[str, Any]:
        """A new upload token for one's own upload, asked with the sign-in (the previous token,
        ended or not, stops working)."""
        response = await self._request("POST", f"{API}/uploads/{upload_id}/token")
        return dict(response.json())

    def upload_token_ended(self, upload_token: str) -> bool:
        """Whether the gateway said this upload token no longer opens its upload."""
        return upload_token in self._ended_upload_tokens

    async def _with_upload_token(
        self, method: str, url: str, upload_token: str | None
    ) -> httpx.Response:
        """Prefer the upload's own token: a long run then needs the sign-in only to start uploads,
        so a refresh (single-use, risky on a lossy link) is rarely needed at all."""
        if upload_token is not None and upload_token not in self._ended_upload_tokens:
            try:
                return await self._request(
                    method, url, headers={"X-Upload-Token": upload_token}, signed=False
                )
            except ApiError as error:
                # The token lives as long as the session (24 h); the sign-in outlives it. It
                # also ends with the owner's sign-out everywhere or new password.
                if error.status not in (401, 410):
                    raise
                if error.code in ENDED_UPLOAD_TOKEN_CODES:
                    self._ended_upload_tokens.add(upload_token)
        return await self._request(method, url)

    async def cancel_upload(self, upload_id: str, upload_token: str | None = None) -> None:
        await self._with_upload_token("DELETE", f"{API}/uploads/{upload_id}", upload_token)

    async def put_chunk(
        self,
        upload_id: str,
        file_id: str,
        index: int,
        data: bytes,
        md5: str,
        upload_token: str | None,
        on_bytes: Callable[[int], None] | None = None,
        window: InFlightWindow | None = None,
    ) -> int:
        """Send one chunk until the server has it; returns 201 (stored) or 200 (already there).

        With a ``window``, each attempt waits for a place in it (backoff waits do not hold one).
        """
        url = f"{API}/uploads/{upload_id}/files/{file_id}/chunks/{index}"
        headers = {"Content-MD5": md5, "Content-Type": "application/octet-stream"}
        headers["Content-Length"] = str(len(data))
        if upload_token is not None:
            headers["X-Upload-Token"] = upload_token
        attempt_bytes = 0

        def body() -> AsyncIterator[bytes]:
            async def pieces() -> AsyncIterator[bytes]:
                nonlocal attempt_bytes
                view = memoryview(data)
                for start in range(0, len(data), SEND_PIECE):
                    piece = bytes(view[start : start + SEND_PIECE])
                    yield piece
                    # The previous piece was accepted by the socket: count it as moved (but not
                    # as progress of the run, which only a stored chunk is).
                    attempt_bytes += len(piece)
                    self.stats.sent += len(piece)
                    if on_bytes is not None:
                        on_bytes(len(piece))

            return pieces()

        def rewind() -> None:
            # Whatever the failed attempt put on the wire is wasted: it all goes again.
            nonlocal attempt_bytes
            if on_bytes is not None and attempt_bytes:
                on_bytes(-attempt_bytes)
            self.stats.resent += attempt_bytes
            attempt_bytes = 0

        try:
            response = await self._request(
                "PUT",
                url,
                content_factory=body,
                headers=headers,
                signed=upload_token is None,
                on_retry=rewind,
                window=window,
            )
        except ApiError as error:
            if upload_token is not None and error.code in ENDED_UPLOAD_TOKEN_CODES:
                # Sent again with a new token: what went out with the ended one was wasted.
                self._ended_upload_tokens.add(upload_token)
                rewind()
            raise
        return response.status_code

    # ---- the retry loop ------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        json: dict[str, Any] | None = None,
        content_factory: Callable[[], AsyncIterator[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
        on_retry: Callable[[], None] | None = None,
        on_status: dict[int, type[ClientError]] | None = None,
        window: InFlightWindow | None = None,
        retry_statuses: frozenset[int] = TRANSIENT_STATUSES,
        idle_timeout: float | None = None,
        resend_window: float | None = None,
    ) -> httpx.Response:
        """Send until answered. ``idle_timeout`` replaces the client's stall timeout for this
        request; ``resend_window``: no attempt starts more than this many seconds after the first
        one that may have been carried out (else :class:`_ResendWindowClosed`)."""
        attempt = 0
        first_delivered: float | None = None
        attempt_sent: float | None = None

        async def trace(event: str, info: dict[str, Any]) -> None:
            # When the request itself left, not when it began waiting for a free connection:
            # the gateway can have acted on it only from then on.
            nonlocal attempt_sent
            if attempt_sent is None and event.endswith(".send_request_headers.started"):
                attempt_sent = time.monotonic()

        extensions = {"trace": trace} if resend_window is not None else None
        while True:
            request_headers = dict(headers or {})
            token: str | None = None
            if signed:
                token = await self._bearer()
                request_headers["Authorization"] = f"Bearer {token}"
            wait: float | None = None
            failure: httpx.TransportError | None = None
            if window is not None:
                await window.acquire()
            attempt_sent = None
            try:
                response = await self._http.request(
                    method,
                    url,
                    json=json,
                    content=content_factory() if content_factory is not None else None,
                    headers=request_headers,
                    extensions=extensions,
                    timeout=(
                        httpx.Timeout(idle_timeout, pool=None)
                        if idle_timeout is not None
                        else httpx.USE_CLIENT_DEFAULT
                    ),
                )
            except httpx.TransportError as error:
                response = None
                failure = error
                reason = type(error).__name__
            finally:
                if window is not None:
                    window.release()
            status = response.status_code if response is not None else None
            if window is not None and is_cut(failure, status):
                if window.allowed > 1:
                    log.info("one chunk at a time after %s", reason_of(failure, status))
                window.cut()
            if (
                first_delivered is None
                and attempt_sent is not None
                and status not in NOT_CARRIED_OUT
            ):
                first_delivered = attempt_sent
            if response is not None:
                if response.status_code < 400:
                    if response.status_code < 300:
                        self.liveness.touch()
                    if window is not None:
                        window.succeeded()
                    return response
                if response.status_code == 401 and signed and token is not None:
                    if on_retry is not None:
                        on_retry()
                    self._access_token = None
                    await self._refresh(rejected=token)
                    continue
                if on_status and response.status_code in on_status:
                    body = _problem(response)
                    raise on_status[response.status_code](
                        str(body.get("detail") or body.get("code") or response.status_code)
                    )
                reason = f"HTTP {response.status_code}"
                if response.status_code not in retry_statuses:
                    problem = _problem(response)
                    if problem.get("code") not in RETRY_CODES:
                        raise ApiError(
                            response.status_code,
                            problem,
                            retry_after=_retry_after_seconds(response),
                        )
                    reason = f"HTTP {response.status_code} {problem['code']}"
                wait = _retry_after(response)
            wasted = self.stats.resent
            if on_retry is not None:
                on_retry()
            self.stats.retries += 1
            # Ids and byte counts only: no patient data, no tokens.
            log.info(
                "retry %s %s after %s (attempt %d, %d bytes wasted)",
                method,
                url,
                reason,
                attempt + 1,
                self.stats.resent - wasted,
            )
            if self.liveness.idle_for() > self.retry.give_up_after:
                raise GaveUp(
                    f"no progress for {self.retry.give_up_after:.0f} s talking to {self.server}"
                    f" (last: {reason})",
                    reason,
                )
            pause = wait if wait is not None else self.retry.delay(attempt)
            if resend_window is not None and first_delivered is not None:
                left = resend_window - (time.monotonic() - first_delivered)
                if left <= 0:
                    raise _ResendWindowClosed(reason)
                # A shorter wait, not none: the last resend that is still safe is worth making.
                pause = min(pause, left)
            await asyncio.sleep(pause)
            attempt += 1
