"""The destination interface: what the forwarding stage needs from a PACS (or archive).

A destination stores instances (STOW-RS, PS3.18 10.5), counts what it holds of a study
(QIDO-RS, PS3.18 10.6) and answers a cheap reachability check. Instances are given as
re-openable async byte streams, so that no implementation ever holds a study in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True)
class StowInstance:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    size: int
    # Opens a fresh stream of the instance's bytes (called again on every retry).
    open: Callable[[], AsyncIterator[bytes]] = field(repr=False, compare=False)
    # When given, the bytes are checked while they stream: what reaches the PACS is what the
    # client uploaded, or nothing.
    sha256: str | None = None


class InstanceOutcome(StrEnum):
    stored = "stored"
    refused = "refused"  # for good: keep it and show the reason
    failed = "failed"  # for now: send again later


@dataclass(frozen=True)
class InstanceResult:
    sop_instance_uid: str
    outcome: InstanceOutcome
    # The Store Instances status (FailureReason or WarningReason), when the PACS gave one.
    status: int | None = None
    reason: str | None = None


@dataclass
class StowResult:
    instances: list[InstanceResult] = field(default_factory=list)
    # The destination asked for a pause (Retry-After) before the failed ones are sent again.
    retry_after: float | None = None

    def with_outcome(self, outcome: InstanceOutcome) -> list[InstanceResult]:
        return [result for result in self.instances if result.outcome is outcome]

    @property
    def stored(self) -> list[InstanceResult]:
        return self.with_outcome(InstanceOutcome.stored)

    @property
    def refused(self) -> list[InstanceResult]:
        return self.with_outcome(InstanceOutcome.refused)

    @property
    def failed(self) -> list[InstanceResult]:
        return self.with_outcome(InstanceOutcome.failed)

    def extend(self, other: StowResult) -> None:
        self.instances.extend(other.instances)
        if other.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, other.retry_after)


class Destination(Protocol):
    @property
    def name(self) -> str:
        """A short configured name, used in logs and metric labels."""

    @property
    def kind(self) -> str:
        """``orthanc``, ``dcm4chee``, ``generic`` (DICOMweb) or ``archive``."""

    async def store_instances(self, instances: Sequence[StowInstance]) -> StowResult:
        """Store one batch; a result for every instance given.

        Raises :class:`~relaypacs.pacs.exceptions.DestinationError` when the batch as a whole
        could not be delivered (nothing is known about its instances),
        :class:`~relaypacs.pacs.exceptions.BatchTooLarge` and
        :class:`~relaypacs.pacs.exceptions.InstanceIntegrityError`.
        """

    async def count_instances(self, study_instance_uid: str) -> int:
        """How many instances of the study the destination holds (0 for an unknown study)."""

    async def ping(self) -> None:
        """Raise :class:`~relaypacs.pacs.exceptions.DestinationError` unless reachable."""

    async def close(self) -> None: ...
