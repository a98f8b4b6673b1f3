"""Renewing the sign-in over a bad link: the refresh token is single-use, and the gateway gives a
lost answer again only within its grace (``refresh_reuse_grace_seconds``, 30 s by default) of the
exchange. Later the same token is reuse, and the gateway ends the whole sign-in.

The first test runs the real CLI against a real gateway behind a proxy that holds an answer back.
The others drive the uploader's client against a small sign-in server on a real socket; it stands
in for the gateway where what matters is when requests arrive, or the local lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relaypacs.client.api import GatewayClient, NotSignedIn, RetryPolicy
from relaypacs.client.credentials import CredentialStore, SavedSignIn
from tests.client.dicom_files import write_study
from tests.client.lost_answers import Lose, lost_answers_proxy
from tests.client.test_upload_command import upload_json
from tests.resilience.gateway import CliUser, Gateway

REFRESH = "/api/v1/auth/refresh"
#: The gateway's default, set explicitly on the gateway below: what the client must keep to.
GRACE_S = 30
#: How long "another uploader" holds the sign-in lock; the event loop must not pause that long.
HOLD_S = 2.0


@pytest.fixture(scope="module")
def own_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway of its own: its test signs a new user in, and sign-ins against the shared one
    would use up the login rate limit its other tests rely on."""
    process = Gateway(
        tmp_path_factory.mktemp("refresh-gateway"),
        extra_env={
            "RELAYPACS_LOGIN_RATE_LIMIT": "100/minute",
            "RELAYPACS_REFRESH_REUSE_GRACE_SECONDS": str(GRACE_S),
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.slow
def test_a_refresh_answer_held_back_is_asked_for_again_in_time_to_get_the_same_successor(
    own_gateway: Gateway, tmp_path: Path
) -> None:
    write_study(tmp_path / "in", instances=1, pixel_bytes=50_000)
    held_back = Lose("POST", REFRESH, hold=True)
    with lost_answers_proxy(("127.0.0.1", own_gateway.port), [held_back]) as proxy:
        user = CliUser(f"http://127.0.0.1:{proxy.port}", tmp_path / "config", tmp_path / "state")
        user.register()
        saved = user.credentials()
        saved["servers"][user.server]["access_token"] = "expired-or-revoked"
        (user.config_dir / "credentials.json").write_text(json.dumps(saved))
        started = time.monotonic()

        # The default --stall-timeout (60 s) is longer than the grace: the refresh must not wait
        # for its answer that long.
        code, report = upload_json(user, str(tmp_path / "in"))

        took = time.monotonic() - started
        held, again = proxy.to("POST", REFRESH)[:2]
        assert code == 0, report
        assert held.lost
        assert held.status == 200  # the gateway made the exchange; its answer never left
        assert again.status == 200
        assert again.json()["refresh_token"] == held.json()["refresh_token"]
        assert took < GRACE_S
        kept = user.credentials()["servers"][user.server]["refresh_token"]
        assert kept == held.json()["refresh_token"]


@dataclass
class SignInServer:
    url: str = ""
    #: When each refresh request arrived (monotonic), answered or not.
    refreshes: list[float] = field(default_factory=list)
    tokens_issued: int = 0


@asynccontextmanager
async def sign_in_server(answer_refresh: bool) -> AsyncIterator[SignInServer]:
    """Answers a refresh with new tokens (or never), anything else with ``{}``."""
    state = SignInServer()
    silent: list[asyncio.Event] = []
    handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers[task] = writer
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                path = head.split(" ", 2)[1]
                length = 0
                for line in head.split("\r\n")[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                await reader.readexactly(length)
                body = b"{}"
                if path == REFRESH:
                    state.refreshes.append(time.monotonic())
                    if not answer_refresh:
                        never = asyncio.Event()
                        silent.append(never)
                        await never.wait()
                        return
                    state.tokens_issued += 1
                    n = state.tokens_issued
                    body = json.dumps(
                        {
                            "access_token": f"access-{n}",
                            "refresh_token": f"refresh-{n + 1}",
                            "token_type": "bearer",
                            "expires_in": 3600,
                        }
                    ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        for event in silent:
            event.set()
        server.close()
        # Kept-alive connections end here too, so no handler outlives the test still reading.
        for writer in handlers.values():
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def _signed_in_with_an_expired_access_token(directory: Path, server: str) -> CredentialStore:
    store = CredentialStore(directory)
    store.save(server, SavedSignIn("tech", "refresh-1", "expired", access_expires_at=0.0))
    return store


async def test_a_refresh_never_answered_is_not_sent_again_once_the_grace_may_have_passed(
    tmp_path: Path,
) -> None:
    # The gateway's 30 s and a 10 s wait per attempt, scaled down to keep the test short.
    grace, timeout = 2.0, 0.5
    async with sign_in_server(answer_refresh=False) as server:
        store = _signed_in_with_an_expired_access_token(tmp_path / "config", server.url)
        client = GatewayClient(server.url, credentials=store,
                               retry=RetryPolicy(base=0.05, cap=0.1),
                               refresh_timeout=timeout, refresh_grace=grace)  # fmt: skip
        async with client:
            started = time.monotonic()
            with pytest.raises(NotSignedIn, match="could not be renewed"):
                await asyncio.wait_for(client.get_upload("u"), 10 * grace)
            took = time.monotonic() - started

    first, *_, last = server.refreshes
    assert len(server.refreshes) >= 2  # sent again while that was safe...
    assert last - first < grace  # ...and never once the gateway could call it reuse
    assert took < grace + timeout + 1.0
    # The token is kept as it was: a `relaypacs login` is needed, not a lost one found again.
    saved = store.load(server.url)
    assert saved is not None
    assert saved.refresh_token == "refresh-1"


async def test_waiting_for_another_uploaders_sign_in_lock_does_not_stop_this_one(
    tmp_path: Path,
) -> None:
    async with sign_in_server(answer_refresh=True) as server:
        store = _signed_in_with_an_expired_access_token(tmp_path / "config", server.url)
        # flock belongs to an open file: a descriptor of our own stands in for another
        # uploader process renewing its sign-in, let go of from another thread after a while.
        held = os.open(tmp_path / "config" / ".credentials.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(held, fcntl.LOCK_EX)
        released: list[float] = []

        def release() -> None:
            released.append(time.monotonic())
            fcntl.flock(held, fcntl.LOCK_UN)

        timer = threading.Timer(HOLD_S, release)
        timer.start()
        try:
            async with GatewayClient(server.url, credentials=store) as client:
                request = asyncio.create_task(client.get_upload("u"))
                beats = [time.monotonic()]
                while not request.done():
                    await asyncio.sleep(0.02)  # what every transfer of the run needs: turns
                    beats.append(time.monotonic())
                await request
        finally:
            timer.join()
            os.close(held)

    longest_pause = max(b - a for a, b in itertools.pairwise(beats))
    assert longest_pause < HOLD_S / 4  # the event loop went on while the lock was held
    (refreshed,) = server.refreshes
    assert refreshed >= released[0]  # and the refresh still waited for the lock
    saved = store.load(server.url)
    assert saved is not None
    assert saved.refresh_token == "refresh-2"
