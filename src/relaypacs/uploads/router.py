"""HTTP layer of the upload protocol: parses and checks requests, commits, answers."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from relaypacs.audit.service import record_audit
from relaypacs.auth.dependencies import AUTH_ERRORS, CurrentUser, OptionalUser
from relaypacs.auth.exceptions import AccountDisabled
from relaypacs.auth.revocation import register_delegated_credentials
from relaypacs.db.base import utcnow
from relaypacs.db.session import SessionDep
from relaypacs.errors import IdPath, TooManyRequests, Unauthorized, problem_responses
from relaypacs.operations import metrics
from relaypacs.uploads import repository, service
from relaypacs.uploads.dependencies import (
    CachedUpload,
    ChunkStoreDep,
    UploadAccessDep,
    UploadTokenHeader,
    database_turn,
    get_committer,
    get_resources,
    get_route_cache,
    parse_id,
    resolve_chunk_access,
)
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
    IncompleteBody,
    InvalidContentMD5,
    InvalidIdempotencyKey,
    InvalidUploadToken,
    NotUploadOwner,
    UploadExpired,
    UploadFileNotFound,
    UploadIncomplete,
    UploadNotCancellable,
    UploadNotFound,
    UploadNotReceiving,
    UploadTokenMismatch,
    UploadTokenRevoked,
    UploadTooLarge,
)
from relaypacs.uploads.models import UploadState
from relaypacs.uploads.schemas import (
    ChunkStored,
    CompletionAccepted,
    FileCreated,
    FileOut,
    FileProblem,
    InstanceOut,
    StudyOut,
    TimelineEvent,
    UploadCreate,
    UploadCreated,
    UploadPage,
    UploadStatus,
    UploadSummary,
    UploadTokenIssued,
)
from relaypacs.uploads.service import hash_token
from relaypacs.uploads.store import ChunkStore
from relaypacs.users.models import Role, ServiceLevel

router = APIRouter(prefix="/uploads", tags=["uploads"])
# An upload token acts for its owner: it ends with the owner's sign-ins (sign out everywhere, a
# new password, a disabled account), counted in that event's audit row.
register_delegated_credentials("upload_credentials_ended", service.end_upload_tokens)

_ACCESS_ERRORS = (
    Unauthorized,
    InvalidUploadToken,
    UploadTokenRevoked,
    AccountDisabled,
    UploadTokenMismatch,
    UploadNotFound,
)


def _parse_idempotency_key(value: str | None) -> str | None:
    """The key in canonical form (a UUID, any case): it also seals the upload token it answers
    with, so it must carry a UUID's entropy, not be a counter or a name."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError as exc:
        raise InvalidIdempotencyKey() from exc


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadCreated,
    summary="Start an upload: declare the study and its files",
    description="Send an `Idempotency-Key` header (a UUID the client generated, e.g. a random "
    "UUID 4, kept until the answer arrives) to make retries safe: a repeat of the same request "
    "by the same user within 24 h answers 201 with the same upload, files and upload token "
    "(and `Idempotent-Replayed: true`) instead of starting a second upload or answering "
    "`duplicate_study`; the same key with a different body is `idempotency_key_reused`.",
    responses={
        201: {
            "description": "Started (or, for a repeated Idempotency-Key, started before)",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this is the answer to an earlier request "
                    "with the same Idempotency-Key",
                    "schema": {"type": "string", "enum": ["true"]},
                },
                "Location": {"description": "The upload", "schema": {"type": "string"}},
            },
        },
        **problem_responses(
            Unauthorized,
            InvalidIdempotencyKey,
            DuplicateStudy,
            IdempotencyKeyInFlight,
            IdempotencyKeyReused,
            UploadTooLarge,
            TooManyRequests,
        ),
    },
)
async def start_upload(
    body: UploadCreate,
    request: Request,
    response: Response,
    user: CurrentUser,
    session: SessionDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="A UUID the client generated for this request; repeats are answered "
            "with the upload it created",
        ),
    ] = None,
) -> UploadCreated:
    key = _parse_idempotency_key(idempotency_key)
    resources = get_resources(request)
    await resources.rate_limiter.hit(
        resources.settings.upload_start_rate_limit, "upload_start", str(user.id)
    )
    async with database_turn(request, session):
        created = await service.create_upload(
            session,
            owner=user,
            data=body,
            settings=resources.settings,
            request=request,
            idempotency_key=key,
        )
        await session.commit()
    upload = created.upload
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        metrics.record_upload_started(upload.service_level.value)
    response.headers["Location"] = f"{request.url.path}/{upload.id}"
    return UploadCreated(
        upload_id=upload.id,
        upload_token=created.token,
        chunk_size=upload.chunk_size,
        expires_at=upload.expires_at,
        state=upload.state,
        files=[
            FileCreated(file_id=f.id, name=f.name, size=f.size, chunk_count=f.chunk_count)
            for f in created.files
        ],
    )


