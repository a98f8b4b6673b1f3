"""Every request body but a chunk's is limited (RELAYPACS_MAX_JSON_BODY_BYTES), over real HTTP.

The raw-socket tests send a request whose body never ends: an answer can only come from a
gateway that refuses it before, or while, reading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select

from relaypacs.audit.models import AuditEvent
from relaypacs.config import Settings
from relaypacs.errors import PROBLEM_MEDIA_TYPE
from relaypacs.uploads.schemas import MAX_FILES, UploadCreate
from relaypacs.users.models import User
from tests.conftest import make_settings
from tests.support.accounts import (
    DEFAULT_PASSWORD,
    assert_problem,
    create_account,
    running_app,
    sign_in,
)
from tests.support.live_events import serve_app
from tests.support.uploads import KIB, MIB, md5_b64, study

LIMIT = 64 * KIB
LOGIN = "/api/v1/auth/login"
# An answer to a request whose body is still arriving comes at once, or never.
ANSWER_TIMEOUT_S = 10.0


@pytest.fixture
async def gateway(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, str]]:
    """An app with a small body limit (one failed sign-in locks), served over real HTTP."""
    settings = make_settings(
        database_url, tmp_path, max_json_body_bytes=LIMIT, login_lockout_threshold=1
    )
    async with running_app(settings) as app, serve_app(app) as url:
        yield app, url


def _padded_login(username: str, password: str, size: int) -> bytes:
    """A valid login body of exactly ``size`` bytes (JSON allows the trailing spaces)."""
    body = json.dumps({"username": username, "password": password}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def _chunked(part: bytes) -> bytes:
    """One chunk of a ``Transfer-Encoding: chunked`` body."""
    return f"{len(part):x}\r\n".encode() + part + b"\r\n"


async def _exchange(url: str, head: str, body: Iterable[bytes]) -> tuple[int, bytes, bytes]:
    """Send a request head and body bytes exactly as given, then read one answer: (status,
    raw headers, body)."""
    where = urlsplit(url)
    assert where.hostname is not None
    assert where.port is not None
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        for part in body:
            writer.write(part)
            await writer.drain()
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT_S)
        status = int(raw.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in raw.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        content = await asyncio.wait_for(reader.readexactly(length), ANSWER_TIMEOUT_S)
        return status, raw, content
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _assert_refused(status: int, raw_headers: bytes, content: bytes) -> dict[str, Any]:
    assert status == 413, content
    assert f"content-type: {PROBLEM_MEDIA_TYPE}".encode() in raw_headers.lower()
    problem: dict[str, Any] = json.loads(content)
    assert problem["code"] == "request_too_large"
    assert problem["status"] == 413
    assert problem["type"].endswith("/request_too_large")
    assert problem["title"]
    assert problem["detail"]
    assert problem["max_body_bytes"] == LIMIT
    return problem


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    gateway: tuple[FastAPI, str],
) -> None:
    _, url = gateway
    head = (
        f"POST {LOGIN} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"Content-Length: {200 * MIB}\n"
    )
    counted = {"method": "POST", "route": LOGIN, "status": "413"}
    before = REGISTRY.get_sample_value("relaypacs_http_requests_total", counted) or 0.0
    status, raw_headers, content = await _exchange(url, head, [])  # not one byte of the body
    _assert_refused(status, raw_headers, content)
    assert b"x-request-id:" in raw_headers.lower()  # answered inside the request log
    # Refused before routing, yet counted under its route, not as an unknown path (the count
    # is written just after the answer is sent).
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            if REGISTRY.get_sample_value("relaypacs_http_requests_total", counted) == before + 1:
                break
            await asyncio.sleep(0.05)


async def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(
    gateway: tuple[FastAPI, str],
) -> None:
    _, url = gateway
    head = (
        f"POST {LOGIN} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        "Transfer-Encoding: chunked\n"
    )
    part = b" " * (16 * KIB)
    # One chunk more than the limit holds, and no end of the body.
    parts = [_chunked(part) for _ in range(LIMIT // len(part) + 1)]
    _assert_refused(*await _exchange(url, head, parts))


async def test_a_body_at_the_limit_is_read_and_one_byte_more_is_refused(
    gateway: tuple[FastAPI, str],
) -> None:
    app, url = gateway
    _, username, _ = await create_account(app)
    at_limit = _padded_login(username, DEFAULT_PASSWORD, LIMIT)
    json_type = {"Content-Type": "application/json"}

    async def streamed(body: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(body), 10_000):
            yield body[start : start + 10_000]

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        declared = await http.post(LOGIN, content=at_limit, headers=json_type)
        assert declared.status_code == 200, declared.text
        chunked = await http.post(LOGIN, content=streamed(at_limit), headers=json_type)
        assert chunked.status_code == 200, chunked.text

        over = await http.post(LOGIN, content=at_limit + b" ", headers=json_type)
    assert_problem(over, 413, "request_too_large")


async def test_a_chunk_larger_than_the_limit_is_stored(gateway: tuple[FastAPI, str]) -> None:
    app, url = gateway
    chunk_size = MIB
    content = bytes(range(256)) * ((chunk_size + 1000) // 256)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        user = await sign_in(http, app)
        started = await http.post(
            "/api/v1/uploads",
            json={
                "study": study(),
                "files": [{"name": "IM0001.dcm", "size": len(content)}],
                "chunk_size": chunk_size,
            },
            headers=user.headers,
        )
        assert started.status_code == 201, started.text
        upload = started.json()
        chunk = content[:chunk_size]
        file_id = upload["files"][0]["file_id"]
        stored = await http.put(
            f"/api/v1/uploads/{upload['upload_id']}/files/{file_id}/chunks/0",
            content=chunk,
            headers={"X-Upload-Token": upload["upload_token"], "Content-MD5": md5_b64(chunk)},
        )
        assert stored.status_code == 201, stored.text
        assert stored.json()["size"] == chunk_size

        # The same number of bytes anywhere else is over this gateway's limit.
        elsewhere = await http.post(
            "/api/v1/uploads",
            content=chunk,
            headers={**user.headers, "Content-Type": "application/json"},
        )
    assert_problem(elsewhere, 413, "request_too_large")


async def test_a_refused_login_body_is_not_a_failed_sign_in(
    gateway: tuple[FastAPI, str],
) -> None:
    app, url = gateway
    user_id, username, _ = await create_account(app)
    wrong = _padded_login(username, "Wrong-password-1", LIMIT + 1)
    json_type = {"Content-Type": "application/json"}

    async def streamed() -> AsyncIterator[bytes]:
        yield wrong

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        declared = await http.post(LOGIN, content=wrong, headers=json_type)
        assert_problem(declared, 413, "request_too_large")
        chunked = await http.post(LOGIN, content=streamed(), headers=json_type)
        assert_problem(chunked, 413, "request_too_large")

        async with app.state.sessionmaker() as session:
            account = await session.get_one(User, user_id)
            assert account.failed_login_count == 0
            assert account.locked_until is None
            actions = await session.scalars(
                select(AuditEvent.action).where(AuditEvent.target_id == str(user_id))
            )
            assert "login_failed" not in list(actions)
        # One failure would have locked the account (threshold 1).
        right = await http.post(LOGIN, json={"username": username, "password": DEFAULT_PASSWORD})
    assert right.status_code == 200, right.text


async def test_the_limit_is_documented_for_every_body_but_a_chunk(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    login = paths[LOGIN]["post"]["responses"]["413"]
    assert "`request_too_large`" in login["description"]
    assert login["content"][PROBLEM_MEDIA_TYPE]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    start = paths["/api/v1/uploads"]["post"]["responses"]["413"]["description"]
    assert "`upload_too_large`" in start
    assert "`request_too_large`" in start
    chunk = paths["/api/v1/uploads/{upload_id}/files/{file_id}/chunks/{index}"]["put"]
    assert "`chunk_too_large`" in chunk["responses"]["413"]["description"]
    assert "request_too_large" not in chunk["responses"]["413"]["description"]


def test_the_default_limit_admits_the_largest_valid_upload_start() -> None:
    """MAX_FILES files with the longest names, in 4-byte UTF-8 characters, as the CLI (httpx)
    and the PWA (JSON.stringify) encode them."""
    wide = "\U0001f600"
    body = {
        "study": study(
            patient_name=wide * 200,
            patient_id=wide * 64,
            study_date=date(2024, 1, 2).isoformat(),
            study_description=wide * 200,
            clinical_history=wide * 4000,
        ),
        "files": [{"name": wide * 255, "size": 2**31} for _ in range(MAX_FILES)],
        "chunk_size": 10 * MIB,
        "force_upload": False,
    }
    encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    UploadCreate.model_validate_json(encoded)  # valid: the gateway must read it
    default = Settings.model_fields["max_json_body_bytes"].default
    assert len(encoded) <= default
