"""The upload protocol: sessions, idempotent chunks, status, completion, cancel, expiry.

Services never commit: the router (request) or the task (job) does. The one exception to "one
transaction per request" is the chunk PUT, which the router drives in steps so that no database
transaction stays open while a slow client sends its body:

1. :func:`prepare_chunk` (upload read from the database) or :func:`plan_chunk` (a cached
   :class:`ChunkRoute`) — every check that needs no body: token, index, sizes, Content-MD5;
2. :func:`stage_chunk` — stream the body to a private temporary while hashing (no database);
3. :func:`record_chunks` — group commit: the chunks staged meanwhile by concurrent requests
   are recorded together (see :mod:`relaypacs.uploads.ingest`). One statement inserts their rows
   where the upload still receives; only an insert that wins moves its staged bytes to the
   chunk's final key; the batch commits once and each request answers 201. A losing insert
   compares MD5s: same → 200, different → 409. Two different bodies can therefore never
   overwrite each other's stored bytes, and nothing is counted twice (bytes received are summed
   from the rows).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import secrets
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.audit.service import record_audit
from relaypacs.auth.exceptions import AccountDisabled
from relaypacs.auth.tokens import seal_token, unseal_token
from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.errors import RelayError
from relaypacs.jobs.models import JobPriority
from relaypacs.jobs.registry import default_registry
from relaypacs.jobs.service import enqueue
from relaypacs.reports import service as reports_service
from relaypacs.uploads import repository, store
from relaypacs.uploads.exceptions import (
    ChecksumMismatch,
    ChunkConflict,
    ChunkNotFound,
    ChunkSizeMismatch,
    ChunkStoreUnavailable,
    ChunkTooLarge,
    DuplicateStudy,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InvalidContentMD5,
    InvalidUploadToken,
    UploadExpired,
    UploadIncomplete,
    UploadNotCancellable,
    UploadNotFound,
    UploadNotReceiving,
    UploadTokenRevoked,
    UploadTooLarge,
)
from relaypacs.uploads.models import (
    RECEIVING_STATES,
    Upload,
    UploadFile,
    UploadIdempotency,
    UploadState,
)
from relaypacs.uploads.overlap import enqueue_complete_files
from relaypacs.uploads.schemas import UploadCreate
from relaypacs.uploads.store import ChunkStore, StagedChunk, StoreUnavailable
from relaypacs.users.models import ServiceLevel, User

log = structlog.get_logger(__name__)

ASSEMBLE_JOB = "uploads.assemble"
EXPIRE_JOB = "uploads.expire"
#: The forwarding stage's job; enqueued when an upload becomes validated, if that stage exists.
FORWARD_JOB = "pacs.forward"
DUPLICATE_WINDOW = timedelta(days=30)
#: How long a POST /uploads Idempotency-Key answers with the upload it created.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Domain separation of the pad that seals an upload token under its Idempotency-Key.
_TOKEN_SEAL_CONTEXT = b"relaypacs upload token v1:"
#: Uploads in these states do not count as earlier copies of a study.
_NOT_DUPLICATES = frozenset({UploadState.cancelled, UploadState.expired, UploadState.rejected})
_ACTIVE_AFTER_COMPLETE = frozenset(
    {
        UploadState.assembling,
        UploadState.validated,
        UploadState.queued,
        UploadState.forwarding,
        UploadState.delivered,
        UploadState.partially_delivered,
        UploadState.rejected,
        UploadState.failed,
    }
)
_CANCELLABLE = frozenset(
    {UploadState.created, UploadState.receiving, UploadState.rejected, UploadState.failed}
)
PRIORITY_BY_SERVICE_LEVEL = {
    ServiceLevel.stat: JobPriority.stat,
    ServiceLevel.emergency: JobPriority.emergency,
    ServiceLevel.routine: JobPriority.routine,
}


def job_key(kind: str, upload_id: uuid.UUID) -> str:
    """The dedupe key of an upload's job of one kind: at most one is queued or running."""
    return f"{kind}:{upload_id}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_patient_name(name: str) -> str:
    """Case, accents' encoding, DICOM ``^`` separators and spacing do not make a new patient."""
    text = unicodedata.normalize("NFKC", name).casefold()
    for separator in "^,=":
        text = text.replace(separator, " ")
    return " ".join(text.split())


