"""Real gateway processes on PostgreSQL: two instances sharing a store, and kill -9 mid-upload."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import uploads
from tests.support.databases import throwaway_database
from tests.support.dicom_studies import large_multiframe
from tests.support.s3 import create_bucket
from tests.support.servers import RelayServer

pytestmark = pytest.mark.slow
API = "/api/v1"
PASSWORD = "Vq8#relay-Pacs!"


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with throwaway_database("postgresql", tmp_path) as url:
        yield url


def _store_settings(store: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if store == "file":
        return {}
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return {"storage_url": f"s3://{create_bucket(endpoint)}/relay", "s3_endpoint_url": endpoint}


async def _sign_up(client: httpx.AsyncClient) -> dict[str, str]:
    username = f"tech_{time.monotonic_ns()}"
    response = await client.post(
        f"{API}/auth/register",
        json={"username": username, "email": f"{username}@example.org", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    login = await client.post(
        f"{API}/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _wait_for_outcome(client: httpx.AsyncClient, session: uploads.Session) -> dict[str, Any]:
    # Another process runs the job: poll its status, the only view this client has.
    deadline = time.monotonic() + 120
    while True:
        status = await uploads.status(client, session)
        if status["state"] not in {"assembling", "receiving", "validated", "queued", "forwarding"}:
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("store", ["file", "s3"])
async def test_two_processes_sharing_database_and_store_take_alternate_chunks(
    tmp_path: Path, postgres_url: str, store: str, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    settings = _store_settings(store, request)
    servers = [
        RelayServer(
            data_dir=data_dir,
            database_url=postgres_url,
            log_path=tmp_path / f"s{n}.log",
            **settings,
        )
        for n in range(2)
    ]
    try:
        for server in servers:
            server.start()  # one after the other: the first creates the shared signing key
        data = large_multiframe(frames=16)  # ~8 MiB: 16 chunks of 512 KiB
        async with (
            httpx.AsyncClient(base_url=servers[0].url, timeout=60) as first,
            httpx.AsyncClient(base_url=servers[1].url, timeout=60) as second,
        ):
            headers = await _sign_up(first)
            session = await uploads.start(first, headers, [data], modality="OT")
            clients = [first, second]
            # Every chunk goes to one process and, at the same time, a copy to the other.
            results = await asyncio.gather(
                *(
                    uploads.put(clients[(index + copy) % 2], session, 0, index)
                    for index in range(len(session.all_chunks()))
                    for copy in (0, 1)
                )
            )
            codes = [r.status_code for r in results]
            assert sorted(codes) == sorted([200, 201] * len(session.all_chunks())), codes
            status = await uploads.status(second, session)
            assert status["bytes_received"] == len(data)
            response = await second.post(
                f"{API}/uploads/{session.id}/complete", headers=session.token_headers
            )
            assert response.status_code == 202
            outcome = await _wait_for_outcome(first, session)
        assert outcome["state"] == "delivered", outcome
        assert outcome["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        for server in servers:
            server.stop()


def _staging_files(data_dir: Path) -> list[Path]:
    return [
        p
        for root in (data_dir / "chunks" / "tmp", data_dir / "staging")
        if root.exists()
        for p in root.rglob("*")
        if p.is_file() and p.name != ".lock"
    ]


def _start_slow_put(server: RelayServer, session: uploads.Session, index: int) -> socket.socket:
    """Send the headers and half the body of a chunk, then stall (a client mid-transfer)."""
    body = session.chunk(0, index)
    path = session.chunk_url(0, index)
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-MD5: {uploads.md5_b64(body)}\r\n"
        f"X-Upload-Token: {session.body['upload_token']}\r\n\r\n"
    ).encode()
    connection = socket.create_connection(("127.0.0.1", server.port))
    connection.sendall(head + body[: len(body) // 2])
    return connection


@pytest.mark.parametrize("store", ["file", "s3"])
async def test_server_killed_mid_upload_resumes_to_byte_identical_file(
    tmp_path: Path, postgres_url: str, store: str, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    server = RelayServer(
        data_dir=data_dir,
        database_url=postgres_url,
        log_path=tmp_path / "server.log",
        **_store_settings(store, request),
    )
    data = large_multiframe(frames=12)  # ~6 MiB: 12 chunks
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            headers = await _sign_up(client)
            session = await uploads.start(client, headers, [data], modality="OT")
            total = len(session.all_chunks())
            acknowledged = list(range(0, total, 2))
            for index in acknowledged:
                assert (await uploads.put(client, session, 0, index)).status_code == 201
        stalled = _start_slow_put(server, session, 1)
        deadline = time.monotonic() + 30
        while not _staging_files(data_dir):  # the interrupted write has begun
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

        server.kill()
        stalled.close()
        assert _staging_files(data_dir), "the interrupted write left a temporary behind"

        server.start()
        assert _staging_files(data_dir) == []  # cleaned at start-up
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            status = await uploads.status(client, session)
            missing = [
                index
                for first, last in status["files"][0]["missing_chunks"]
                for index in range(first, last + 1)
            ]
            assert missing == [i for i in range(total) if i not in acknowledged]
            assert status["bytes_received"] == sum(len(session.chunk(0, i)) for i in acknowledged)
            for index in missing:
                assert (await uploads.put(client, session, 0, index)).status_code == 201
            for index in acknowledged:  # a client unsure about these may resend them
                assert (await uploads.put(client, session, 0, index)).status_code == 200
            response = await client.post(
                f"{API}/uploads/{session.id}/complete", headers=session.token_headers
            )
            assert response.status_code == 202
            outcome = await _wait_for_outcome(client, session)
        assert outcome["state"] == "delivered", outcome
        assert outcome["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        server.stop()
