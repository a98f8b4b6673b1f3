"""Who may touch an upload: its upload token (X-Upload-Token), its owner, or an admin.

An unknown upload and another user's upload look the same (404), so ids cannot be probed.
A token that matches no upload is 401; a valid token used on a different upload is 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from relaypacs.auth.dependencies import OptionalUser
from relaypacs.db.base import utcnow
from relaypacs.db.session import SessionDep
from relaypacs.errors import Unauthorized
from relaypacs.resources import Resources
from relaypacs.uploads import repository
from relaypacs.uploads.exceptions import (
    InvalidUploadToken,
    UploadExpired,
    UploadNotFound,
    UploadTokenMismatch,
)
from relaypacs.uploads.models import Upload
from relaypacs.uploads.service import hash_token
from relaypacs.uploads.store import ChunkStore
from relaypacs.users.models import Role


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def get_chunk_store(request: Request) -> ChunkStore:
    return get_resources(request).chunk_store


def parse_id(value: str, error: type[Exception]) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise error() from exc


@dataclass(frozen=True)
class UploadAccess:
    upload: Upload
    #: The user acting: the signed-in user, or the owner when the upload token is used.
    actor_id: uuid.UUID
    via_token: bool


async def _upload_access(
    request: Request,
    session: SessionDep,
    upload_id: str,
    user: OptionalUser,
    x_upload_token: Annotated[
        str | None, Header(description="The upload token from POST /uploads")
    ] = None,
) -> UploadAccess:
    wanted = parse_id(upload_id, UploadNotFound)
    if x_upload_token:
        token_upload_id = await repository.get_upload_id_by_token_hash(
            session, hash_token(x_upload_token)
        )
        if token_upload_id is None:
            raise InvalidUploadToken()
        if token_upload_id != wanted:
            raise UploadTokenMismatch()
        upload = await repository.get_upload(session, wanted)
        assert upload is not None
        if upload.expires_at <= utcnow():
            raise UploadExpired("The upload token expired with its session")
        request.state.user_id = str(upload.owner_id)
        return UploadAccess(upload, upload.owner_id, via_token=True)
    if user is None:
        raise Unauthorized("Send X-Upload-Token or an access token (Authorization: Bearer)")
    upload = await repository.get_upload(session, wanted)
    if upload is None or (upload.owner_id != user.id and user.role is not Role.admin):
        raise UploadNotFound()
    return UploadAccess(upload, user.id, via_token=False)


UploadAccessDep = Annotated[UploadAccess, Depends(_upload_access)]
ChunkStoreDep = Annotated[ChunkStore, Depends(get_chunk_store)]
