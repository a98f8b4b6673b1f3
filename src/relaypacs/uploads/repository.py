"""All SQL of the uploads domain (and of the DICOM instances an upload produced)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.db.base import utcnow
from relaypacs.dicom.models import DicomInstance, ForwardStatus
from relaypacs.jobs.models import UNFINISHED_STATES, Job, JobState
from relaypacs.uploads.models import (
    RECEIVING_STATES,
    FileStatus,
    Upload,
    UploadChunk,
    UploadEvent,
    UploadFile,
    UploadIdempotency,
    UploadState,
)
from relaypacs.users.models import ServiceLevel, User

Lock = Literal["share", "update"] | None


#: Bound on IN lists (SQLite allows 32766 parameters).
_IN_BATCH = 500


async def add_upload(session: AsyncSession, upload: Upload, files: Sequence[UploadFile]) -> None:
    session.add(upload)
    session.add_all(files)
    await session.flush()


async def get_idempotency_key(
    session: AsyncSession, owner_id: uuid.UUID, key_hash: str, *, since: datetime
) -> UploadIdempotency | None:
    """A key of this owner used since ``since``, as committed now (not as this session cached
    it: a concurrent request may have committed it a moment ago)."""
    statement = (
        select(UploadIdempotency)
        .where(
            UploadIdempotency.owner_id == owner_id,
            UploadIdempotency.key_hash == key_hash,
            UploadIdempotency.created_at >= since,
        )
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).first()


async def delete_idempotency_keys_before(
    session: AsyncSession, owner_id: uuid.UUID, before: datetime
) -> None:
    """Forget an owner's keys past the window: they answer nothing any more, and may be reused."""
    await session.execute(
        delete(UploadIdempotency)
        .where(UploadIdempotency.owner_id == owner_id, UploadIdempotency.created_at < before)
        .execution_options(synchronize_session=False)
    )