def duplicate_key(name: str, study_date: object, modality: str) -> str:
    # Hashed: the rule needs equality only, and this column need not be another copy of the name.
    material = f"{normalise_patient_name(name)}|{study_date}|{modality.upper()}"
    return hashlib.sha256(material.encode()).hexdigest()


def missing_ranges(count: int, received: Iterable[int]) -> list[tuple[int, int]]:
    """Indexes in ``range(count)`` not in ``received``, as inclusive (first, last) ranges."""
    have = set(received)
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for index in range(count):
        if index in have:
            if start is not None:
                ranges.append((start, index - 1))
                start = None
        elif start is None:
            start = index
    if start is not None:
        ranges.append((start, count - 1))
    return ranges


# --- start -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedUpload:
    upload: Upload
    files: list[UploadFile]
    token: str
    #: The answer to an earlier request with the same Idempotency-Key, given again.
    replayed: bool = False


def request_hash(data: UploadCreate) -> str:
    """SHA-256 of the request body as parsed, in canonical JSON (key order, spacing ignored)."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _token_seal_context(upload_id: uuid.UUID) -> bytes:
    return _TOKEN_SEAL_CONTEXT + upload_id.bytes


async def _claim_or_replay(
    session: AsyncSession,
    owner: User,
    idempotency_key: str,
    data: UploadCreate,
    now: datetime,
    request: Request | None,
) -> UploadIdempotency | CreatedUpload:
    """The upload an earlier request with this key created, or this request's claim on the key.

    Two requests with one key at the same moment: the second one's claim waits for the first
    transaction and fails once it commits; it then reads and answers the first one's upload.
    """
    key_hash = hash_token(idempotency_key)
    body_hash = request_hash(data)
    since = now - IDEMPOTENCY_WINDOW
    for _ in range(2):
        earlier = await repository.get_idempotency_key(session, owner.id, key_hash, since=since)
        if earlier is not None:
            return await _replay(session, earlier, idempotency_key, body_hash, request)
        await repository.delete_idempotency_keys_before(session, owner.id, since)
        claim = UploadIdempotency(
            owner_id=owner.id, key_hash=key_hash, request_hash=body_hash, created_at=now
        )
        if await repository.claim_idempotency_key(session, claim):
            return claim
    raise IdempotencyKeyInFlight()


async def _replay(
    session: AsyncSession,
    earlier: UploadIdempotency,
    idempotency_key: str,
    body_hash: str,
    request: Request | None,
) -> CreatedUpload:
    if earlier.request_hash != body_hash:
        raise IdempotencyKeyReused()
    if earlier.upload_id is None or earlier.token_sealed is None:
        raise IdempotencyKeyInFlight()
    upload = await repository.get_upload(session, earlier.upload_id)
    if upload is None:
        raise IdempotencyKeyInFlight()
    context = _token_seal_context(upload.id)
    token = unseal_token(earlier.token_sealed, key=idempotency_key, context=context)
    if (upload.token_revoked_at is not None or hash_token(token) != upload.token_hash) and (
        upload.expires_at > utcnow()
    ):
        # The token first given has ended since (its owner signed out everywhere, or a new
        # one was issued): the same upload is answered with a token that works, and a later
        # repeat gets that one.
        token = await issue_upload_token(
            session, upload, request=request, actor_id=earlier.owner_id
        )
        await repository.complete_idempotency_key(
            session, earlier, upload.id, seal_token(token, key=idempotency_key, context=context)
        )
    files = await repository.list_files(session, upload.id)
    log.info("upload_create_replayed", upload_id=str(upload.id))
    return CreatedUpload(upload, files, token, replayed=True)


async def create_upload(
    session: AsyncSession,
    *,
    owner: User,
    data: UploadCreate,
    settings: Settings,
    request: Request | None,
    idempotency_key: str | None = None,
) -> CreatedUpload:
    """Start an upload. With an ``idempotency_key`` (a UUID), a repeat of the same request by
    the same user within :data:`IDEMPOTENCY_WINDOW` gets the same upload (and upload token)
    back instead of a second upload or a ``duplicate_study``; another body is refused."""
    total = sum(f.size for f in data.files)
    if total > settings.max_upload_bytes:
        raise UploadTooLarge(
            f"The files add up to {total} bytes; the limit is {settings.max_upload_bytes}",
            max_upload_bytes=settings.max_upload_bytes,
        )
    now = utcnow()
    claim: UploadIdempotency | None = None
    if idempotency_key is not None:
        claimed = await _claim_or_replay(session, owner, idempotency_key, data, now, request)
        if isinstance(claimed, CreatedUpload):
            return claimed
        claim = claimed
    study = data.study
    chunk_size = data.chunk_size or owner.chunk_size
    key = duplicate_key(study.patient_name, study.study_date, study.modality)
    earlier = await repository.find_recent_duplicate(
        session,
        owner_id=owner.id,
        duplicate_key=key,
        since=now - DUPLICATE_WINDOW,
        ignore_states=_NOT_DUPLICATES,
        now=now,
    )
    if earlier is not None and not data.force_upload and owner.duplicate_warnings:
        raise DuplicateStudy(
            "You uploaded a study with the same patient name, study date and modality on "
            f"{earlier.created_at:%Y-%m-%d}; send force_upload=true to upload it again",
            duplicate_of=str(earlier.id),
            duplicate_created_at=earlier.created_at.isoformat(),
        )
    token = secrets.token_urlsafe(32)
    upload = Upload(
        id=uuid.uuid4(),
        owner_id=owner.id,
        state=UploadState.created,
        token_hash=hash_token(token),
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(hours=settings.upload_session_hours),
        patient_name=study.patient_name,
        patient_id=study.patient_id,
        study_date=study.study_date,
        modality=study.modality,
        service_level=study.service_level or owner.default_service_level,
        study_description=study.study_description,
        clinical_history=study.clinical_history,
        duplicate_key=key,
        forced=earlier is not None and data.force_upload,
        chunk_size=chunk_size,
        total_bytes=total,
        file_count=len(data.files),
        instance_count=0,
        warnings=[],
    )
    files = [
        UploadFile(
            id=uuid.uuid4(),
            upload_id=upload.id,
            position=position,
            name=f.name,
            size=f.size,
            chunk_count=math.ceil(f.size / chunk_size),
            problems=[],
        )
        for position, f in enumerate(data.files)
    ]
    await repository.add_upload(session, upload, files)
    await repository.add_event(session, upload.id, UploadState.created)
    await record_audit(
        session,
        "upload.created",
        request=request,
        actor_id=owner.id,
        target_type="upload",
        target_id=str(upload.id),
        details={"files": len(files), "bytes": total},
    )
    if upload.forced and earlier is not None:
        await record_audit(
            session,
            "upload.duplicate_forced",
            request=request,
            actor_id=owner.id,
            target_type="upload",
            target_id=str(upload.id),
            details={"duplicate_of": str(earlier.id)},
        )
    if claim is not None and idempotency_key is not None:
        sealed = seal_token(token, key=idempotency_key, context=_token_seal_context(upload.id))
        await repository.complete_idempotency_key(session, claim, upload.id, sealed)
    return CreatedUpload(upload, files, token)


# --- chunks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkTarget:
    upload_id: uuid.UUID
    file_id: uuid.UUID
    index: int
    chunk_size: int
    expected_size: int
    md5: bytes

    @property
    def key(self) -> str:
        return store.chunk_key(self.upload_id, self.file_id, self.index)


def parse_content_md5(value: str | None) -> bytes:
    if not value:
        raise InvalidContentMD5("The Content-MD5 header is required")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidContentMD5() from exc
    if len(digest) != 16:
        raise InvalidContentMD5()
    return digest


def ensure_receiving(upload: Upload, now: datetime) -> None:
    check_receiving(upload.state, upload.expires_at, now)


def check_expiry(state: UploadState, expires_at: datetime, now: datetime) -> None:
    if state is UploadState.expired or (state in RECEIVING_STATES and expires_at <= now):
        raise UploadExpired(f"The upload session expired at {expires_at.isoformat()}")


def check_receiving(state: UploadState, expires_at: datetime, now: datetime) -> None:
    check_expiry(state, expires_at, now)
    if state not in RECEIVING_STATES:
        raise UploadNotReceiving(f"The upload is {state.value}", state=state.value)


@dataclass(frozen=True)
class ChunkRoute:
    """What a chunk PUT needs to know about its upload and file: facts that never change.

    Being immutable, a route read once can be cached by the API process (keyed by the upload
    token that was checked against the database): later chunks of the same file then need no
    database round trip before their body is read. Whatever can change — the upload's state —
    is checked again by the single statement that inserts the chunk row.
    """

    upload_id: uuid.UUID
    owner_id: uuid.UUID
    expires_at: datetime
    chunk_size: int
    file_id: uuid.UUID
    file_size: int
    chunk_count: int

    @classmethod
    def of(cls, upload: Upload, upload_file: UploadFile) -> ChunkRoute:
        return cls(
            upload_id=upload.id,
            owner_id=upload.owner_id,
            expires_at=upload.expires_at,
            chunk_size=upload.chunk_size,
            file_id=upload_file.id,
            file_size=upload_file.size,
            chunk_count=upload_file.chunk_count,
        )


def plan_chunk(
    route: ChunkRoute,
    *,
    index: int,
    content_md5: str | None,
    content_length: int | None,
    now: datetime,
) -> ChunkTarget:
    """Every check that needs no body and no database; refuses oversize bodies before reading."""
    if route.expires_at <= now:
        raise UploadExpired(f"The upload session expired at {route.expires_at.isoformat()}")
    if index < 0 or index >= route.chunk_count:
        raise ChunkNotFound(
            f"This file has chunks 0 to {route.chunk_count - 1}", chunk_count=route.chunk_count
        )
    expected = (
        route.chunk_size
        if index < route.chunk_count - 1
        else route.file_size - route.chunk_size * (route.chunk_count - 1)
    )
    if content_length is not None and content_length > route.chunk_size:
        raise ChunkTooLarge(
            f"Chunks of this upload are at most {route.chunk_size} bytes",
            chunk_size=route.chunk_size,
        )
    if content_length is not None and content_length != expected:
        raise ChunkSizeMismatch(
            f"Chunk {index} must be {expected} bytes, not {content_length}",
            expected_size=expected,
        )
    md5 = parse_content_md5(content_md5)
    return ChunkTarget(route.upload_id, route.file_id, index, route.chunk_size, expected, md5)


def prepare_chunk(
    *,
    upload: Upload,
    upload_file: UploadFile,
    index: int,
    content_md5: str | None,
    content_length: int | None,
) -> ChunkTarget:
    """:func:`plan_chunk` for an upload just read from the database (its state checked too)."""
    now = utcnow()
    ensure_receiving(upload, now)
    return plan_chunk(
        ChunkRoute.of(upload, upload_file),
        index=index,
        content_md5=content_md5,
        content_length=content_length,
        now=now,
    )


async def stage_chunk(
    chunk_store: ChunkStore, target: ChunkTarget, body: AsyncIterator[bytes]
) -> StagedChunk:
    """Stream the body to a temporary and verify its size and MD5; nothing is kept on error."""
    try:
        staged = await chunk_store.stage(body, max_size=target.chunk_size)
    except store.ChunkTooLarge as exc:
        raise ChunkTooLarge(
            f"Chunks of this upload are at most {target.chunk_size} bytes",
            chunk_size=target.chunk_size,
        ) from exc
    except (StoreUnavailable, OSError) as exc:
        log.warning("chunk_stage_failed", upload_id=str(target.upload_id), error=type(exc).__name__)
        raise ChunkStoreUnavailable() from exc
    if staged.size != target.expected_size:
        await staged.discard()
        raise ChunkSizeMismatch(
            f"Chunk {target.index} must be {target.expected_size} bytes, not {staged.size}",
            expected_size=target.expected_size,
        )
    if staged.md5 != target.md5:
        await staged.discard()
        raise ChecksumMismatch(
            "The MD5 of the received bytes differs from Content-MD5; nothing was stored"
        )
    return staged


@dataclass(frozen=True)
class ChunkArrival:
    """A chunk whose body is staged and verified, waiting for its row (see :func:`record_chunks`).

    ``mark_receiving``: the upload may still be ``created`` (this process has not seen it
    receiving yet). ``token_hash``: the token is checked again when the row goes in, since it
    may have been revoked (or replaced) after the request checked it, or after this process
    remembered the route.
    """

    target: ChunkTarget
    staged: StagedChunk
    mark_receiving: bool
    #: The hash of the upload token the chunk came with; None for the owner's (or an admin's)
    #: access token, checked by the request itself.
    token_hash: str | None = None


#: What :func:`record_chunks` decided for one arrival: ``True`` stored (201), ``False`` the same
#: bytes were already stored (200), or the error to answer with.
ChunkOutcome = bool | RelayError


async def record_chunks(
    session: AsyncSession, chunk_store: ChunkStore, arrivals: Sequence[ChunkArrival]
) -> list[ChunkOutcome]:
    """Insert the rows of a batch of staged chunks; each winner's bytes are moved into place.

    One transaction for the whole batch (group commit): the uploads are read under a share
    lock, all rows go in with one statement, the winners' files are renamed into place with one
    directory fsync per directory, and the caller commits once; only then may it answer 2xx to
    any of them. A chunk that loses (already stored, also by an earlier arrival of the same
    batch) compares MD5s: same → ``False``, different → :class:`ChunkConflict`; an upload no
    longer receiving answers as :func:`ensure_receiving` does. Those per-chunk outcomes never
    disturb the rest of the batch. Anything else (database or store trouble) raises, and no
    outcome of this batch may be sent. The caller discards the staged temporaries afterwards.
    """
    now = utcnow()
    upload_ids = sorted({a.target.upload_id for a in arrivals})
    marks = _receiving_marks(arrivals)
    # Every upload row of the batch is locked by this one statement, in id order (PostgreSQL),
    # before any is updated: exclusively when the batch may move one to receiving, so that no
    # share lock is upgraded later and no row is locked out of id order (either would deadlock
    # with a concurrent batch, or with signing out everywhere: revoke_upload_tokens).
    states = await repository.lock_uploads_for_chunks(session, upload_ids, exclusive=bool(marks))
    for upload_id, token_hashes in sorted(marks.items()):
        if await repository.mark_receiving(session, upload_id, token_hashes):
            await repository.add_event(session, upload_id, UploadState.receiving)
            found = states.get(upload_id)
            if found is not None:
                states[upload_id] = found._replace(state=UploadState.receiving)
    outcomes: list[ChunkOutcome | None] = [None] * len(arrivals)
    rows: list[dict[str, object]] = []
    for n, arrival in enumerate(arrivals):
        target = arrival.target
        found = states.get(target.upload_id)
        try:
            if found is None:
                raise UploadNotFound()
            if not found.owner_active:
                # Disabling an account stops its upload tokens too, even a route cached by
                # an API process before the account was disabled.
                raise AccountDisabled()
            check_token(found, arrival.token_hash)
            check_receiving(found.state, found.expires_at, now)
        except RelayError as exc:
            outcomes[n] = exc
            continue
        rows.append(
            {
                "file_id": target.file_id,
                "chunk_index": target.index,
                "upload_id": target.upload_id,
                "size": arrival.staged.size,
                "md5": arrival.staged.md5.hex(),
                "created_at": now,
            }
        )
    # A chunk sent twice within one batch is one row: the first arrival claims it.
    unique = list({(r["file_id"], r["chunk_index"]): r for r in reversed(rows)}.values())
    inserted = await repository.insert_chunks(session, unique)
    winners: list[ChunkArrival] = []
    for n, arrival in enumerate(arrivals):
        if outcomes[n] is not None:
            continue
        target = arrival.target
        if (target.file_id, target.index) in inserted:
            inserted.discard((target.file_id, target.index))
            winners.append(arrival)
            outcomes[n] = True
            continue
        existing = await repository.get_chunk_md5(session, target.file_id, target.index)
        if existing == arrival.staged.md5.hex():
            outcomes[n] = False
        else:
            outcomes[n] = ChunkConflict(
                f"Chunk {target.index} is already stored with different bytes",
                stored_md5=base64.b64encode(bytes.fromhex(existing or "")).decode(),
            )
    if winners:
        # Files now complete are assembled while the rest arrives (the job is visible from the
        # commit on, when the bytes are in place).
        await enqueue_complete_files(session, [a.target.file_id for a in winners])
        try:
            await chunk_store.commit_many([(a.staged, a.target.key) for a in winners])
        except (StoreUnavailable, OSError) as exc:
            log.warning("chunk_commit_failed", chunks=len(winners), error=type(exc).__name__)
            raise ChunkStoreUnavailable() from exc
    return [outcome for outcome in outcomes if outcome is not None]


def _receiving_marks(arrivals: Sequence[ChunkArrival]) -> dict[uuid.UUID, set[str] | None]:
    """Uploads the batch may move to receiving, each with the upload tokens that must still be
    live for it (None: an access token asked, already checked)."""
    marks: dict[uuid.UUID, set[str] | None] = {}
    for arrival in arrivals:
        if not arrival.mark_receiving:
            continue
        upload_id = arrival.target.upload_id
        hashes = marks.setdefault(upload_id, set())
        if arrival.token_hash is None:
            marks[upload_id] = None
        elif hashes is not None:
            hashes.add(arrival.token_hash)
    return marks


def check_token(found: repository.LockedUpload, token_hash: str | None) -> None:
    """A chunk sent with an upload token is stored only while that token is the upload's live
    one: a token revoked (or replaced) after its route was checked, or cached, stores nothing."""
    if token_hash is None:
        return
    if token_hash != found.token_hash:
        raise InvalidUploadToken()
    if found.token_revoked:
        raise UploadTokenRevoked()


# --- upload tokens -----------------------------------------------------------------------------


async def end_upload_tokens(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> int:
    """Every upload token of the user's unexpired uploads stops working at once (the user signed
    out everywhere, changed the password, or was disabled). The uploads go on: their owner,
    signed in again, continues with the access token or a new upload token."""
    ended = await repository.revoke_upload_tokens(session, user_id, now)
    if ended:
        log.info("upload_tokens_revoked", user_id=str(user_id), count=ended)
    return ended


async def issue_upload_token(
    session: AsyncSession, upload: Upload, *, request: Request | None, actor_id: uuid.UUID
) -> str:
    """A new upload token for the upload, with the session's expiry; the previous one, revoked
    or not, opens nothing any more (one live token per upload)."""
    # Past its session a token opens nothing, whatever the upload's state.
    if upload.expires_at <= utcnow():
        raise UploadExpired(f"The upload session expired at {upload.expires_at.isoformat()}")
    token = secrets.token_urlsafe(32)
    await repository.replace_upload_token(session, upload.id, hash_token(token))
    await record_audit(
        session,
        "upload.token_issued",
        request=request,
        actor_id=actor_id,
        target_type="upload",
        target_id=str(upload.id),
    )
    return token


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadView:
    upload: Upload
    files: list[UploadFile]
    received: dict[uuid.UUID, list[int]]
    bytes_received: int


async def view_upload(session: AsyncSession, upload: Upload) -> UploadView:
    files = await repository.list_files(session, upload.id)
    received = await repository.received_chunk_indexes(session, upload.id)
    totals = await repository.bytes_received(session, [upload.id])
    return UploadView(upload, files, received, totals[upload.id])


def missing_by_file(view: UploadView) -> list[dict[str, object]]:
    missing: list[dict[str, object]] = []
    for f in view.files:
        ranges = missing_ranges(f.chunk_count, view.received.get(f.id, []))
        if ranges:
            missing.append({"file_id": str(f.id), "missing_chunks": ranges})
    return missing


# --- completion and cancel ---------------------------------------------------------------------


async def complete_upload(
    session: AsyncSession, upload_id: uuid.UUID, *, request: Request | None, actor_id: uuid.UUID
) -> Upload:
    """receiving → assembling with a durable assembly job; idempotent once accepted."""
    upload = await repository.get_upload(session, upload_id, lock="update")
    if upload is None:
        raise UploadNotFound()
    if upload.state in _ACTIVE_AFTER_COMPLETE:
        return upload
    ensure_receiving(upload, utcnow())
    view = await view_upload(session, upload)
    missing = missing_by_file(view)
    if missing:
        count = sum(
            last - first + 1
            for entry in missing
            for first, last in entry["missing_chunks"]  # type: ignore[attr-defined]
        )
        raise UploadIncomplete(f"{count} chunk(s) are missing", missing=missing)
    now = utcnow()
    upload.state = UploadState.assembling
    upload.completed_at = now
    upload.updated_at = now
    await repository.add_event(session, upload.id, UploadState.assembling)
    await enqueue(
        session,
        ASSEMBLE_JOB,
        {"upload_id": str(upload.id)},
        # Runs once, in the receiving → assembling transition made under the upload's row lock;
        # the key is how an admin's requeue finds this job again.
        priority=PRIORITY_BY_SERVICE_LEVEL[upload.service_level],
        dedupe_key=job_key(ASSEMBLE_JOB, upload.id),
    )
    await record_audit(
        session,
        "upload.completed",
        request=request,
        actor_id=actor_id,
        target_type="upload",
        target_id=str(upload.id),
    )
    return upload


async def cancel_upload(
    session: AsyncSession, upload_id: uuid.UUID, *, request: Request | None, actor_id: uuid.UUID
) -> Upload:
    upload = await repository.get_upload(session, upload_id, lock="update")
    if upload is None:
        raise UploadNotFound()
    if upload.state is UploadState.cancelled:
        return upload
    # A session past its expiry is expired even before the periodic job has marked it: cancel
    # answers as chunks and complete do, and leaves freeing it to that job.
    check_expiry(upload.state, upload.expires_at, utcnow())
    if upload.state not in _CANCELLABLE:
        raise UploadNotCancellable(f"The upload is {upload.state.value}", state=upload.state.value)
    detail = await _already_in_pacs(session, upload)
    upload.state = UploadState.cancelled
    upload.updated_at = utcnow()
    await repository.add_event(session, upload.id, UploadState.cancelled, detail)
    await record_audit(
        session,
        "upload.cancelled",
        request=request,
        actor_id=actor_id,
        target_type="upload",
        target_id=str(upload.id),
    )
    return upload


async def _already_in_pacs(session: AsyncSession, upload: Upload) -> str | None:
    """The timeline's word on instances that stay in the PACS when an upload ends unfinished
    (only early forwarding sends before ``complete``; the PACS keeps what it stored)."""
    if upload.state not in RECEIVING_STATES:
        return None
    stored = await repository.count_stored_in_pacs(session, upload.id)
    if not stored:
        return None
    log.warning("upload_ended_with_instances_in_pacs", upload_id=str(upload.id), count=stored)
    return f"{stored} instance(s) had already been stored in the PACS and remain there"


async def purge_stored_bytes(
    session: AsyncSession, chunk_store: ChunkStore, upload_id: uuid.UUID
) -> None:
    """Delete what a cancelled or expired upload stored; the caller commits ``purged_at``."""
    removed = await chunk_store.delete_prefix(store.upload_prefix(upload_id))
    await repository.mark_purged(session, upload_id)
    log.info("upload_purged", upload_id=str(upload_id), objects=removed)


async def expire_sessions(
    session: AsyncSession, now: datetime, limit: int = 500
) -> list[uuid.UUID]:
    """Unfinished sessions past ``expires_at`` → expired, and each uploader is told. Never
    touches uploads past receiving."""
    expired: list[uuid.UUID] = []
    for upload_id in await repository.expired_upload_ids(session, now, limit):
        upload = await repository.get_upload(session, upload_id, lock="update")
        if upload is None or upload.state not in RECEIVING_STATES or upload.expires_at > now:
            continue
        detail = await _already_in_pacs(session, upload)
        upload.state = UploadState.expired
        upload.updated_at = now
        await repository.add_event(session, upload.id, UploadState.expired, detail)
        # In the same transaction as the state change: a sweep that runs again finds the upload
        # expired already and skips it, so nobody is told twice.
        when = upload.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        reasons = [f"the upload session expired at {when} before all files were sent"]
        if detail is not None:
            reasons.append(detail)
        await reports_service.on_upload_failed(session, upload, reasons)
        expired.append(upload_id)
    return expired


async def forget_stale_idempotency_keys(session: AsyncSession, now: datetime) -> int:
    """Keys older than the window answer nothing any more: do not keep them (nor their tokens)."""
    return await repository.delete_stale_idempotency_keys(session, now - IDEMPOTENCY_WINDOW)


async def enqueue_forwarding(session: AsyncSession, upload: Upload) -> bool:
    """Hand a validated upload to the forwarding stage, when one is installed.

    The forwarding stage registers a handler for :data:`FORWARD_JOB` and takes the upload
    from ``validated`` onwards (``queued``, ``forwarding``, ...).
    """
    if FORWARD_JOB not in default_registry.handlers:
        return False
    await enqueue(
        session,
        FORWARD_JOB,
        {"upload_id": str(upload.id)},
        # Called once, in the assembling → validated transition under the row lock.
        priority=PRIORITY_BY_SERVICE_LEVEL[upload.service_level],
        dedupe_key=job_key(FORWARD_JOB, upload.id),
    )
    return True


def header_warnings(
    upload: Upload, headers: Sequence[tuple[str, str | None, object, object, object]]
) -> list[dict[str, object]]:
    """Compare each instance's header with the declared study; codes and counts, no values.

    ``headers``: (file name, entry name, patient name, modality, study date) per instance.
    """
    declared_name = normalise_patient_name(upload.patient_name)
    counts: dict[str, list[str]] = {}
    for file_name, entry, name, modality, study_date in headers:
        where = f"{file_name}:{entry}" if entry else file_name
        if isinstance(name, str) and normalise_patient_name(name) != declared_name:
            counts.setdefault("patient_name_mismatch", []).append(where)
        if (
            isinstance(modality, str)
            and modality
            and modality not in _NON_IMAGE_MODALITIES
            and modality != upload.modality
        ):
            counts.setdefault("modality_mismatch", []).append(where)
        if study_date is not None and study_date != upload.study_date:
            counts.setdefault("study_date_mismatch", []).append(where)
    messages = {
        "patient_name_mismatch": "The patient name in the DICOM header differs from the "
        "declared patient name",
        "modality_mismatch": "The modality in the DICOM header differs from the declared one",
        "study_date_mismatch": "The study date in the DICOM header differs from the declared one",
    }
    return [
        {"code": code, "message": messages[code], "instances": len(where), "files": where[:20]}
        for code, where in counts.items()
    ]


#: Objects that accompany images with their own modality code (reports, states, key images).
_NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "KO", "DOC", "REG", "SEG", "RWV", "PLAN"})
