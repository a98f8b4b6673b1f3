"""Assembly overlaps the upload: each file is assembled and validated as soon as its last chunk
is stored, ``complete`` leaves only the rest, and forwarding starts at once after it — but,
unless ``RELAYPACS_FORWARD_WHILE_RECEIVING`` is on (test_forward_while_receiving.py), nothing
reaches the PACS before ``complete``, and a cancelled upload never does."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from relaypacs.dicom.archives import ZipLimits
from relaypacs.jobs.models import Job
from relaypacs.uploads.assembly import assemble_ready_files
from relaypacs.uploads.overlap import ASSEMBLE_READY_JOB
from relaypacs.uploads.service import FORWARD_JOB
from tests.pacs.forwarding import (
    API,
    FINAL_STATES,
    ForwardingBase,
    module_forwarding_base,
    send_file,
    status_once,
    timeline,
    wait_for_state,
)
from tests.support import uploads
from tests.support.accounts import new_client, running_app, sign_in
from tests.support.dicom_studies import instance

base = module_forwarding_base("overlap")


def _series(count: int, *, rows: int = 16) -> list[bytes]:
    study_uid, series_uid = generate_uid(), generate_uid()
    return [
        instance(study_uid=study_uid, series_uid=series_uid, instance_number=n, rows=rows)
        for n in range(1, count + 1)
    ]


def _archived(base: ForwardingBase) -> set[bytes]:
    return {
        hashlib.sha256(path.read_bytes()).digest()
        for path in (base.data_dir / "archive").rglob("*.dcm")
    }


async def test_files_are_validated_while_the_rest_arrives_and_complete_does_only_the_rest(
    base: ForwardingBase,
) -> None:
    # Three files; the first is two chunks long (its chunks are assembled in order).
    contents = [*_series(3)]
    contents[0] = instance(rows=600, columns=600)  # ~700 KiB: two 512 KiB chunks
    async with (
        running_app(base.settings(assemble_while_receiving=True)) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, contents)
        assert session.body["files"][0]["chunk_count"] == 2
        await send_file(client, session, 0)
        await send_file(client, session, 1)
        early = await status_once(
            client, session, lambda s: [f["status"] for f in s["files"]][:2] == ["valid"] * 2
        )
        # Validated ahead of `complete`: the upload still receives, the last file waits.
        assert early["state"] == "receiving"
        assert [f["status"] for f in early["files"]] == ["valid", "valid", "pending"]
        assert [f["sha256"] for f in early["files"][:2]] == [
            hashlib.sha256(data).hexdigest() for data in contents[:2]
        ]
        first_ids = {i["file_id"]: i["instance_id"] for i in early["instances"]}
        assert len(first_ids) == 2
        # Nothing went to the PACS, and no forwarding job exists before `complete`.
        assert {i["forward_status"] for i in early["instances"]} == {"pending"}
        assert not _archived(base) & {hashlib.sha256(d).digest() for d in contents}
        async with app.state.sessionmaker() as db:
            jobs = (await db.scalars(select(Job))).all()
            ours = [j for j in jobs if j.payload.get("upload_id") == session.id]
            assert {j.kind for j in ours} == {ASSEMBLE_READY_JOB}
            assert FORWARD_JOB not in {j.kind for j in ours}

        await send_file(client, session, 2)
        status = await uploads.complete_and_wait(client, app, session)
        assert status["state"] == "delivered", status
        # The lifecycle of DESIGN.md, unchanged.
        assert timeline(status) == [
            "created",
            "receiving",
            "assembling",
            "validated",
            "queued",
            "forwarding",
            "delivered",
        ]
        assert status["instance_count"] == 3
        # The files validated early were not assembled again (their instance rows stayed).
        later_ids = {i["file_id"]: i["instance_id"] for i in status["instances"]}
        assert {k: later_ids[k] for k in first_ids} == first_ids
        assert [f["status"] for f in status["files"]] == ["valid"] * 3
    assert {hashlib.sha256(d).digest() for d in contents} <= _archived(base)


async def test_a_cancelled_upload_whose_files_were_validated_never_reaches_the_pacs(
    base: ForwardingBase,
) -> None:
    contents = _series(2)
    async with (
        running_app(base.settings(assemble_while_receiving=True)) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, contents)
        await uploads.send_all(client, session)
        await status_once(client, session, lambda s: {f["status"] for f in s["files"]} == {"valid"})
        response = await client.delete(f"{API}/uploads/{session.id}", headers=user.headers)
        assert response.status_code in (200, 204), response.text
        # Whatever the queue still holds for it runs, and sends nothing.
        await app.state.job_worker.idle()
        await asyncio.sleep(0.5)
        await app.state.job_worker.idle()
        status = await uploads.status(client, session)
        assert status["state"] == "cancelled"
        assert "validated" not in timeline(status)
        async with app.state.sessionmaker() as db:
            jobs = (await db.scalars(select(Job).where(Job.kind == FORWARD_JOB))).all()
            assert session.id not in {j.payload.get("upload_id") for j in jobs}
    assert not _archived(base) & {hashlib.sha256(d).digest() for d in contents}


async def test_a_file_complete_before_the_earlier_copy_of_its_instance_gives_way_to_it(
    base: ForwardingBase,
) -> None:
    data = instance()
    async with (
        running_app(base.settings(assemble_while_receiving=True)) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, [data, data], names=["a.dcm", "b.dcm"])
        # b.dcm arrives first and is validated early; a.dcm, earlier in the upload, then
        # holds the same instance: the earlier file keeps it, as without overlap.
        await send_file(client, session, 1)
        early = await status_once(client, session, lambda s: s["files"][1]["status"] == "valid")
        assert early["instance_count"] == 0
        await send_file(client, session, 0)
        status = await uploads.complete_and_wait(client, app, session)
        assert status["state"] in FINAL_STATES
        assert status["instance_count"] == 1
        assert [f["status"] for f in status["files"]] == ["valid", "invalid"]
        assert "duplicate SOP Instance UID" in status["files"][1]["problems"][0]["reason"]
        assert [i["file_id"] for i in status["instances"]] == [session.file_id(0)]
        delivered = await wait_for_state(app, client, session, FINAL_STATES)
        assert delivered["state"] == "delivered"


async def test_a_file_sent_as_one_chunk_is_kept_as_that_chunk_not_copied(
    base: ForwardingBase,
) -> None:
    single, multi = instance(), instance(rows=600, columns=600)  # one chunk; two chunks
    async with (
        running_app(base.settings(assemble_while_receiving=True)) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, [single, multi])
        await uploads.send_all(client, session)
        status = await uploads.complete_and_wait(client, app, session)
        assert status["state"] == "delivered", status
    root = base.data_dir / "chunks" / "uploads" / session.id
    kept = root / "chunks" / session.file_id(0) / "00000000"
    # The stored chunk is the instance (what reached the destination is its bytes) ...
    assert kept.read_bytes() == single
    assert not (root / "files" / session.file_id(0)).exists()
    # ... while a file of two chunks is assembled into one object and its chunks are freed.
    assert not (root / "chunks" / session.file_id(1)).exists()
    # One stored copy of each, whichever assembly run recorded it (the other's is discarded).
    stored = [p.read_bytes() for p in _objects_in(root)]
    assert sorted(stored) == sorted([single, multi])
    assert {hashlib.sha256(d).digest() for d in (single, multi)} <= _archived(base)


def _assemble_in_background(app: Any, store: Any, upload_id: str) -> asyncio.Task[Any]:
    """The assembly job of ``upload_id`` over ``store``, running until the test cancels it."""
    return asyncio.create_task(
        assemble_ready_files(
            app.state.sessionmaker,
            store,
            uuid.UUID(upload_id),
            limits=ZipLimits(max_total_bytes=1 << 30),
        )
    )


def _objects_in(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


class _StoreThatHangsAfterPut:
    """The app's chunk store, except that its ``hang_on``-th ``put_file`` stores the object and
    then never returns (a job cut short right there by a lost lease or a stopping worker)."""

    def __init__(self, inner: Any, hang_on: int) -> None:
        self._inner = inner
        self._puts = 0
        self._hang_on = hang_on
        self.hanging = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def put_file(self, key: str, path: Path) -> None:
        await self._inner.put_file(key, path)
        self._puts += 1
        if self._puts == self._hang_on:
            self.hanging.set()
            await asyncio.Event().wait()


async def test_an_early_round_cut_short_leaves_none_of_its_objects(base: ForwardingBase) -> None:
    # Two files of two chunks: each is assembled into an object of the early run's own.
    contents = [instance(rows=600, columns=600) for _ in range(2)]
    async with running_app(base.settings()) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, contents)
        await uploads.send_all(client, session)
        instances = base.data_dir / "chunks" / "uploads" / session.id / "instances"
        store = _StoreThatHangsAfterPut(app.state.resources.chunk_store, hang_on=2)
        job = _assemble_in_background(app, store, session.id)
        await asyncio.wait_for(store.hanging.wait(), 30)
        # Both objects exist: the first in the round's outcomes, the second still being stored.
        assert len(_objects_in(instances)) == 2
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert not _objects_in(instances)
        # Nothing was recorded: the files wait for the next job or for `complete`.
        status = await uploads.status(client, session)
        assert [f["status"] for f in status["files"]] == ["pending", "pending"]


class _StoreThatTellsAfterPut:
    """The app's chunk store, except that each ``put_file`` sets ``stored`` before returning:
    a test that cancels the job then reaches it in its clean-up right after the store."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.stored = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def put_file(self, key: str, path: Path) -> None:
        await self._inner.put_file(key, path)
        self.stored.set()