async def delete_stale_idempotency_keys(session: AsyncSession, before: datetime) -> int:
    """Forget every user's keys past the window (each sealed upload token goes with its key)."""
    result = await session.execute(
        delete(UploadIdempotency)
        .where(UploadIdempotency.created_at < before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def claim_idempotency_key(session: AsyncSession, claim: UploadIdempotency) -> bool:
    """Insert the key's row in a savepoint; False when the key is taken.

    PostgreSQL: the insert waits for a concurrent transaction holding the same key, and fails
    once that one commits (or succeeds if it rolled back). SQLite serialises the two anyway.
    """
    try:
        async with session.begin_nested():
            session.add(claim)
            await session.flush()
    except IntegrityError:
        return False
    return True


async def complete_idempotency_key(
    session: AsyncSession, claim: UploadIdempotency, upload_id: uuid.UUID, token_sealed: str
) -> None:
    claim.upload_id = upload_id
    claim.token_sealed = token_sealed
    await session.flush()


async def find_recent_duplicate(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    duplicate_key: str,
    since: datetime,
    ignore_states: frozenset[UploadState],
    now: datetime,
) -> Upload | None:
    """The owner's latest upload of the same study since ``since``, not in ``ignore_states``.

    A session still receiving past its expiry counts as expired, as every request to it
    answers: the sweep that marks it runs only every few minutes, and a client that found its
    session expired and starts the study again must not be told it duplicates that session.
    """
    statement = (
        select(Upload)
        .where(
            Upload.owner_id == owner_id,
            Upload.duplicate_key == duplicate_key,
            Upload.created_at >= since,
            Upload.state.not_in(ignore_states),
            ~and_(Upload.state.in_(RECEIVING_STATES), Upload.expires_at <= now),
        )
        .order_by(Upload.created_at.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).first()


async def get_upload(
    session: AsyncSession, upload_id: uuid.UUID, *, lock: Lock = None
) -> Upload | None:
    statement = select(Upload).where(Upload.id == upload_id)
    if lock == "share":
        # Chunk inserts share the row; cancel/complete take it exclusively (PostgreSQL only:
        # SQLite's BEGIN IMMEDIATE already serialises writers).
        statement = statement.with_for_update(read=True)
    elif lock == "update":
        statement = statement.with_for_update()
    if lock is not None:
        # A locked read must see the row as it is now, not as this session cached it.
        statement = statement.execution_options(populate_existing=True)
    return (await session.scalars(statement)).first()


class TokenHolder(NamedTuple):
    """What an upload token's lookup says about it."""

    upload_id: uuid.UUID
    owner_active: bool
    revoked: bool


async def get_upload_id_by_token_hash(session: AsyncSession, token_hash: str) -> TokenHolder | None:
    """The upload a token opens, whether its owner's account is active and whether the token
    was revoked."""
    statement = (
        select(Upload.id, User.is_active, Upload.token_revoked_at)
        .join(User, User.id == Upload.owner_id)
        .where(Upload.token_hash == token_hash)
    )
    row = (await session.execute(statement)).first()
    return TokenHolder(row[0], row[1], row[2] is not None) if row is not None else None


async def get_upload_and_file_by_token(
    session: AsyncSession, token_hash: str, upload_id: uuid.UUID, file_id: uuid.UUID
) -> tuple[Upload, UploadFile, bool] | None:
    """The chunk PUT's fast path: token, upload and file checked in one round trip (and
    whether the owner's account is active)."""
    statement = (
        select(Upload, UploadFile, User.is_active)
        .join(UploadFile, UploadFile.upload_id == Upload.id)
        .join(User, User.id == Upload.owner_id)
        .where(
            Upload.token_hash == token_hash,
            Upload.id == upload_id,
            UploadFile.id == file_id,
        )
    )
    row = (await session.execute(statement)).first()
    return (row[0], row[1], row[2]) if row is not None else None


async def get_file(
    session: AsyncSession, upload_id: uuid.UUID, file_id: uuid.UUID
) -> UploadFile | None:
    statement = select(UploadFile).where(
        UploadFile.id == file_id, UploadFile.upload_id == upload_id
    )
    return (await session.scalars(statement)).first()


async def get_files(
    session: AsyncSession, upload_id: uuid.UUID, file_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, UploadFile]:
    """The upload's files among ``file_ids``, by id (one statement)."""
    if not file_ids:
        return {}
    statement = select(UploadFile).where(
        UploadFile.upload_id == upload_id, UploadFile.id.in_(list(file_ids))
    )
    return {f.id: f for f in (await session.scalars(statement)).all()}


async def list_files(session: AsyncSession, upload_id: uuid.UUID) -> list[UploadFile]:
    statement = (
        select(UploadFile).where(UploadFile.upload_id == upload_id).order_by(UploadFile.position)
    )
    return list((await session.scalars(statement)).all())


async def mark_receiving(
    session: AsyncSession, upload_id: uuid.UUID, token_hashes: Collection[str] | None = None
) -> bool:
    """created → receiving, once; returns whether this call made the change.

    ``token_hashes``: only while one of these upload tokens is the upload's live one (the
    chunks asking came with them, and a chunk refused for its token changes nothing).
    """
    conditions = [Upload.id == upload_id, Upload.state == UploadState.created]
    if token_hashes is not None:
        conditions += [Upload.token_hash.in_(token_hashes), Upload.token_revoked_at.is_(None)]
    result = await session.execute(
        update(Upload)
        .where(*conditions)
        .values(state=UploadState.receiving, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


class LockedUpload(NamedTuple):
    """An upload as a batch of chunks finds it under its share lock."""

    state: UploadState
    expires_at: datetime
    owner_active: bool
    #: The hash of the upload's live token, and whether it was revoked.
    token_hash: str
    token_revoked: bool


async def lock_uploads_for_chunks(
    session: AsyncSession, upload_ids: Sequence[uuid.UUID], *, exclusive: bool = False
) -> dict[uuid.UUID, LockedUpload]:
    """State, expiry, whether the owner's account is active and the upload token's standing,
    of the uploads a batch of chunks belongs to, read under a share lock (on the upload rows
    only).

    PostgreSQL: ``FOR SHARE`` in id order (rows are locked as they come out of the sort), so
    batches of chunk inserts in several processes run side by side and never deadlock with each
    other, while cancel and complete (``FOR UPDATE``) wait until the batch has committed: what
    is read here stays true until then. SQLite: the transaction began IMMEDIATE and holds the
    one write lock, which serves the same purpose.

    ``exclusive``: ``FOR NO KEY UPDATE`` instead, for a batch that will update some of these
    rows (created → receiving): still in id order and in this one statement, so that no upload
    row is ever locked out of id order (signing out everywhere locks the owner's uploads in id
    order too: :func:`revoke_upload_tokens`), and no share lock is upgraded afterwards (two
    batches upgrading the same row would deadlock).
    """
    statement = (
        select(
            Upload.id,
            Upload.state,
            Upload.expires_at,
            User.is_active,
            Upload.token_hash,
            Upload.token_revoked_at,
        )
        .join(User, User.id == Upload.owner_id)
        .where(Upload.id.in_(upload_ids))
        .order_by(Upload.id)
        .with_for_update(read=not exclusive, key_share=exclusive, of=Upload)
    )
    rows = (await session.execute(statement)).all()
    return {
        upload_id: LockedUpload(state, expires, active, token_hash, revoked_at is not None)
        for upload_id, state, expires, active, token_hash, revoked_at in rows
    }


async def revoke_upload_tokens(session: AsyncSession, owner_id: uuid.UUID, now: datetime) -> int:
    """End the upload tokens of an owner's uploads whose session still runs; returns how many.

    A token of an upload past ``expires_at`` opens nothing any more: it is left as it is.
    ``updated_at`` is kept: it dates an upload's last change of state (its delivery, for
    retention), and a revoked token changes nothing of the upload itself.

    PostgreSQL: the rows are locked first, in id order like every batch of chunks (see
    :func:`lock_uploads_for_chunks`: each batch locks all its upload rows in one statement in
    id order, whatever it updates next), so a batch already holding an upload's lock commits
    first, every later batch sees the revocation, and neither side can deadlock the other.
    """
    locked = select(Upload.id).where(
        Upload.owner_id == owner_id,
        Upload.token_revoked_at.is_(None),
        Upload.expires_at > now,
    )
    ids = list((await session.scalars(locked.order_by(Upload.id).with_for_update())).all())
    if ids:
        await session.execute(
            update(Upload)
            .where(Upload.id.in_(ids))
            .values(token_revoked_at=now, updated_at=Upload.updated_at)
            .execution_options(synchronize_session=False)
        )
    return len(ids)


async def replace_upload_token(
    session: AsyncSession, upload_id: uuid.UUID, token_hash: str
) -> None:
    """Give the upload a new token: the previous one (revoked or not) opens nothing any more."""
    await session.execute(
        update(Upload)
        .where(Upload.id == upload_id)
        # updated_at kept, as in revoke_upload_tokens.
        .values(token_hash=token_hash, token_revoked_at=None, updated_at=Upload.updated_at)
        .execution_options(synchronize_session=False)
    )


async def insert_chunks(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> set[tuple[uuid.UUID, int]]:
    """Insert chunk rows in one statement; returns the (file_id, chunk_index) actually inserted.

    A row whose chunk is already stored is skipped (``ON CONFLICT DO NOTHING``), so a chunk is
    counted once whatever the retries. ``rows``: file_id, chunk_index, upload_id, size, md5,
    created_at. The caller has checked, under :func:`lock_uploads_for_chunks`, that their
    uploads still receive.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    statement = _INSERT_CHUNKS[dialect]
    # One statement for the whole batch (insertmanyvalues), compiled once per process: the
    # rows are parameters, not part of the statement, so SQLAlchemy's statement cache holds.
    connection = await session.connection()
    result = await connection.execute(statement, list(rows))
    return {(file_id, index) for file_id, index in result.all()}


_CHUNK_TABLE = UploadChunk.__table__
_INSERT_CHUNKS: dict[str, Any] = {
    module.__name__.rsplit(".", 1)[-1]: module.insert(_CHUNK_TABLE)
    .on_conflict_do_nothing()
    .returning(_CHUNK_TABLE.c.file_id, _CHUNK_TABLE.c.chunk_index)
    for module in (postgresql, sqlite)
}


async def get_chunk_md5(session: AsyncSession, file_id: uuid.UUID, index: int) -> str | None:
    statement = select(UploadChunk.md5).where(
        UploadChunk.file_id == file_id, UploadChunk.chunk_index == index
    )
    return (await session.scalars(statement)).first()


async def received_chunk_indexes(
    session: AsyncSession, upload_id: uuid.UUID
) -> dict[uuid.UUID, list[int]]:
    statement = (
        select(UploadChunk.file_id, UploadChunk.chunk_index)
        .where(UploadChunk.upload_id == upload_id)
        .order_by(UploadChunk.file_id, UploadChunk.chunk_index)
    )
    received: dict[uuid.UUID, list[int]] = {}
    for file_id, index in (await session.execute(statement)).all():
        received.setdefault(file_id, []).append(index)
    return received


async def chunk_count(session: AsyncSession, upload_id: uuid.UUID) -> int:
    statement = select(func.count()).where(UploadChunk.upload_id == upload_id)
    return int((await session.execute(statement)).scalar_one())


async def bytes_received(
    session: AsyncSession, upload_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Derived from the chunk rows, so a retried chunk can never be counted twice."""
    if not upload_ids:
        return {}
    statement = (
        select(UploadChunk.upload_id, func.coalesce(func.sum(UploadChunk.size), 0))
        .where(UploadChunk.upload_id.in_(upload_ids))
        .group_by(UploadChunk.upload_id)
    )
    totals = {upload_id: int(total) for upload_id, total in (await session.execute(statement))}
    return {upload_id: totals.get(upload_id, 0) for upload_id in upload_ids}


async def list_chunks(
    session: AsyncSession, upload_id: uuid.UUID, file_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[int, int, str]]]:
    """(index, size, MD5) of the stored chunks of each of ``file_ids``, in index order.

    One statement for all of them: a study of a thousand one-chunk files is one read, not a
    thousand.
    """
    chunks: dict[uuid.UUID, list[tuple[int, int, str]]] = {file_id: [] for file_id in file_ids}
    if not file_ids:
        return chunks
    statement = (
        select(UploadChunk.file_id, UploadChunk.chunk_index, UploadChunk.size, UploadChunk.md5)
        .where(UploadChunk.upload_id == upload_id, UploadChunk.file_id.in_(list(file_ids)))
        .order_by(UploadChunk.file_id, UploadChunk.chunk_index)
    )
    for file_id, index, size, md5 in (await session.execute(statement)).all():
        chunks[file_id].append((index, size, md5))
    return chunks


async def pending_file_ids(
    session: AsyncSession, upload_id: uuid.UUID, file_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``file_ids`` are still waiting to be assembled."""
    if not file_ids:
        return set()
    statement = select(UploadFile.id).where(
        UploadFile.upload_id == upload_id,
        UploadFile.id.in_(list(file_ids)),
        UploadFile.status == FileStatus.pending,
    )
    return set((await session.scalars(statement)).all())


async def delete_chunks(session: AsyncSession, upload_id: uuid.UUID) -> None:
    await session.execute(delete(UploadChunk).where(UploadChunk.upload_id == upload_id))


async def add_event(
    session: AsyncSession, upload_id: uuid.UUID, state: UploadState, detail: str | None = None
) -> None:
    session.add(UploadEvent(upload_id=upload_id, state=state, detail=detail, at=utcnow()))
    await session.flush()


async def latest_event(session: AsyncSession, upload_id: uuid.UUID) -> UploadEvent | None:
    statement = (
        select(UploadEvent)
        .where(UploadEvent.upload_id == upload_id)
        .order_by(UploadEvent.at.desc(), UploadEvent.id.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).first()


async def list_events(session: AsyncSession, upload_id: uuid.UUID) -> list[UploadEvent]:
    statement = (
        select(UploadEvent)
        .where(UploadEvent.upload_id == upload_id)
        .order_by(UploadEvent.at, UploadEvent.id)
    )
    return list((await session.scalars(statement)).all())


async def list_uploads(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID | None,
    states: Sequence[UploadState] = (),
    modality: str | None = None,
    service_level: str | None = None,
    created_from: date | None = None,
    created_to: date | None = None,
    limit: int,
    offset: int,
) -> tuple[list[Upload], int]:
    conditions: list[Any] = []
    if owner_id is not None:
        conditions.append(Upload.owner_id == owner_id)
    if states:
        conditions.append(Upload.state.in_(states))
    if modality:
        conditions.append(Upload.modality == modality)
    if service_level:
        conditions.append(Upload.service_level == service_level)
    if created_from:
        conditions.append(func.date(Upload.created_at) >= created_from)
    if created_to:
        conditions.append(func.date(Upload.created_at) <= created_to)
    where = and_(True, *conditions)
    total = int(
        (await session.execute(select(func.count()).select_from(Upload).where(where))).scalar_one()
    )
    statement = (
        select(Upload)
        .where(where)
        .order_by(Upload.created_at.desc(), Upload.id)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.scalars(statement)).all()), total


async def expired_upload_ids(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    """Unfinished sessions past their expiry (only these: never a study being processed)."""
    statement = (
        select(Upload.id)
        .where(
            Upload.state.in_((UploadState.created, UploadState.receiving)),
            Upload.expires_at <= now,
        )
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def unpurged_upload_ids(session: AsyncSession, limit: int) -> list[uuid.UUID]:
    """Cancelled or expired uploads whose stored bytes have not been deleted yet."""
    statement = (
        select(Upload.id)
        .where(
            Upload.state.in_((UploadState.cancelled, UploadState.expired)),
            Upload.purged_at.is_(None),
        )
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def mark_purged(session: AsyncSession, upload_id: uuid.UUID) -> None:
    await session.execute(
        update(Upload)
        .where(Upload.id == upload_id)
        .values(purged_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def add_instances(session: AsyncSession, instances: Sequence[DicomInstance]) -> None:
    session.add_all(instances)
    await session.flush()


async def delete_instances(session: AsyncSession, upload_id: uuid.UUID) -> None:
    await session.execute(delete(DicomInstance).where(DicomInstance.upload_id == upload_id))


async def list_instances(session: AsyncSession, upload_id: uuid.UUID) -> list[DicomInstance]:
    statement = (
        select(DicomInstance)
        .where(DicomInstance.upload_id == upload_id)
        .order_by(
            DicomInstance.series_instance_uid,
            DicomInstance.instance_number,
            DicomInstance.sop_instance_uid,
        )
    )
    return list((await session.scalars(statement)).all())


# --- assembly ahead of `complete` (see uploads.assembly and uploads.overlap) ---


async def files_with_all_chunks(
    session: AsyncSession, file_ids: Sequence[uuid.UUID]
) -> list[tuple[uuid.UUID, uuid.UUID, ServiceLevel]]:
    """Of these files, those whose chunks are all stored and that are not assembled yet:
    (upload id, file id, the upload's service level)."""
    if not file_ids:
        return []
    stored = (
        select(UploadChunk.file_id, func.count().label("stored"))
        .where(UploadChunk.file_id.in_(file_ids))
        .group_by(UploadChunk.file_id)
        .subquery()
    )
    statement = (
        select(UploadFile.upload_id, UploadFile.id, Upload.service_level)
        .join(stored, stored.c.file_id == UploadFile.id)
        .join(Upload, Upload.id == UploadFile.upload_id)
        .where(
            stored.c.stored == UploadFile.chunk_count,
            UploadFile.status == FileStatus.pending,
        )
    )
    return [(row[0], row[1], row[2]) for row in (await session.execute(statement)).all()]


async def existing_sop_instance_uids(
    session: AsyncSession, upload_id: uuid.UUID, uids: Sequence[str]
) -> set[str]:
    found: set[str] = set()
    unique = sorted(set(uids))
    # Bounded IN lists: a ZIP from a CD can hold thousands of instances.
    for start in range(0, len(unique), _IN_BATCH):
        statement = select(DicomInstance.sop_instance_uid).where(
            DicomInstance.upload_id == upload_id,
            DicomInstance.sop_instance_uid.in_(unique[start : start + _IN_BATCH]),
        )
        found.update((await session.scalars(statement)).all())
    return found


async def delete_instance(session: AsyncSession, instance: DicomInstance) -> None:
    await session.delete(instance)
    await session.flush()


async def count_instances(session: AsyncSession, upload_id: uuid.UUID) -> int:
    statement = select(func.count()).where(DicomInstance.upload_id == upload_id)
    return int((await session.execute(statement)).scalar_one())


async def count_stored_in_pacs(session: AsyncSession, upload_id: uuid.UUID) -> int:
    """Instances the PACS has acknowledged (early forwarding can do that before ``complete``)."""
    statement = select(func.count()).where(
        DicomInstance.upload_id == upload_id,
        DicomInstance.forward_status == ForwardStatus.stored,
    )
    return int((await session.execute(statement)).scalar_one())


async def count_file_instances(session: AsyncSession, file_id: uuid.UUID) -> int:
    statement = select(func.count()).where(DicomInstance.file_id == file_id)
    return int((await session.execute(statement)).scalar_one())


async def referenced_store_keys(
    session: AsyncSession, upload_id: uuid.UUID, keys: Sequence[str]
) -> set[str]:
    """Which of ``keys`` a recorded instance of the upload is stored under."""
    statement = select(DicomInstance.store_key).where(
        DicomInstance.upload_id == upload_id, DicomInstance.store_key.in_(list(keys))
    )
    return set((await session.scalars(statement)).all())


async def ready_files(
    session: AsyncSession, upload_id: uuid.UUID, *, exclude: Sequence[uuid.UUID], limit: int
) -> list[UploadFile]:
    """The upload's files not assembled yet whose chunks are all stored, in upload order."""
    stored = (
        select(UploadChunk.file_id, func.count().label("stored"))
        .where(UploadChunk.upload_id == upload_id)
        .group_by(UploadChunk.file_id)
        .subquery()
    )
    statement = (
        select(UploadFile)
        .join(stored, stored.c.file_id == UploadFile.id)
        .where(
            UploadFile.upload_id == upload_id,
            UploadFile.status == FileStatus.pending,
            stored.c.stored == UploadFile.chunk_count,
        )
        .order_by(UploadFile.position)
        .limit(limit)
    )
    if exclude:
        statement = statement.where(UploadFile.id.not_in(list(exclude)))
    return list((await session.scalars(statement)).all())


async def uploads_their_job_gave_up_on(
    session: AsyncSession,
    *,
    states: Collection[UploadState],
    job_key: Callable[[uuid.UUID], str],
    page: int = 500,
) -> list[tuple[uuid.UUID, str]]:
    """Uploads still in ``states`` whose job for that stage (found by ``job_key``) gave up for
    good (``dead``: its workers kept dying; or ``failed`` without failing the upload) and has
    no successor queued or running: (upload id, the job's last error).

    Every upload in ``states`` is looked at, ``page`` at a time: during a long PACS outage
    thousands wait with live jobs, and a stuck one among them must still be found.
    """
    found: list[tuple[uuid.UUID, str]] = []
    after: uuid.UUID | None = None
    while True:
        statement = (
            select(Upload.id).where(Upload.state.in_(states)).order_by(Upload.id).limit(page)
        )
        if after is not None:
            statement = statement.where(Upload.id > after)
        uploads = list((await session.scalars(statement)).all())
        if not uploads:
            return found
        found += await _jobs_gave_up(session, uploads, job_key)
        if len(uploads) < page:
            return found
        after = uploads[-1]


async def _jobs_gave_up(
    session: AsyncSession, uploads: Sequence[uuid.UUID], job_key: Callable[[uuid.UUID], str]
) -> list[tuple[uuid.UUID, str]]:
    by_key = {job_key(upload_id): upload_id for upload_id in uploads}
    statement = (
        select(Job.dedupe_key, Job.state, Job.last_error)
        .where(Job.dedupe_key.in_(list(by_key)))
        .order_by(Job.created_at)
    )
    latest: dict[str, tuple[JobState, str | None]] = {}
    unfinished: set[str] = set()
    for key, state, error in (await session.execute(statement)).all():
        if key is None:
            continue
        latest[key] = (JobState(state), error)
        if JobState(state) in UNFINISHED_STATES:
            unfinished.add(key)
    return [
        (by_key[key], error or f"its job is {state.value}")
        for key, (state, error) in latest.items()
        if key not in unfinished and state in (JobState.dead, JobState.failed)
    ]
