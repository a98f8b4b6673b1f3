"""The whole protocol end to end: start, chunks in any order, status, complete, validated."""

from __future__ import annotations

import hashlib

import httpx
from fastapi import FastAPI

from tests.support import uploads
from tests.support.accounts import sign_in
from tests.support.dicom_studies import instance


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