class _ChunkRoute(APIRoute):
    """The chunk PUT, the hot path of the gateway: most chunks skip FastAPI's machinery.

    A chunk that carries an upload token (and no bearer token) for a file whose route this
    process remembers needs no database read, no user and no dependency: it is served by
    :func:`_put_remembered_chunk` straight from the request. Every other chunk — the first of
    each file, a bearer token, anything to be told apart — goes through :func:`put_chunk` with
    its dependencies, which also documents the operation.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()

        async def handle(request: Request) -> Response:
            token = request.headers.get("x-upload-token")
            if token and "authorization" not in request.headers:
                params = request.path_params
                key = (hash_token(token), params["upload_id"])
                cached = get_route_cache(request).get(key)
                if cached is not None and (route := cached.routes.get(params["file_id"])):
                    return await _put_remembered_chunk(request, key, cached, route)
            return await full(request)

        return handle


async def _put_remembered_chunk(
    request: Request, key: tuple[str, str], cached: CachedUpload, route: service.ChunkRoute
) -> Response:
    resources = get_resources(request)
    request.state.user_id = str(route.owner_id)
    target = service.plan_chunk(
        route,
        index=_parse_index(request.path_params["index"]),
        content_md5=request.headers.get("content-md5"),
        content_length=_content_length(request),
        now=utcnow(),
    )
    await resources.rate_limiter.hit(
        resources.settings.chunk_rate_limit, "upload_chunk", str(route.owner_id)
    )
    return await _store_chunk(
        request, resources.chunk_store, target, cached.receiving, key[0], (key, cached)
    )


async def put_chunk(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    chunk_store: ChunkStoreDep,
    upload_id: IdPath,
    file_id: IdPath,
    index: str,
    x_upload_token: UploadTokenHeader = None,
    content_md5: Annotated[
        str | None, Header(alias="Content-MD5", description="base64 of the body's MD5")
    ] = None,
) -> Response:
    resources = get_resources(request)
    async with database_turn(request, session):
        access, upload_file = await resolve_chunk_access(
            request, session, upload_id, file_id, user, x_upload_token
        )
        upload = access.upload
        if access.actor_id != upload.owner_id:
            # An admin sees every upload, but the study's bytes come only from its owner's
            # client: what the PACS gets is exactly what the uploader sent (promise 5).
            raise NotUploadOwner("Only the user who started the upload sends its chunks")
        receiving = upload.state is UploadState.receiving
        await resources.rate_limiter.hit(
            resources.settings.chunk_rate_limit, "upload_chunk", str(upload.owner_id)
        )
        target = service.prepare_chunk(
            upload=upload,
            upload_file=upload_file,
            index=_parse_index(index),
            content_md5=content_md5,
            content_length=_content_length(request),
        )
        # Checked with this very token: every file of the upload can be remembered for it.
        remember = bool(x_upload_token and access.via_token)
        siblings = await repository.list_files(session, upload.id) if remember else []
        # No transaction may stay open while a slow client sends the body.
        await session.commit()
    remembered = None
    if remember and x_upload_token:
        key = (hash_token(x_upload_token), upload_id)
        cached = get_route_cache(request).put(
            key, [service.ChunkRoute.of(upload, f) for f in siblings], receiving=receiving
        )
        remembered = (key, cached)
    token_hash = hash_token(x_upload_token) if x_upload_token and access.via_token else None
    return await _store_chunk(request, chunk_store, target, receiving, token_hash, remembered)


#: What the group commit answers when the chunk's upload token is no longer the upload's.
_TOKEN_ENDED = (InvalidUploadToken, UploadTokenRevoked, AccountDisabled)


async def _store_chunk(
    request: Request,
    chunk_store: ChunkStore,
    target: service.ChunkTarget,
    receiving: bool,
    token_hash: str | None,
    remembered: tuple[tuple[str, str], CachedUpload] | None,
) -> Response:
    """``token_hash``: the upload token the chunk came with, checked again by the group commit
    (None: an access token). ``remembered``: the route cache's key and entry the chunk came
    through (or that were just put in)."""
    try:
        staged = await service.stage_chunk(chunk_store, target, request.stream())
    except ClientDisconnect as exc:
        raise IncompleteBody() from exc
    except ChecksumMismatch:
        metrics.record_checksum_failure()
        raise
    # Group commit: answered once the row is committed, together with concurrent chunks.
    try:
        created = await get_committer(request).record(
            service.ChunkArrival(
                target, staged, mark_receiving=not receiving, token_hash=token_hash
            )
        )
    except _TOKEN_ENDED:
        if remembered is not None:
            get_route_cache(request).forget(remembered[0])
        raise
    cached = remembered[1] if remembered is not None else None
    if cached is not None:
        cached.receiving = True  # the commit made sure of it
    if created:
        metrics.record_chunk_stored(target.expected_size)
    stored = {
        "upload_id": str(target.upload_id),
        "file_id": str(target.file_id),
        "index": target.index,
        "size": target.expected_size,
        "md5": base64.b64encode(target.md5).decode(),
    }
    return JSONResponse(
        stored, status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK
    )


router.add_api_route(
    "/{upload_id}/files/{file_id}/chunks/{index}",
    put_chunk,
    methods=["PUT"],
    route_class_override=_ChunkRoute,
    summary="Store one chunk (raw bytes, Content-MD5 required); idempotent",
    status_code=status.HTTP_201_CREATED,
    response_model=ChunkStored,
    responses={
        200: {"model": ChunkStored, "description": "The same bytes were already stored"},
        **problem_responses(
            *_ACCESS_ERRORS,
            NotUploadOwner,
            UploadFileNotFound,
            ChunkNotFound,
            InvalidContentMD5,
            ChecksumMismatch,
            ChunkSizeMismatch,
            IncompleteBody,
            ChunkTooLarge,
            ChunkConflict,
            UploadNotReceiving,
            UploadExpired,
            TooManyRequests,
            ChunkStoreUnavailable,
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)


@router.get(
    "/{upload_id}",
    response_model=UploadStatus,
    summary="State, progress, missing chunks, instances and timeline of one upload",
    responses=problem_responses(*_ACCESS_ERRORS, UploadExpired),
)
async def get_upload(
    request: Request, session: SessionDep, access: UploadAccessDep
) -> UploadStatus:
    view = await service.view_upload(session, access.upload)
    instances = await repository.list_instances(session, access.upload.id)
    events = await repository.list_events(session, access.upload.id)
    await record_audit(
        session,
        "upload.viewed",
        request=request,
        actor_id=access.actor_id,
        target_type="upload",
        target_id=str(access.upload.id),
    )
    await session.commit()
    upload = view.upload
    return UploadStatus(
        upload_id=upload.id,
        state=upload.state,
        study=StudyOut(
            patient_name=upload.patient_name,
            patient_id=upload.patient_id,
            study_date=upload.study_date,
            modality=upload.modality,
            service_level=upload.service_level,
            study_description=upload.study_description,
            clinical_history=upload.clinical_history,
        ),
        chunk_size=upload.chunk_size,
        bytes_received=view.bytes_received,
        bytes_total=upload.total_bytes,
        created_at=upload.created_at,
        expires_at=upload.expires_at,
        completed_at=upload.completed_at,
        forced=upload.forced,
        instance_count=upload.instance_count,
        warnings=upload.warnings,
        failure_reason=upload.failure_reason,
        files=[
            FileOut(
                file_id=f.id,
                name=f.name,
                size=f.size,
                chunk_count=f.chunk_count,
                chunks_received=len(view.received.get(f.id, [])),
                missing_chunks=service.missing_ranges(f.chunk_count, view.received.get(f.id, [])),
                status=f.status,
                sha256=f.sha256,
                problems=[FileProblem.model_validate(p) for p in f.problems],
            )
            for f in view.files
        ],
        instances=[
            InstanceOut(
                instance_id=i.id,
                file_id=i.file_id,
                entry_name=i.entry_name,
                sop_class_uid=i.sop_class_uid,
                sop_instance_uid=i.sop_instance_uid,
                study_instance_uid=i.study_instance_uid,
                series_instance_uid=i.series_instance_uid,
                transfer_syntax_uid=i.transfer_syntax_uid,
                modality=i.modality,
                size=i.size,
                sha256=i.sha256,
                forward_status=i.forward_status.value,
                forward_reason=i.forward_reason,
            )
            for i in instances
        ],
        timeline=[TimelineEvent(state=e.state, at=e.at, detail=e.detail) for e in events],
    )


@router.get(
    "",
    response_model=UploadPage,
    summary="Your uploads (admins: everyone's), newest first, filtered and paged",
    responses=problem_responses(Unauthorized),
)
async def list_uploads(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    state: Annotated[list[UploadState] | None, Query()] = None,
    modality: Annotated[str | None, Query(max_length=16)] = None,
    service_level: ServiceLevel | None = None,
    created_from: date | None = None,
    created_to: date | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> UploadPage:
    uploads, total = await repository.list_uploads(
        session,
        owner_id=None if user.role is Role.admin else user.id,
        states=state or (),
        modality=modality.upper() if modality else None,
        service_level=service_level.value if service_level else None,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        offset=offset,
    )
    received = await repository.bytes_received(session, [u.id for u in uploads])
    await record_audit(
        session,
        "upload.listed",
        request=request,
        actor_id=user.id,
        target_type="upload",
        # Which records were seen, so that "who saw this study" has an answer (promise 7).
        details={"count": len(uploads), "ids": [str(u.id) for u in uploads]},
    )
    await session.commit()
    return UploadPage(
        items=[
            UploadSummary(
                upload_id=u.id,
                state=u.state,
                patient_name=u.patient_name,
                study_date=u.study_date,
                modality=u.modality,
                service_level=u.service_level,
                study_description=u.study_description,
                file_count=u.file_count,
                instance_count=u.instance_count,
                bytes_total=u.total_bytes,
                bytes_received=received[u.id],
                created_at=u.created_at,
                expires_at=u.expires_at,
            )
            for u in uploads
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/{upload_id}/complete",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CompletionAccepted,
    summary="All chunks sent: assemble, validate and forward (as durable jobs); idempotent",
    responses=problem_responses(
        *_ACCESS_ERRORS, UploadIncomplete, UploadNotReceiving, UploadExpired
    ),
)
async def complete_upload(
    request: Request, session: SessionDep, access: UploadAccessDep
) -> CompletionAccepted:
    upload = await service.complete_upload(
        session, access.upload.id, request=request, actor_id=access.actor_id
    )
    await session.commit()
    return CompletionAccepted(upload_id=upload.id, state=upload.state)


@router.post(
    "/{upload_id}/token",
    response_model=UploadTokenIssued,
    summary="A new upload token for your own upload (access token only); the previous one ends",
    description="For a client whose upload token was revoked (`upload_token_revoked`: its owner "
    "signed out everywhere or changed the password) and that wants to go on sending chunks with "
    "an upload token rather than its access token. Only the user who started the upload may ask, "
    "with `Authorization: Bearer` (an upload token never opens this route). The session's expiry "
    "stays as it was; the previous token, revoked or not, opens nothing any more.",
    responses=problem_responses(*AUTH_ERRORS, UploadNotFound, NotUploadOwner, UploadExpired),
)
async def issue_upload_token(
    request: Request, session: SessionDep, user: CurrentUser, upload_id: IdPath
) -> UploadTokenIssued:
    async with database_turn(request, session):
        upload = await repository.get_upload(
            session, parse_id(upload_id, UploadNotFound), lock="update"
        )
        if upload is None or (upload.owner_id != user.id and user.role is not Role.admin):
            raise UploadNotFound()
        if upload.owner_id != user.id:
            # The token acts for its owner (its chunks are the owner's): an admin sees the upload
            # with their own access token instead.
            raise NotUploadOwner("Only the user who started the upload can get a token for it")
        token = await service.issue_upload_token(session, upload, request=request, actor_id=user.id)
        await session.commit()
    return UploadTokenIssued(upload_id=upload.id, upload_token=token, expires_at=upload.expires_at)


@router.delete(
    "/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Cancel an upload and free its chunks",
    responses=problem_responses(*_ACCESS_ERRORS, UploadNotCancellable, UploadExpired),
)
async def cancel_upload(
    request: Request, session: SessionDep, access: UploadAccessDep, chunk_store: ChunkStoreDep
) -> Response:
    was = access.upload.state
    upload = await service.cancel_upload(
        session, access.upload.id, request=request, actor_id=access.actor_id
    )
    await session.commit()
    if was is not UploadState.cancelled:
        metrics.record_upload_finished(UploadState.cancelled.value)
    if upload.purged_at is None:
        # After the commit: a chunk PUT racing with the cancel waits on the row lock, and once
        # the state is cancelled no new chunk can land. Should this fail, the expiry sweep
        # finishes the job (it purges cancelled uploads whose purged_at is still empty).
        await service.purge_stored_bytes(session, chunk_store, upload.id)
        await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _parse_index(value: str) -> int:
    # Not a FastAPI int: a negative, huge or malformed index is an unknown chunk (404).
    if not value.isdigit() or len(value) > 9:
        raise ChunkNotFound()
    return int(value)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise ChunkSizeMismatch("Content-Length is not a number")
    return int(value)
