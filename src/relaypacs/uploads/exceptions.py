"""The uploads error catalogue (tusd-style: one class per outcome, each with a stable code)::

UploadNotFound, UploadFileNotFound, ChunkNotFound        404
InvalidUploadToken, UploadTokenRevoked                   401
UploadTokenMismatch, NotUploadOwner                      403
InvalidContentMD5, ChecksumMismatch, ChunkSizeMismatch   400
ChunkTooLarge, UploadTooLarge                            413
InvalidIdempotencyKey                                    400
IdempotencyKeyReused                                     422
IdempotencyKeyInFlight                                   409
ChunkConflict, UploadNotReceiving, UploadIncomplete,
UploadNotCancellable, DuplicateStudy                     409
UploadExpired                                            410
ChunkStoreUnavailable                                    503
"""

from __future__ import annotations

from typing import Any

from relaypacs.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)


class UploadNotFound(NotFound):
    code = "upload_not_found"
    title = "No such upload"


class UploadFileNotFound(NotFound):
    code = "upload_file_not_found"
    title = "No such file in this upload"


class ChunkNotFound(NotFound):
    code = "chunk_not_found"
    title = "No such chunk index for this file"


class InvalidUploadToken(Unauthorized):
    code = "invalid_upload_token"
    title = "The upload token is not valid"


class UploadTokenRevoked(Unauthorized):
    """The owner signed out everywhere, changed the password or was disabled since the token was
    issued. The upload itself goes on: the owner, signed in, continues with the access token or
    gets a new upload token (``POST /uploads/{id}/token``)."""

    code = "upload_token_revoked"
    title = "The upload token was revoked"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(
            detail
            or "The upload token ended when its owner signed out everywhere or the password "
            "changed; sign in again and continue with the access token, or get a new upload "
            "token with POST /api/v1/uploads/{upload_id}/token",
            **extra,
        )


class UploadTokenMismatch(Forbidden):
    code = "upload_token_mismatch"
    title = "The upload token belongs to another upload"


class NotUploadOwner(Forbidden):
    code = "not_upload_owner"
    title = "Only the user who started the upload may do this"


class InvalidContentMD5(BadRequest):
    code = "invalid_content_md5"
    title = "Content-MD5 must be the base64 of a 16-byte MD5 digest"


class ChecksumMismatch(BadRequest):
    code = "checksum_mismatch"
    title = "The body does not match its Content-MD5"


class ChunkSizeMismatch(BadRequest):
    code = "chunk_size_mismatch"
    title = "Every chunk but the last must be exactly the chunk size"


class ChunkTooLarge(PayloadTooLarge):
    code = "chunk_too_large"
    title = "The chunk is larger than the upload's chunk size"


class UploadTooLarge(PayloadTooLarge):
    code = "upload_too_large"
    title = "The upload is larger than the gateway accepts"


class ChunkConflict(Conflict):
    code = "chunk_conflict"
    title = "A different body is already stored for this chunk"


class UploadNotReceiving(Conflict):
    code = "upload_not_receiving"
    title = "The upload no longer accepts chunks"


class UploadIncomplete(Conflict):
    code = "upload_incomplete"
    title = "Some chunks are missing"


class UploadNotCancellable(Conflict):
    code = "upload_not_cancellable"
    title = "The upload can no longer be cancelled"


class DuplicateStudy(Conflict):
    code = "duplicate_study"
    title = "You uploaded this study recently"


class InvalidIdempotencyKey(BadRequest):
    code = "invalid_idempotency_key"
    title = "Idempotency-Key must be a UUID the client generated (e.g. a random UUID 4)"


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used for a different request; use a new key"


class IdempotencyKeyInFlight(Conflict):
    code = "idempotency_key_in_flight"
    title = "A request with this Idempotency-Key is still being processed; retry"


class UploadExpired(Gone):
    code = "upload_expired"
    title = "The upload session has expired"


class ChunkStoreUnavailable(ServiceUnavailable):
    code = "chunk_store_unavailable"
    title = "The chunk store is unavailable; retry later"


class IncompleteBody(BadRequest):
    code = "incomplete_body"
    title = "The connection closed before the whole body arrived; nothing was stored"
