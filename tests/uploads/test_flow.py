"""The whole protocol end to end: start, chunks in any order, status, complete, validated."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from relaypacs.uploads import assembly
from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance
from tests.support.statements import captured_statements


async def test_chunks_in_any_order_assemble_to_a_validated_study(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    first = instance(rows=512, columns=600)  # ~600 KiB: two chunks
    second = instance(rows=64, columns=64)
    session = await uploads.start(client, user.headers, [first, second])
    assert [f["chunk_count"] for f in session.body["files"]] == [2, 1]

    for position, index in reversed(session.all_chunks()):
        response = await uploads.put(client, session, position, index)
        assert response.status_code == 201, response.text

    before = await uploads.status(client, session)
    assert before["state"] == "receiving"
    assert before["bytes_received"] == before["bytes_total"] == len(first) + len(second)
    assert all(f["missing_chunks"] == [] for f in before["files"])

    after = await uploads.complete_and_wait(client, app, session)
    assert after["state"] == "delivered", after
    assert after["instance_count"] == 2
    assert [f["sha256"] for f in after["files"]] == [
        hashlib.sha256(first).hexdigest(),
        hashlib.sha256(second).hexdigest(),
    ]
    assert [e["state"] for e in after["timeline"]] == [
        "created",
        "receiving",
        "assembling",
        "validated",
        "queued",
        "forwarding",
        "delivered",
    ]
    assert {i["sha256"] for i in after["instances"]} == {
        hashlib.sha256(first).hexdigest(),
        hashlib.sha256(second).hexdigest(),
    }


async def test_a_study_of_many_files_is_assembled_a_few_at_a_time_from_one_chunk_read(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CT series exported as a thousand small files: no read per file, and files overlap.
    user = await sign_in(client, app)
    contents = [instance(rows=16, columns=16) for _ in range(12)]
    session = await uploads.start(client, user.headers, contents)
    for position, index in session.all_chunks():
        assert (await uploads.put(client, session, position, index)).status_code == 201

    in_flight = peak = 0
    assemble_file = assembly._assemble_file

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await assemble_file(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(assembly, "_assemble_file", counted)
    with captured_statements(app) as statements:
        after = await uploads.complete_and_wait(client, app, session)
    assert after["instance_count"] == 12, after
    assert [f["sha256"] for f in after["files"]] == [
        hashlib.sha256(c).hexdigest() for c in contents
    ]
    assert 1 < peak <= assembly.ASSEMBLY_CONCURRENCY
    chunk_listings = [s for s in statements if "upload_chunk.size, upload_chunk.md5" in s]
    assert len(chunk_listings) == 1, chunk_listings
