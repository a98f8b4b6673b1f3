"""Live events across real `relaypacs serve` processes sharing one PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import throwaway_database
from tests.support.live_events import EventReader, StreamRefusedError, open_stream
from tests.support.servers import RelayServer
from tests.support.uploads import study

pytestmark = pytest.mark.slow
API = "/api/v1"
PASSWORD = "Vq8#relay-Pacs!"


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[RelayServer, RelayServer]]:
    with throwaway_database("postgresql", tmp_path) as url:
        # One DATA_DIR: both processes sign with the same key, as replicas behind a balancer do.
        data_dir = tmp_path / "data"
        servers = (
            RelayServer(data_dir=data_dir, database_url=url, log_path=tmp_path / "a.log"),
            RelayServer(data_dir=data_dir, database_url=url, log_path=tmp_path / "b.log"),
        )
        servers[0].start()
        servers[1].start()
        try:
            yield servers
        finally:
            for server in servers:
                server.stop()


async def _sign_up(http: httpx.AsyncClient) -> dict[str, str]:
    username = f"user_{uuid.uuid4().hex[:10]}"
    registered = await http.post(
        f"{API}/auth/register",
        json={"username": username, "email": f"{username}@example.org", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    login = await http.post(f"{API}/auth/login", json={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _ticket(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await http.post(f"{API}/notifications/stream-ticket", headers=headers)
    assert response.status_code == 201
    return str(response.json()["ticket"])


async def _start_upload(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await http.post(
        f"{API}/uploads",
        json={"study": study(), "files": [{"name": "a.dcm", "size": 100}]},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["upload_id"])


async def test_an_event_raised_through_one_process_reaches_a_stream_held_by_another(
    two_servers: tuple[RelayServer, RelayServer],
) -> None:
    a, b = two_servers
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as via_b:
        headers = await _sign_up(via_b)
        # A ticket issued by one process is good at the other (it lives in the database).
        ticket = await _ticket(via_b, headers)
        async with open_stream(a.url, ticket=ticket) as events:
            assert (await events.next()).event == "unread_count"
            upload_id = await _start_upload(via_b, headers)
            created = await events.until("upload_state", upload_id=upload_id)
            assert created.data["state"] == "created"
            cancelled = await via_b.delete(f"{API}/uploads/{upload_id}", headers=headers)
            assert cancelled.status_code == 204
            event = await events.until("upload_state", upload_id=upload_id)
            assert event.data["state"] == "cancelled"
            assert int(event.id or 0) > int(created.id or 0)

        # The ticket was used up at A; B refuses it too.
        with pytest.raises(StreamRefusedError) as refused:
            async with open_stream(b.url, ticket=ticket):
                pass
        assert refused.value.response.status_code == 401
        assert refused.value.response.json()["code"] == "invalid_stream_ticket"


async def test_a_client_whose_server_died_replays_what_it_missed_from_another(
    two_servers: tuple[RelayServer, RelayServer],
) -> None:
    a, b = two_servers
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as via_b:
        headers = await _sign_up(via_b)
        first = await _start_upload(via_b, headers)
        last_id: str | None = None
        try:
            async with open_stream(a.url, ticket=await _ticket(via_b, headers)) as events:
                await events.next()
                second = await _start_upload(via_b, headers)
                seen = await events.until("upload_state", upload_id=second)
                last_id = seen.id
                a.kill()  # SIGKILL mid-stream: the connection just drops
                await _drain(events)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass
        assert last_id is not None
        missed = [await _start_upload(via_b, headers) for _ in range(2)]

        async with open_stream(
            b.url, ticket=await _ticket(via_b, headers), last_event_id=last_id
        ) as events:
            replayed = [await events.next() for _ in range(2)]
            assert [e.event for e in replayed] == ["upload_state", "upload_state"]
            assert [e.data["upload_id"] for e in replayed] == missed
            assert first not in {e.data["upload_id"] for e in replayed}
            current = await events.next()
            assert (current.event, current.id) == ("unread_count", None)


async def _drain(events: EventReader) -> None:
    while True:
        try:
            await events.next(wait=30)
        except EOFError:
            return
