"""A DICOMweb origin server (Orthanc, dcm4chee-arc, any PS3.18 store) over httpx.

STOW-RS (PS3.18 10.5) streams each batch as one ``multipart/related`` request with an exact
``Content-Length``; the Store Instances Response Module (Annex I) is read per instance:
ReferencedSOPSequence (0008,1199) lists what was stored, with an optional WarningReason
(0008,1196); FailedSOPSequence (0008,1198) lists what was not, each with its FailureReason
(0008,1197), classified by :mod:`relaypacs.pacs.status`. QIDO-RS (PS3.18 10.6) counts what
the destination holds of a study.

HTTP statuses: 200 all stored; 202 some stored (the body says which); 400 / 409 / other 4xx
with a Store Instances response: the listed failures, and every unlisted instance refused;
401 / 403 / 404 / 415 / 3xx the destination is misconfigured (retried, never blamed on an
instance); 408 / 429 / 5xx, timeouts and refused connections: the destination is unavailable
(retried).

Only an answer the gateway read whole can refuse an instance. Every transport failure — connect,
write, read, a reset or a close mid-response, a timeout, a body that cannot be decoded — and
every answer that cannot be taken as a verdict on the instances is the destination's failure
(transient): an answer that arrived before the request body was sent whole (Orthanc answers 400
when its own read of the body fails, e.g. under packet loss, and the client then reads that
answer), a 4xx without a readable Store Instances response, and a body announced as JSON (or
delimited only by the connection's close) that does not parse.

The exception is the gateway's own disk: an ``OSError`` reading an instance while the body
streams (a file gone, EMFILE) is raised as it is, not as the destination's failure, so that the
circuit breaker and the reachability gauge never count it against the PACS.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from relaypacs.pacs.destination import InstanceOutcome, InstanceResult, StowInstance, StowResult
from relaypacs.pacs.destinations.multipart import MultipartBody
from relaypacs.pacs.exceptions import (
    BatchTooLarge,
    DestinationError,
    DestinationMisconfigured,
    DestinationUnavailable,
)
from relaypacs.pacs.status import StatusCategory, parse_status_code, store_status

DICOM_JSON = "application/dicom+json"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
SOP_INSTANCE_UID = "00080018"
QIDO_PAGE = 1000
KINDS = ("orthanc", "dcm4chee", "generic")


def dicomweb_root(url: str, kind: str, *, aet: str | None = None) -> str:
    """The DICOMweb root for a configured URL.

    ``orthanc``: the server URL, ``/dicom-web`` added unless present. ``dcm4chee``: either the
    full ``…/dcm4chee-arc/aets/{AET}/rs`` or the server URL plus the AE title.
    ``generic``: the URL as given.
    """
    root = url.rstrip("/")
    if kind == "orthanc":
        return root if root.endswith("/dicom-web") else f"{root}/dicom-web"
    if kind == "dcm4chee":
        if "/dcm4chee-arc/aets/" in root:
            return root
        return f"{root}/dcm4chee-arc/aets/{aet or 'DCM4CHEE'}/rs"
    if kind == "generic":
        return root
    raise ValueError(f"unknown DICOMweb destination kind {kind!r}; expected one of {KINDS}")


class DicomWebDestination:
    def __init__(
        self,
        name: str,
        root: str,
        *,
        kind: str = "generic",
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: httpx.Timeout | None = None,
        verify: bool | str = True,
        max_connections: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._name = name
        self._kind = kind
        self.root = root.rstrip("/")
        auth: httpx.Auth | None = None
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif username is not None:
            auth = httpx.BasicAuth(username, password or "")
        self._client = httpx.AsyncClient(
            auth=auth,
            headers=headers,
            timeout=timeout or httpx.Timeout(300.0, connect=10.0, pool=60.0),
            verify=verify,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=4),
            transport=transport,
            follow_redirects=False,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return self._kind

    async def store_instances(self, instances: Sequence[StowInstance]) -> StowResult:
        if not instances:
            return StowResult()
        body = MultipartBody(instances)
        reads = _LocalReads(body)
        headers = {
            "Content-Type": body.content_type,
            "Content-Length": str(body.length),
            "Accept": DICOM_JSON,
        }
        try:
            response = await self._client.post(
                f"{self.root}/studies", content=reads.stream(), headers=headers
            )
        except httpx.TimeoutException as exc:
            raise DestinationUnavailable(f"STOW-RS timed out ({type(exc).__name__})") from exc
        except (httpx.HTTPError, OSError) as exc:
            if reads.error is not None:
                # Our own disk failed (a missing file, EMFILE), and whatever the aborted request
                # then raised follows from it: the PACS is not to blame, so the circuit breaker
                # and the reachability gauge must not hear of it. The forwarding's chunk store
                # guard turns it into a failure of this batch, for now.
                raise reads.error from None
            # Transport, protocol and decoding errors alike: nothing was read whole.
            raise DestinationUnavailable(f"STOW-RS failed ({type(exc).__name__})") from exc
        return interpret_stow_response(
            response.status_code,
            response.content,
            response.headers,
            instances,
            request_sent_whole=body.sent_whole,
        )

    async def count_instances(self, study_instance_uid: str) -> int:
        return len(await self.find_instance_uids(study_instance_uid))

    async def find_instance_uids(self, study_instance_uid: str) -> set[str]:
        """SOP Instance UIDs of the study held by the destination (QIDO-RS, paged)."""
        found: set[str] = set()
        offset = 0
        while True:
            params = {
                "includefield": SOP_INSTANCE_UID,
                "limit": str(QIDO_PAGE),
                "offset": str(offset),
            }
            page = await self._qido(f"/studies/{study_instance_uid}/instances", params)
            before = len(found)
            for item in page:
                value = _first_value(item, SOP_INSTANCE_UID)
                if isinstance(value, str):
                    found.add(value)
            # A page shorter than asked for may be the server's own cap (dcm4chee-arc's
            # dcmQidoMaxNumberOfResults), not the end: only an empty page ends the search, or
            # one with nothing new (a server that ignores the offset would repeat itself).
            if not page or len(found) == before:
                return found
            offset += len(page)

    async def ping(self) -> None:
        await self._qido("/studies", {"limit": "1"})

    # --- what the reports domain reads back (QIDO-RS search, WADO-RS retrieve) ---

    async def search_series(
        self, study_instance_uid: str, *, include: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The study's series as DICOM JSON (QIDO-RS); [] for an unknown study."""
        return await self._qido(
            f"/studies/{study_instance_uid}/series",
            {"includefield": list(include)},
            missing_is_empty=True,
        )

    async def search_instances(
        self, study_instance_uid: str, series_instance_uid: str, *, include: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """One series' instances as DICOM JSON (QIDO-RS); [] for an unknown series."""
        return await self._qido(
            f"/studies/{study_instance_uid}/series/{series_instance_uid}/instances",
            {"includefield": list(include)},
            missing_is_empty=True,
        )

    async def retrieve_instance(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> bytes:
        """One instance's Part 10 bytes (WADO-RS, PS3.18 10.4). Meant for small objects
        (reports): the answer is read into memory."""
        url = (
            f"{self.root}/studies/{study_instance_uid}/series/{series_instance_uid}"
            f"/instances/{sop_instance_uid}"
        )
        headers = {"Accept": 'multipart/related; type="application/dicom"'}
        try:
            response = await self._client.get(url, headers=headers, timeout=60)
        except httpx.TimeoutException as exc:
            raise DestinationUnavailable(f"WADO-RS timed out ({type(exc).__name__})") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise DestinationUnavailable(f"WADO-RS failed ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise _destination_error(response.status_code, response.headers, "WADO-RS")
        parts = multipart_parts(response.headers.get("content-type", ""), response.content)
        if not parts:
            raise DestinationUnavailable("WADO-RS answered without a DICOM part")
        return parts[0]

    async def close(self) -> None:
        await self._client.aclose()

    async def _qido(
        self,
        path: str,
        params: Mapping[str, str | list[str]],
        *,
        missing_is_empty: bool = False,
    ) -> list[dict[str, Any]]:
        try:
            response = await self._client.get(
                f"{self.root}{path}", params=params, headers={"Accept": DICOM_JSON}, timeout=30
            )
        except httpx.TimeoutException as exc:
            raise DestinationUnavailable(f"QIDO-RS timed out ({type(exc).__name__})") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise DestinationUnavailable(f"QIDO-RS failed ({type(exc).__name__})") from exc
        status = response.status_code
        if status == 204 or (status == 404 and (missing_is_empty or "/instances" in path)):
            return []  # no match (some servers answer an unknown study with 404)
        if status != 200:
            raise _destination_error(status, response.headers, "QIDO-RS")
        try:
            items = json.loads(response.content or b"[]")
        except ValueError as exc:
            raise DestinationUnavailable("QIDO-RS answered with invalid JSON") from exc
        if not isinstance(items, list):
            raise DestinationUnavailable("QIDO-RS answered with something other than a list")
        return [item for item in items if isinstance(item, dict)]


def interpret_stow_response(
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    instances: Sequence[StowInstance],
    *,
    request_sent_whole: bool = True,
) -> StowResult:
    """Per-instance outcomes of one STOW-RS response (see the module docstring for the rules).

    ``request_sent_whole``: whether the HTTP client had sent the whole request body when the
    answer came; if not, the answer is no verdict on the instances.
    """
    if status == 413:
        raise BatchTooLarge(f"HTTP {status}")
    if status in (408, 429) or status >= 500 or status < 200 or 300 <= status < 400:
        raise _destination_error(status, headers, "STOW-RS")
    if status in (401, 403, 404, 405, 415):
        raise _destination_error(status, headers, "STOW-RS")
    if not request_sent_whole:
        raise DestinationUnavailable(
            f"STOW-RS answered HTTP {status} before the request was sent whole",
            retry_after=_retry_after(headers),
        )

    document = _store_instances_response(content, headers)
    if document is _UNREADABLE:
        raise DestinationUnavailable(f"STOW-RS answered HTTP {status} with an unreadable body")
    if status != 200 and status != 202 and document is None:
        # A refusal must name what it refuses: an error page or an empty body does not.
        raise DestinationUnavailable(
            f"STOW-RS answered HTTP {status} without a Store Instances response",
            retry_after=_retry_after(headers),
        )
    listed = _per_instance_statuses(document if isinstance(document, dict) else None)
    results: list[InstanceResult] = []
    for instance in instances:
        uid = instance.sop_instance_uid
        if uid in listed:
            results.append(listed[uid])
        elif status == 200:
            results.append(InstanceResult(uid, InstanceOutcome.stored))
        elif status == 202:
            # Stored or not, the response does not say: send it again (idempotent).
            reason = "not listed in the STOW-RS response (HTTP 202)"
            results.append(InstanceResult(uid, InstanceOutcome.failed, reason=reason))
        else:
            reason = f"refused by the destination (HTTP {status})"
            results.append(InstanceResult(uid, InstanceOutcome.refused, reason=reason))
    return StowResult(instances=results, retry_after=_retry_after(headers))


class _LocalReads:
    """A STOW-RS request body that remembers the ``OSError`` of reading the gateway's own
    instances: once raised inside the HTTP client, it looks like any socket error."""

    def __init__(self, body: MultipartBody) -> None:
        self._body = body
        self.error: OSError | None = None

    async def stream(self) -> AsyncIterator[bytes]:
        # An async generator, as the body's own stream is: httpx then refuses to send it twice.
        try:
            async for piece in self._body.stream():
                yield piece
        except OSError as exc:
            # The body does no I/O of its own but reading the instances: this one is local.
            self.error = exc
            raise


_UNREADABLE = object()


def _store_instances_response(content: bytes, headers: Mapping[str, str]) -> object:
    """The response's DICOM JSON data set; None when there is none to read (an empty body, or
    a whole body of another type such as an HTML page); :data:`_UNREADABLE` when the body
    cannot be trusted: announced as JSON and not parsing, or not parsing while only the closed
    connection delimited it (it may have been cut off))."""
    if not content.strip():
        return None
    content_type = headers.get("content-type", "").lower()
    framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
    try:
        document = json.loads(content)
    except ValueError:
        return _UNREADABLE if "json" in content_type or not framed else None
    if isinstance(document, list) and len(document) == 1:
        document = document[0]
    if not isinstance(document, dict):
        return _UNREADABLE if "json" in content_type else None
    return document


def _per_instance_statuses(document: dict[str, Any] | None) -> dict[str, InstanceResult]:
    """Results listed in a DICOM JSON Store Instances Response Module (Annex I)."""
    if document is None:
        return {}
    listed: dict[str, InstanceResult] = {}
    for item in _sequence(document, REFERENCED_SOP_SEQUENCE):
        uid = _first_value(item, REFERENCED_SOP_INSTANCE_UID)
        if not isinstance(uid, str):
            continue
        warning = parse_status_code(_first_value(item, WARNING_REASON))
        reason = store_status(warning).describe() if warning is not None else None
        listed[uid] = InstanceResult(uid, InstanceOutcome.stored, status=warning, reason=reason)
    for item in _sequence(document, FAILED_SOP_SEQUENCE):
        uid = _first_value(item, REFERENCED_SOP_INSTANCE_UID)
        if not isinstance(uid, str):
            continue
        code = parse_status_code(_first_value(item, FAILURE_REASON))
        if code is None:
            listed[uid] = InstanceResult(
                uid, InstanceOutcome.refused, reason="refused without a failure reason"
            )
            continue
        described = store_status(code)
        if described.stored:
            outcome = InstanceOutcome.stored
        elif described.category is StatusCategory.transient:
            outcome = InstanceOutcome.failed
        else:
            outcome = InstanceOutcome.refused
        listed[uid] = InstanceResult(uid, outcome, status=code, reason=described.describe())
    return listed


def multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a ``multipart/related`` response (PS3.18 8.6.1.2), in order."""
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if not match:
        return []
    delimiter = b"--" + match.group(1).encode()
    parts: list[bytes] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        _, separator, payload = chunk.partition(b"\r\n\r\n")
        if not separator:
            continue
        parts.append(payload.removesuffix(b"\r\n"))
    return parts


def _sequence(dataset: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    element = dataset.get(tag)
    if not isinstance(element, dict):
        return []
    items = element.get("Value")
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict)]


def _first_value(dataset: dict[str, Any], tag: str) -> object:
    element = dataset.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if isinstance(values, list) and values:
        return values[0]
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _destination_error(status: int, headers: Mapping[str, str], operation: str) -> DestinationError:
    reason = f"{operation} answered HTTP {status}"
    if status in (401, 403):
        return DestinationMisconfigured(f"{reason}: check the destination's credentials")
    if status in (404, 405) or 300 <= status < 400:
        return DestinationMisconfigured(f"{reason}: check the destination's URL")
    if status == 415:
        return DestinationMisconfigured(f"{reason}: check the destination's kind")
    return DestinationUnavailable(reason, retry_after=_retry_after(headers))
