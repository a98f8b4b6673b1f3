"""Drive the upload protocol over HTTP in tests: start, send chunks, complete, await the job."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
from fastapi import FastAPI

from relaypacs.uploads.service import FORWARD_JOB

API = "/api/v1"
KIB = 1024
MIB = 1024 * KIB
SMALL_CHUNK = 512 * KIB

_patients = itertools.count(1)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def study(**overrides: Any) -> dict[str, Any]:
    """Declared study metadata; a fresh patient name each time, so no duplicate rule fires."""
    values: dict[str, Any] = {
        "patient_name": f"TEST^PATIENT{next(_patients)}^{uuid.uuid4().hex[:6]}",
        "patient_id": "PID-0001",
        "study_date": date(2024, 5, 17).isoformat(),
        "modality": "CT",
        "service_level": "routine",
        "study_description": "CT HEAD",
    }
    values.update(overrides)
    return values


def chunks_of(data: bytes, chunk_size: int) -> list[bytes]:
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]


@dataclass
class Session:
    """A started upload as the client sees it."""

    body: dict[str, Any]
    contents: list[bytes]

    @property
    def id(self) -> str:
        return str(self.body["upload_id"])

    @property
    def token_headers(self) -> dict[str, str]:
        return {"X-Upload-Token": self.body["upload_token"]}

    @property
    def chunk_size(self) -> int:
        return int(self.body["chunk_size"])

    def file_id(self, position: int = 0) -> str:
        return str(self.body["files"][position]["file_id"])

    def chunk(self, position: int, index: int) -> bytes:
        size = self.chunk_size
        return self.contents[position][index * size : (index + 1) * size]

    def chunk_url(self, position: int, index: int | str) -> str:
        return f"{API}/uploads/{self.id}/files/{self.file_id(position)}/chunks/{index}"

    def all_chunks(self) -> list[tuple[int, int]]:
        return [
            (position, index)
            for position, f in enumerate(self.body["files"])
            for index in range(int(f["chunk_count"]))
        ]


async def start(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    contents: list[bytes],
    *,
    chunk_size: int = SMALL_CHUNK,
    names: list[str] | None = None,
    **study_overrides: Any,
) -> Session:
    names = names or [f"file{i}.dcm" for i in range(len(contents))]
    response = await client.post(
        f"{API}/uploads",
        json={
            "study": study(**study_overrides),
            "files": [{"name": n, "size": len(c)} for n, c in zip(names, contents, strict=True)],
            "chunk_size": chunk_size,
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return Session(response.json(), contents)


async def put(
    client: httpx.AsyncClient,
    session: Session,
    position: int,
    index: int,
    data: bytes | None = None,
    *,
    md5: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = session.chunk(position, index) if data is None else data
    return await client.put(
        session.chunk_url(position, index),
        content=body,
        headers={
            **(session.token_headers if headers is None else headers),
            "Content-MD5": md5 or md5_b64(body),
        },
    )


async def send_all(client: httpx.AsyncClient, session: Session) -> None:
    for position, index in session.all_chunks():
        response = await put(client, session, position, index)
        assert response.status_code == 201, response.text


async def status(
    client: httpx.AsyncClient, session: Session, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.get(
        f"{API}/uploads/{session.id}", headers=headers or session.token_headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def job_finished(
    app: FastAPI, kind: str, upload_id: str | None = None
) -> AsyncIterator[asyncio.Event]:
    """An event set when the in-process worker records an outcome of ``kind`` (for the upload)."""
    worker = app.state.job_worker
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def listener(job: Any, outcome: str) -> None:
        finished = outcome in {"succeeded", "failed", "dead"}
        ours = upload_id is None or str(job.payload.get("upload_id")) == upload_id
        if finished and job.kind == kind and ours:
            loop.call_soon_threadsafe(done.set)

    worker.listeners.append(listener)
    try:
        yield done
    finally:
        worker.listeners.remove(listener)


async def complete_and_wait(
    client: httpx.AsyncClient,
    app: FastAPI,
    session: Session,
    wait_seconds: float = 60,
    *,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST complete, await the assembly job and, when it validated the study and the
    forwarding stage is installed, the forwarding job; return the upload's status.

    ``headers``: how to authenticate (default: the upload token)."""
    headers = headers or session.token_headers
    async with (
        job_finished(app, "uploads.assemble", session.id) as assembled,
        job_finished(app, FORWARD_JOB, session.id) as forwarded,
    ):
        response = await client.post(f"{API}/uploads/{session.id}/complete", headers=headers)
        assert response.status_code == 202, response.text
        await asyncio.wait_for(assembled.wait(), wait_seconds)
        after = await status(client, session, headers)
        forwarding = FORWARD_JOB in app.state.job_worker.registry.handlers
        if forwarding and after["state"] in {"validated", "queued", "forwarding"}:
            await asyncio.wait_for(forwarded.wait(), wait_seconds)
    return await status(client, session, headers)
