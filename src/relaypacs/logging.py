"""JSON logs to stdout with a request id, user id and route on every line.

Patient data, tokens and passwords never go in a log line: events carry ids (upload id, user id),
never names, and :func:`_drop_secrets` removes any field whose name says it holds a secret, as a
second line of defence.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import sentry_sdk
import structlog

_SECRET_MARKERS = (
    "password",
    "token",
    "secret",
    "authorization",
    "cookie",
    "totp",
    "patient",
    "recovery",
)


#: Libraries whose DEBUG (or INFO) output quotes the data they carry; see :func:`configure_logging`.
_CHATTY_LIBRARIES = (
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
    "httpx",
    "httpcore",
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "multipart",
    "python_multipart",
    "hpack",
)


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if any(marker in key.lower() for marker in _SECRET_MARKERS):
            event[key] = "[redacted]"
    return event


# Stack frames only: local variables (request scopes with headers, parsed bodies) and exception
# messages (a driver's "duplicate key (patient_name)=(...)", a parser quoting a value) can both
# carry tokens or patient data.
_exception_to_dict = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def _redact_exception_values(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    _redact_chain(event.get("exception") or ())
    return event


def _redact_chain(chain: Any) -> None:
    # Every exception of the chain, the members of an exception group (nested chains) too, and
    # whatever text rides along with them: notes, and the source line of a syntax error.
    for exception in chain:
        if not isinstance(exception, dict):
            continue
        if exception.get("exc_value"):
            exception["exc_value"] = "[redacted]"
        if exception.get("exc_notes"):
            exception["exc_notes"] = ["[redacted]"] * len(exception["exc_notes"])
        if exception.get("syntax_error"):
            exception["syntax_error"] = "[redacted]"
        for member in exception.get("exceptions") or ():
            _redact_chain(member)


def _report_to_sentry(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Errors logged with a traceback (a failing job in the worker) also go to Sentry.

    Unhandled request errors are reported by Sentry's own integration; reporting the same
    exception object again is dropped by its de-duplication. Without a DSN this does nothing.
    """
    exc_info = event.get("exc_info")
    if not exc_info or event.get("level") not in ("error", "critical"):
        return event
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if isinstance(error, BaseException) and sentry_sdk.get_client().dsn:
        sentry_sdk.capture_exception(error)
    return event


def _print_to_current_stdout(*_: Any) -> structlog.PrintLogger:
    # sys.stdout as it is when the line is written, not when logging was configured: a stream
    # replaced since (a supervisor's redirect, a test harness's capture) and closed would make
    # every later log call raise, inside job handlers too, which then lost their outcome.
    return structlog.PrintLogger(sys.stdout)


class _CurrentStdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The standard library's lines, to sys.stdout as it is now (see above)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def configure_logging(level: str = "INFO") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        _drop_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            _report_to_sentry,
            _exception_to_dict,
            _redact_exception_values,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_print_to_current_stdout,
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (uvicorn, alembic) get the same JSON shape.
    handler = _CurrentStdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _exception_to_dict,
                _redact_exception_values,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Our middleware writes one line per request; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    # At DEBUG these libraries log SQL with its bound values, request URLs and headers, bodies:
    # patient names, clinical history, token hashes. Whatever level an operator asks for to
    # debug RelayPACS, they stay at WARNING.
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
