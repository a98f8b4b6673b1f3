"""Who may touch an upload: its upload token (X-Upload-Token), its owner, or an admin.

An unknown upload and another user's upload look the same (404), so ids cannot be probed.
A token that matches no upload is 401 (``invalid_upload_token``), and so is a token its owner's
sign-out everywhere or new password ended (``upload_token_revoked``); a valid token used on a
different upload is 403.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.auth.dependencies import OptionalUser
from relaypacs.auth.exceptions import AccountDisabled
from relaypacs.db.base import utcnow
from relaypacs.db.session import SessionDep
from relaypacs.errors import IdPath, Unauthorized
from relaypacs.errors import parse_id as parse_id  # the upload routes import it from here
from relaypacs.resources import Resources
from relaypacs.uploads import repository
from relaypacs.uploads.exceptions import (
    InvalidUploadToken,
    UploadExpired,
    UploadFileNotFound,
    UploadNotFound,
    UploadTokenMismatch,
    UploadTokenRevoked,
)
from relaypacs.uploads.ingest import ChunkCommitter
from relaypacs.uploads.models import Upload, UploadFile
from relaypacs.uploads.service import ChunkRoute, hash_token
from relaypacs.uploads.store import ChunkStore
from relaypacs.users.models import Role, User


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def get_chunk_store(request: Request) -> ChunkStore:
    return get_resources(request).chunk_store


@dataclass(frozen=True)
class UploadAccess:
    upload: Upload
    #: The user acting: the signed-in user, or the owner when the upload token is used.
    actor_id: uuid.UUID
    via_token: bool


async def resolve_access(
    request: Request,
    session: AsyncSession,
    upload_id: str,
    user: User | None,
    upload_token: str | None,
) -> UploadAccess:
    wanted = parse_id(upload_id, UploadNotFound)
    if upload_token:
        found = await repository.get_upload_id_by_token_hash(session, hash_token(upload_token))
        if found is None:
            raise InvalidUploadToken()
        if not found.owner_active:
            raise AccountDisabled("The upload token ended when its owner's account was disabled")
        if found.revoked:
            raise UploadTokenRevoked()
        if found.upload_id != wanted:
            raise UploadTokenMismatch()
        upload = await repository.get_upload(session, wanted)
        assert upload is not None
        return _token_access(request, upload)
    if user is None:
        raise Unauthorized("Send X-Upload-Token or an access token (Authorization: Bearer)")
    upload = await repository.get_upload(session, wanted)
    if upload is None or (upload.owner_id != user.id and user.role is not Role.admin):
        raise UploadNotFound()
    return UploadAccess(upload, user.id, via_token=False)


def _token_access(request: Request, upload: Upload) -> UploadAccess:
    if upload.expires_at <= utcnow():
        raise UploadExpired("The upload token expired with its session")
    request.state.user_id = str(upload.owner_id)
    return UploadAccess(upload, upload.owner_id, via_token=True)


async def resolve_chunk_access(
    request: Request,
    session: AsyncSession,
    upload_id: str,
    file_id: str,
    user: User | None,
    upload_token: str | None,
) -> tuple[UploadAccess, UploadFile]:
    """Like :func:`resolve_access` plus the file; one query on the common (token) path."""
    wanted = parse_id(upload_id, UploadNotFound)
    wanted_file = parse_id(file_id, UploadFileNotFound)
    if upload_token:
        row = await repository.get_upload_and_file_by_token(
            session, hash_token(upload_token), wanted, wanted_file
        )
        if row is not None and row[2] and row[0].token_revoked_at is None:
            return _token_access(request, row[0]), row[1]
    # Anything else (bearer token, a disabled owner, a revoked token, or an error to tell
    # apart) takes the general path.
    access = await resolve_access(request, session, upload_id, user, upload_token)
    upload_file = await repository.get_file(session, access.upload.id, wanted_file)
    if upload_file is None:
        raise UploadFileNotFound()
    return access, upload_file


UploadTokenHeader = Annotated[
    str | None,
    Header(alias="X-Upload-Token", description="The upload token from POST /uploads"),
]


async def _upload_access(
    request: Request,
    session: SessionDep,
    upload_id: IdPath,
    user: OptionalUser,
    x_upload_token: UploadTokenHeader = None,
) -> UploadAccess:
    return await resolve_access(request, session, upload_id, user, x_upload_token)


@dataclass
class CachedUpload:
    """The routes of every file of one upload, and whether it is known to be receiving."""

    routes: dict[str, ChunkRoute]  # by file id, as the URL spells it
    receiving: bool


class ChunkRouteCache:
    """Routes of recently used (upload token, upload) pairs, least recently used out.

    Only routes checked against the database with that very token are stored; see
    :class:`relaypacs.uploads.service.ChunkRoute` for why caching them is safe. All files of an
    upload are remembered at once: a CT study of a thousand one-chunk files would otherwise pay
    the database round trip on every file. ``capacity`` counts routes (files), not uploads, so
    memory stays bounded (tens of MB) even with many uploads of 10,000 files each.

    The token itself can end after its routes were remembered (revoked, replaced, its owner
    disabled): the group commit checks it again under the upload's share lock, so a remembered
    route never stores a chunk past that moment, in this process or any other.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], CachedUpload] = OrderedDict()
        self._routes = 0

    def get(self, key: tuple[str, str]) -> CachedUpload | None:
        """``key``: the upload token's hash and the upload id."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(
        self, key: tuple[str, str], routes: list[ChunkRoute], *, receiving: bool
    ) -> CachedUpload:
        replaced = self._entries.pop(key, None)
        if replaced is not None:
            self._routes -= len(replaced.routes)
        entry = self._entries[key] = CachedUpload({str(r.file_id): r for r in routes}, receiving)
        self._routes += len(routes)
        # The newest entry stays even alone over capacity: its upload is being sent right now.
        while self._routes > self.capacity and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._routes -= len(evicted.routes)
        return entry

    def forget(self, key: tuple[str, str]) -> None:
        """Drop an entry whose token the database refused: its next chunk is checked before its
        body is read, not after."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._routes -= len(entry.routes)

    def __len__(self) -> int:
        """How many routes (files) are remembered."""
        return self._routes


