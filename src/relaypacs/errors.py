"""The error catalogue and its RFC 7807 rendering.

Every error a client can see is a :class:`RelayError` subclass with a fixed HTTP status and a
stable machine-readable ``code``; clients branch on ``code``, never on ``title`` or ``detail``::

    RelayError
    ├── BadRequest (400)            ├── NotFound (404)       ├── Conflict (409)
    ├── Unauthorized (401)          ├── Gone (410)           ├── PayloadTooLarge (413)
    ├── Forbidden (403)             ├── TooManyRequests (429)└── ServiceUnavailable (503)

Framework errors (unknown route, wrong method, request validation, unhandled exceptions) are
rendered in the same shape by the handlers installed with :func:`install_error_handlers`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import structlog
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://relaypacs.org/problems/"

log = structlog.get_logger(__name__)


class Problem(BaseModel):
    """RFC 7807 problem details, plus a stable ``code``."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[PROBLEM_TYPE_BASE + "checksum_mismatch"])
    title: str
    status: int
    detail: str = Field(description="What went wrong with this request, for people")
    code: str = Field(description="Stable machine-readable error code")
    instance: str | None = None


class RelayError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        # The contract promises a detail on every problem: a class without one for this
        # occurrence repeats its title.
        self.detail = detail or self.title
        super().__init__(self.detail)
        self.headers = dict(headers or {})
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(RelayError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class InvalidHost(BadRequest):
    code = "invalid_host"
    title = "This server does not answer for that host name"


class CorsRefused(BadRequest):
    code = "cors_refused"
    title = "Cross-origin request not allowed"


class Unauthorized(RelayError):
    status = 401
    code = "not_authenticated"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **extra)


class Forbidden(RelayError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(RelayError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(RelayError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(RelayError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Gone(RelayError):
    status = 410
    code = "gone"
    title = "Gone"


class PayloadTooLarge(RelayError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class RequestTooLarge(PayloadTooLarge):
    """Any body but a chunk's is over ``RELAYPACS_MAX_JSON_BODY_BYTES`` (relaypacs.middleware)."""

    code = "request_too_large"
    title = "The request body is larger than the gateway accepts"


class UnsupportedMediaType(RelayError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class ValidationFailed(RelayError):
    status = 422
    code = "validation_error"
    title = "The request is not valid"


class TooManyRequests(RelayError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(
            detail or f"Try again in {retry_after} s",
            headers={"Retry-After": str(max(1, retry_after))},
            retry_after=max(1, retry_after),
        )


class ServiceUnavailable(RelayError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


def parse_id(value: str, error: type[RelayError]) -> uuid.UUID:
    """An id from a URL path; a malformed one raises ``error``, the resource's not-found error.

    An id that cannot exist is as unknown as one that does not (DESIGN: unknown → 404): a client
    handles one answer, and a mistyped link does not read as a malformed request.
    """
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise error() from exc


#: A path parameter holding an id. Taken as text, not ``uuid.UUID``, so that a malformed one
#: reaches :func:`parse_id` instead of request validation (422); documented as the UUID it is.
IdPath = Annotated[str, Path(json_schema_extra={"format": "uuid"})]


def problem_response(error: RelayError, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(
        error.to_problem(instance),
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def problem_responses(*errors: type[RelayError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route: each status with its possible codes."""
    by_status: dict[int, list[type[RelayError]]] = {}
    error: type[RelayError]
    for error in (*errors, ValidationFailed):
        by_status.setdefault(error.status, []).append(error)
    return {
        status: {
            "model": Problem,
            "description": "; ".join(f"`{e.code}`: {e.title}" for e in errs),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status, errs in sorted(by_status.items())
    }


_STATUS_ERRORS: dict[int, type[RelayError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


async def _relay_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RelayError)
    return problem_response(exc, request)


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_type = _STATUS_ERRORS.get(exc.status_code)
    if error_type is None or error_type is TooManyRequests:
        error: RelayError = RelayError()
        body = error.to_problem(request.url.path)
        body["status"] = exc.status_code
        return JSONResponse(body, exc.status_code, media_type=PROBLEM_MEDIA_TYPE)
    # Framework messages ("Not Found") carry nothing a client can use beyond the status.
    error = error_type(headers=exc.headers or {})
    return problem_response(error, request)


async def _validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    error = ValidationFailed(_summarise(errors), errors=errors)
    return problem_response(error, request)


def _summarise(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "The request is not valid"
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


async def _unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # The stack trace goes to the log only; the client gets a request id to quote.
    log.exception("unhandled_error", exc_info=exc)
    # Starlette answers a crash outside the request-id middleware, so the id is set here.
    request_id = getattr(request.state, "request_id", None)
    headers = {"X-Request-ID": request_id} if request_id else None
    return problem_response(RelayError("An unexpected error occurred", headers=headers), request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RelayError, _relay_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(Exception, _unhandled_error_handler)
