"""Errors of a destination as a whole (not of one instance: see ``InstanceResult``)::

    DestinationError                  transient: the caller retries later
    ├── DestinationUnavailable        refused connection, timeout, HTTP 5xx / 408 / 429
    │   └── CircuitOpen               too many recent failures: not even tried
    └── DestinationMisconfigured      HTTP 401 / 403 / 404 / 3xx: wrong URL or credentials
    BatchTooLarge                     HTTP 413: send fewer instances per request
    InstanceIntegrityError            the gateway's copy does not match its size or SHA-256

Reasons are built from status codes and exception types only: never from a response body or
anything that could hold patient data.
"""

from __future__ import annotations


class DestinationError(Exception):
    transient = True

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DestinationUnavailable(DestinationError):
    pass


class CircuitOpen(DestinationUnavailable):
    pass


class DestinationMisconfigured(DestinationError):
    """Retrying helps only once an administrator fixes the URL or credentials."""


class BatchTooLarge(Exception):
    pass


class InstanceIntegrityError(Exception):
    def __init__(self, sop_instance_uid: str, reason: str) -> None:
        super().__init__(reason)
        self.sop_instance_uid = sop_instance_uid
        self.reason = reason