async def test_an_early_round_cancelled_just_after_storing_leaves_no_object(
    base: ForwardingBase,
) -> None:
    # The object was stored under the round's own key, and the job was cancelled while it
    # removed its temporary: the file's outcome never reached the round, which therefore did
    # not know to delete the object (an orphan until retention).
    content = instance(rows=600, columns=600)
    async with running_app(base.settings()) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, [content])
        await uploads.send_all(client, session)
        instances = base.data_dir / "chunks" / "uploads" / session.id / "instances"
        store = _StoreThatTellsAfterPut(app.state.resources.chunk_store)
        job = _assemble_in_background(app, store, session.id)
        await asyncio.wait_for(store.stored.wait(), 30)
        assert len(_objects_in(instances)) == 1
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert not _objects_in(instances)
        status = await uploads.status(client, session)
        assert [f["status"] for f in status["files"]] == ["pending"]


async def test_with_the_worker_inside_serve_files_wait_for_complete_by_default(
    base: ForwardingBase,
) -> None:
    # The embedded default (jobs inside `serve`): assembling while receiving measured slower.
    contents = _series(2)
    async with running_app(base.settings()) as app, new_client(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, contents)
        await uploads.send_all(client, session)
        await app.state.job_worker.idle()
        status = await uploads.status(client, session)
        assert [f["status"] for f in status["files"]] == ["pending", "pending"]
        async with app.state.sessionmaker() as db:
            jobs = (await db.scalars(select(Job).where(Job.kind == ASSEMBLE_READY_JOB))).all()
            assert session.id not in {j.payload.get("upload_id") for j in jobs}
        status = await uploads.complete_and_wait(client, app, session)
        assert status["state"] == "delivered", status


async def test_two_files_holding_one_instance_in_one_round_leave_the_choice_to_complete(
    base: ForwardingBase,
) -> None:
    # Early assembly off while the chunks arrive, then one early run takes both files in one
    # round: it records one copy and leaves the other file, whatever their order, to the final
    # job, which keeps the earlier file's copy.
    data = instance()
    async with (
        running_app(base.settings(assemble_while_receiving=False)) as app,
        new_client(app) as client,
    ):
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, [data, data], names=["a.dcm", "b.dcm"])
        await uploads.send_all(client, session)
        recorded = await assemble_ready_files(
            app.state.sessionmaker,
            app.state.resources.chunk_store,
            uuid.UUID(session.id),
            limits=ZipLimits(max_total_bytes=1 << 30),
        )
        assert recorded == 1
        early = await uploads.status(client, session)
        assert sorted(f["status"] for f in early["files"]) == ["pending", "valid"]
        status = await uploads.complete_and_wait(client, app, session)
        assert status["state"] == "delivered", status
        assert [f["status"] for f in status["files"]] == ["valid", "invalid"]
        assert [i["file_id"] for i in status["instances"]] == [session.file_id(0)]
