"""Error reporting to Sentry, when ``RELAYPACS_SENTRY_DSN`` is set, without personal data.

An event leaves the process with the exception's type and stack (function names, files, lines
and source lines of our code), the request's method, route path and request id, and the release.
It never carries what a request or a study contained: no request bodies, query strings, cookies or
headers beyond a short safe list, no local variables, no exception messages (a message can quote
an input value, e.g. a patient name in a validation error), no breadcrumb data. The request id
leads to the JSON log line of the same request, which carries ids only.
"""

from __future__ import annotations

from typing import Any, cast

import sentry_sdk
from sentry_sdk.types import Event, Hint

from relaypacs import __version__
from relaypacs.config import Settings

REDACTED = "[redacted]"
_SAFE_HEADERS = frozenset({"content-type", "content-length", "user-agent", "x-request-id"})
_SAFE_CONTEXTS = frozenset({"runtime", "os", "trace", "device", "app", "culture"})


def init_sentry(settings: Settings) -> bool:
    """Start reporting when a DSN is configured; returns whether it did."""
    if not settings.sentry_dsn:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        release=__version__,
        environment=settings.env.value,
        # The SDK's defaults send request bodies even without PII: collect nothing a request
        # carried. before_send below is the second line of defence.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "allowlist", "terms": sorted(_SAFE_HEADERS)}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        },
        max_request_body_size="never",
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        # Performance traces would carry URLs with upload ids and SQL; errors are what we need.
        traces_sample_rate=0.0,
    )
    return True


def scrub_event(sentry_event: Event, hint: Hint) -> Event:
    event = cast(dict[str, Any], sentry_event)
    request = event.get("request")
    if isinstance(request, dict):
        headers = request.get("headers") or {}
        event["request"] = {
            "method": request.get("method"),
            "url": str(request.get("url", "")).split("?", 1)[0],
            "headers": {
                name: value for name, value in headers.items() if name.lower() in _SAFE_HEADERS
            },
        }
        request_id = next(
            (v for k, v in headers.items() if k.lower() == "x-request-id"),
            None,
        )
        if request_id:
            event.setdefault("tags", {})["request_id"] = request_id
    user = event.get("user")
    if isinstance(user, dict):
        event["user"] = {"id": user["id"]} if "id" in user else {}
    for exception in (event.get("exception") or {}).get("values") or []:
        if exception.get("value"):
            exception["value"] = REDACTED
        for frame in (exception.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    for thread in (event.get("threads") or {}).get("values") or []:
        for frame in (thread.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    if "logentry" in event:
        event["logentry"] = {"message": REDACTED}
    if "message" in event:
        event["message"] = REDACTED
    event.pop("extra", None)
    breadcrumbs = event.get("breadcrumbs")
    if isinstance(breadcrumbs, dict):
        breadcrumbs["values"] = [scrub_breadcrumb(b, {}) for b in breadcrumbs.get("values", [])]
    elif isinstance(breadcrumbs, list):
        event["breadcrumbs"] = [scrub_breadcrumb(b, {}) for b in breadcrumbs]
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        event["contexts"] = {k: v for k, v in contexts.items() if k in _SAFE_CONTEXTS}
    return sentry_event


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    # Breadcrumbs record outgoing HTTP calls (URLs with study UIDs) and log messages.
    return {key: crumb[key] for key in ("type", "category", "level", "timestamp") if key in crumb}
