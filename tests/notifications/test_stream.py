"""The live stream over real HTTP (an in-process uvicorn server), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text, update

from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.notifications import service
from relaypacs.notifications.models import NotificationType, StreamTicket
from relaypacs.users.models import Role
from tests.support.accounts import SignedIn, assert_problem, running_app, sign_in
from tests.support.live_events import (
    API,
    StreamRefusedError,
    notify,
    open_stream,
    serve_app,
    stream_ticket,
)
from tests.support.uploads import study


def _session_settings(app: FastAPI) -> Settings:
    """The settings of the app `client` talks to, as the base for a second app in a test.

    The second app must share its data directory (so its signing key): tokens come from the
    first. The `settings` fixture is not always that app's (tests/uploads overrides it).
    """
    settings: Settings = app.state.settings
    return settings


async def sign_in_again(client: httpx.AsyncClient, user: SignedIn) -> dict[str, str]:
    """The same user's second sign-in (another device): its bearer headers."""
    response = await client.post(
        f"{API}/auth/login", json={"username": user.username, "password": user.password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture(scope="session")
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve_app(app) as url:
        yield url


async def test_notification_and_unread_count_arrive_live(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    user = await sign_in(client, app)
    ticket = await stream_ticket(client, user.headers)
    async with open_stream(base_url, ticket=ticket) as events:
        initial = await events.next()
        assert (initial.event, initial.data, initial.id) == ("unread_count", {"count": 0}, None)
        assert events.retry == 3000
        notification_id = await notify(app, user.id, NotificationType.report_ready)
        live = await events.next()
        assert live.event == "notification"
        assert live.data["id"] == str(notification_id)
        assert live.data["type"] == "report_ready"
        assert live.data["read"] is False
        count = await events.next()
        assert (count.event, count.data) == ("unread_count", {"count": 1})
        assert int(count.id or 0) > int(live.id or 0)

        read = await client.patch(
            f"{API}/notifications/{notification_id}", json={"read": True}, headers=user.headers
        )
        assert read.status_code == 200
        assert (await events.until("unread_count")).data == {"count": 0}


async def test_only_the_users_own_events_reach_a_stream(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    user = await sign_in(client, app)
    other = await sign_in(client, app)
    async with open_stream(base_url, ticket=await stream_ticket(client, user.headers)) as events:
        await events.next()  # unread_count
        await notify(app, other.id, title="not yours")
        mine = await notify(app, user.id, title="yours")
        first = await events.next()
        assert first.data["id"] == str(mine)


async def test_upload_state_changes_are_streamed(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    user = await sign_in(client, app)
    async with open_stream(base_url, ticket=await stream_ticket(client, user.headers)) as events:
        await events.next()
        started = await client.post(
            f"{API}/uploads",
            json={"study": study(), "files": [{"name": "a.dcm", "size": 10}]},
            headers=user.headers,
        )
        assert started.status_code == 201, started.text
        upload_id = started.json()["upload_id"]
        event = await events.until("upload_state", upload_id=upload_id)
        assert event.data["state"] == "created"
        cancelled = await client.delete(f"{API}/uploads/{upload_id}", headers=user.headers)
        assert cancelled.status_code == 204
        event = await events.until("upload_state", upload_id=upload_id)
        assert event.data["state"] == "cancelled"


async def test_last_event_id_replays_what_a_dropped_connection_missed(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    user = await sign_in(client, app)
    async with open_stream(base_url, ticket=await stream_ticket(client, user.headers)) as events:
        await events.next()
        await notify(app, user.id, title="seen")
        seen = await events.until("unread_count")
    missed = [await notify(app, user.id, title=f"missed {i}") for i in range(3)]

    ticket = await stream_ticket(client, user.headers)
    async with open_stream(base_url, ticket=ticket, last_event_id=seen.id) as events:
        replayed = [await events.next() for _ in range(6)]
        assert [e.event for e in replayed] == ["notification", "unread_count"] * 3
        assert [e.data["id"] for e in replayed[::2]] == [str(m) for m in missed]
        assert [e.data["count"] for e in replayed[1::2]] == [2, 3, 4]
        ids = [int(e.id or 0) for e in replayed]
        assert ids == sorted(ids)
        assert ids[0] > int(seen.id or 0)
        current = await events.next()
        assert (current.event, current.data, current.id) == ("unread_count", {"count": 4}, None)


async def test_bad_reused_and_expired_tickets_are_refused(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    user = await sign_in(client, app)
    with pytest.raises(StreamRefusedError) as refused:
        async with open_stream(base_url, ticket="made-up"):
            pass
    assert_problem(refused.value.response, 401, "invalid_stream_ticket")

    ticket = await stream_ticket(client, user.headers)
    async with open_stream(base_url, ticket=ticket) as events:
        await events.next()
    with pytest.raises(StreamRefusedError) as refused:
        async with open_stream(base_url, ticket=ticket):
            pass
    assert_problem(refused.value.response, 401, "invalid_stream_ticket")

    expired = await stream_ticket(client, user.headers)
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(StreamTicket)
            .where(StreamTicket.token_hash == hashlib.sha256(expired.encode()).hexdigest())
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    with pytest.raises(StreamRefusedError) as refused:
        async with open_stream(base_url, ticket=expired):
            pass
    assert_problem(refused.value.response, 401, "invalid_stream_ticket")


async def test_a_ticket_whose_sign_in_ended_opens_no_stream(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    user = await sign_in(client, app)
    ticket = await stream_ticket(client, user.headers)
    logout = await client.post(
        f"{API}/auth/logout", json={"refresh_token": user.refresh_token}, headers=user.headers
    )
    assert logout.status_code == 204, logout.text
    with pytest.raises(StreamRefusedError) as refused:
        async with open_stream(base_url, ticket=ticket):
            pass
    assert_problem(refused.value.response, 401, "invalid_stream_ticket")


async def test_tickets_are_stored_hashed_and_a_token_in_the_url_is_refused(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    user = await sign_in(client, app)
    ticket = await stream_ticket(client, user.headers)
    async with app.state.sessionmaker() as session:
        stored = await session.get(StreamTicket, hashlib.sha256(ticket.encode()).hexdigest())
        assert stored is not None
        assert stored.user_id == user.id
        assert stored.expires_at - stored.created_at == timedelta(seconds=60)
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get(
            f"{API}/notifications/stream", params={"access_token": user.access_token}
        )
        assert_problem(response, 400, "token_in_url")
        response = await http.get(f"{API}/notifications/stream")
        assert_problem(response, 401, "not_authenticated")
        response = await http.get(
            f"{API}/notifications/stream",
            params={"ticket": ticket},
            headers={"Last-Event-ID": "abc"},
        )
        assert_problem(response, 400, "invalid_last_event_id")
    # The refused request did not use the ticket up.
    async with open_stream(base_url, ticket=ticket) as events:
        assert (await events.next()).event == "unread_count"


async def test_a_bearer_header_also_opens_a_stream(
    client: httpx.AsyncClient, app: FastAPI, base_url: str
) -> None:
    user = await sign_in(client, app)
    async with open_stream(base_url, headers=user.headers) as events:
        assert (await events.next()).event == "unread_count"


async def test_open_streams_per_user_are_capped(
    client: httpx.AsyncClient, app: FastAPI, base_url: str, settings: Settings
) -> None:
    user = await sign_in(client, app)
    cap = settings.sse_max_streams_per_user
    async with _Streams(base_url, user.headers, cap) as readers:
        assert len(readers) == cap
        with pytest.raises(StreamRefusedError) as refused:
            async with open_stream(base_url, headers=user.headers):
                pass
        assert_problem(refused.value.response, 429, "too_many_streams")
    # Closing one frees its place (the server sees the disconnect).
    for _ in range(200):
        if app.state.event_hub.stream_count(user.id) == 0:
            break
        await asyncio.sleep(0.01)
    async with open_stream(base_url, headers=user.headers) as events:
        await events.next()


class _Streams:
    def __init__(self, base_url: str, headers: dict[str, str], count: int) -> None:
        self.contexts = [open_stream(base_url, headers=headers) for _ in range(count)]

    async def __aenter__(self) -> list[object]:
        readers = [await c.__aenter__() for c in self.contexts]
        for reader in readers:
            await reader.next()
        return list(readers)

    async def __aexit__(self, *exc: object) -> None:
        for context in reversed(self.contexts):
            await context.__aexit__(None, None, None)


async def test_a_stream_that_falls_behind_is_ended_and_replayed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The queue per stream is bounded: an overflowing stream ends instead of growing, and
    its client gets everything back from the log with Last-Event-ID."""
    small = _session_settings(app).model_copy(update={"sse_queue_size": 4})
    async with running_app(small) as app, serve_app(app) as base_url:
        user = await sign_in(client, app)
        async with open_stream(base_url, headers=user.headers) as events:
            await events.next()
            # One transaction, ten notifications: twenty events at once overflow the queue.
            async with app.state.sessionmaker() as session:
                ids = [
                    (await service.notify(session, user.id, "report_ready", title="t", body="b")).id
                    for _ in range(10)
                ]
                await session.commit()
            received = await events.read_to_end()
            assert any("overflow" in c for c in events.comments)
            assert len(received) < 20
        last = received[-1].id if received else None
        async with open_stream(base_url, headers=user.headers, last_event_id=last) as events:
            rest = [await events.next() for _ in range(20 - len(received))]
        notifications = [e.data["id"] for e in received + rest if e.event == "notification"]
        assert notifications == [str(i) for i in ids]


async def test_a_client_that_stops_reading_is_disconnected(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    slow = _session_settings(app).model_copy(update={"sse_send_timeout_seconds": 1.0})
    async with running_app(slow) as app, serve_app(app, send_buffer_bytes=4096) as base_url:
        user = await sign_in(client, app)
        port = int(base_url.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        request = (
            f"GET {API}/notifications/stream HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {user.access_token}\r\n\r\n"
        )
        sock.sendall(request.encode())
        hub = app.state.event_hub
        for _ in range(500):
            if hub.stream_count(user.id) == 1:
                break
            await asyncio.sleep(0.01)
        assert hub.stream_count(user.id) == 1
        # Keep writing, never reading: the server must drop the client (its send deadline or
        # its bounded queue), not buffer without end.
        deadline = time.monotonic() + 60
        while hub.stream_count(user.id) == 1:
            assert time.monotonic() < deadline, "the server kept a client that never reads"
            async with app.state.sessionmaker() as session:
                for _ in range(50):
                    await service.notify(
                        session, user.id, "report_ready", title="t", body="x" * 1900
                    )
                await session.commit()
            await asyncio.sleep(0.05)
        assert hub.stream_count(user.id) == 0
        sock.close()


async def test_unknown_user_id_events_do_not_leak(app: FastAPI) -> None:
    assert app.state.event_hub.stream_count(uuid.uuid4()) == 0


async def test_a_lost_listen_connection_is_replaced_and_nothing_is_missed(
    client: httpx.AsyncClient, app: FastAPI, base_url: str, settings: Settings
) -> None:
    if settings.is_sqlite:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    user = await sign_in(client, app)
    async with open_stream(base_url, ticket=await stream_ticket(client, user.headers)) as events:
        await events.next()
        async with app.state.sessionmaker() as session:
            # The hub's listening connection dies (a PostgreSQL restart or a network cut).
            killed = await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                )
            )
            terminated = killed.scalars().all()
            assert terminated
            assert all(terminated)
        during = await notify(app, user.id, title="while the listener was down")
        event = await events.until("notification", wait=30)
        assert event.data["id"] == str(during)
        after = await notify(app, user.id, title="after it came back")
        event = await events.until("notification", wait=30)
        assert event.data["id"] == str(after)


async def test_an_idle_stream_gets_a_heartbeat(client: httpx.AsyncClient, app: FastAPI) -> None:
    quick = _session_settings(app).model_copy(update={"sse_heartbeat_seconds": 0.2})
    async with running_app(quick) as app, serve_app(app) as base_url:
        user = await sign_in(client, app)
        async with open_stream(base_url, headers=user.headers) as events:
            assert (await events.next()).event == "unread_count"
            heartbeat = await events.next_heartbeat(wait=5)
            assert heartbeat.id is None  # never moves a client's Last-Event-ID
            assert heartbeat.data == {"every": 0.2}
    # What production sends unless configured otherwise: one every 15 s.
    assert Settings.model_fields["sse_heartbeat_seconds"].default == 15


@pytest.mark.parametrize("opened_with", ["ticket", "bearer"])
async def test_a_stream_ends_when_its_sign_in_ends(
    client: httpx.AsyncClient, app: FastAPI, opened_with: str
) -> None:
    """Logout on this device ends its stream: a radiologist's later message must not reach it."""
    quick = _session_settings(app).model_copy(update={"sse_heartbeat_seconds": 0.2})
    async with running_app(quick) as app, serve_app(app) as base_url:
        user = await sign_in(client, app)
        other_device = await sign_in_again(client, user)
        if opened_with == "ticket":
            opened = open_stream(base_url, ticket=await stream_ticket(client, user.headers))
        else:
            opened = open_stream(base_url, headers=user.headers)
        async with (
            opened as events,
            open_stream(base_url, headers=other_device) as other_events,
        ):
            await events.next()
            await other_events.next()
            logout = await client.post(
                f"{API}/auth/logout",
                json={"refresh_token": user.refresh_token},
                headers=user.headers,
            )
            assert logout.status_code == 204, logout.text
            assert await events.read_to_end() == []
            assert any("sign-in ended" in c for c in events.comments)
            # The user's sign-in on another device goes on, and so does its stream.
            await notify(app, user.id, NotificationType.report_ready)
            assert (await other_events.next()).event == "notification"


async def test_a_stream_ends_when_its_account_is_disabled(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    quick = _session_settings(app).model_copy(update={"sse_heartbeat_seconds": 0.2})
    async with running_app(quick) as app, serve_app(app) as base_url:
        user = await sign_in(client, app)
        admin = await sign_in(client, app, role=Role.admin)
        async with open_stream(base_url, headers=user.headers) as events:
            await events.next()
            disabled = await client.patch(
                f"{API}/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
            )
            assert disabled.status_code == 200, disabled.text
            assert await events.read_to_end() == []
            assert any("no longer active" in c for c in events.comments)
        assert app.state.event_hub.stream_count(user.id) == 0