def get_route_cache(request: Request) -> ChunkRouteCache:
    cache: ChunkRouteCache | None = getattr(request.app.state, "uploads_route_cache", None)
    if cache is None:
        cache = request.app.state.uploads_route_cache = ChunkRouteCache()
    return cache


@asynccontextmanager
async def database_turn(request: Request, session: AsyncSession) -> AsyncIterator[None]:
    """Queue chunk transactions in-process on SQLite.

    SQLite has one writer; every transaction here begins IMMEDIATE. Concurrent requests would
    otherwise wait in SQLite's busy handler, which sleeps and polls (seconds of tail latency).
    An asyncio lock hands the turn over at once. PostgreSQL needs no turn.

    The request's own transaction so far (its dependencies' reads: the signed-in user) ends
    first: on SQLite it holds the write lock, and the chunk committer, which holds the turn
    while it waits for that lock, would wait for it until ``busy_timeout`` (30 s) and then fail
    its whole batch.
    """
    if session.in_transaction():
        await session.commit()
    async with _app_database_turn(request.app):
        yield


@asynccontextmanager
async def _app_database_turn(app: Any) -> AsyncIterator[None]:
    resources: Resources = app.state.resources
    if not resources.settings.is_sqlite:
        yield
        return
    lock: asyncio.Lock | None = getattr(app.state, "uploads_sqlite_turn", None)
    if lock is None:
        lock = app.state.uploads_sqlite_turn = asyncio.Lock()
    async with lock:
        yield


def get_committer(request: Request) -> ChunkCommitter:
    """The process's group committer of chunk rows (one per app)."""
    committer: ChunkCommitter | None = getattr(request.app.state, "uploads_committer", None)
    if committer is None:
        app = request.app
        resources = get_resources(request)
        committer = app.state.uploads_committer = ChunkCommitter(
            resources.sessionmaker, resources.chunk_store, lambda: _app_database_turn(app)
        )
    return committer


UploadAccessDep = Annotated[UploadAccess, Depends(_upload_access)]
ChunkStoreDep = Annotated[ChunkStore, Depends(get_chunk_store)]
