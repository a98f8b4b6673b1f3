"""Forwarding a validated upload to the PACS: the steps of the ``pacs.forward`` job.

Lifecycle (DESIGN.md): ``validated → queued → forwarding → delivered``, or
``partially_delivered`` (some instances refused for good, each with the PACS's reason) or
``failed`` (the PACS refused every instance; or it stayed unreachable past
``RELAYPACS_FORWARD_MAX_AGE_HOURS``, decided by the job handler). Every transition writes its
timeline row in the transaction that changes the state.

What makes it safe to run again at any point (a killed worker, a lost lease, a retry):

- only instances still ``pending`` are sent; each batch's per-instance outcome is committed as
  soon as the PACS answers it (its own short transaction), so a run cut short never sends the
  batches it had recorded again, and a batch whose answer was lost is sent again, which a
  PACS treats as a duplicate (Orthanc: stored again in place; 0x0111 counts as stored);
- the instances stream from the chunk store with their SHA-256 checked on the way
  (DESIGN promise 5): a copy that changed at rest is never sent, it is ``refused``;
- ``delivered`` needs the PACS to hold every stored instance: a QIDO-RS query
  (``RELAYPACS_PACS_CONFIRM_WITH_QIDO``, DICOMweb destinations) finds each one; an instance the
  PACS acknowledged but does not hold is sent once more, and refused if it is still missing
  (a PACS that silently discards what its policy does not accept, as Orthanc's filters do);
- study files are left in the chunk store: the retention job deletes them after delivery.

Transient problems (PACS down, slow, 5xx, timeouts, an open circuit, the chunk store) raise
:class:`NotYetDelivered`; the handler turns it into a retry with the PACS's ``Retry-After`` or
the queue's back-off. Nothing here commits a caller's session: each step opens its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.dicom.models import DicomInstance, ForwardStatus
from relaypacs.notifications import service as notifications_service
from relaypacs.operations import metrics
from relaypacs.pacs import repository
from relaypacs.pacs.breaker import GuardedDestination
from relaypacs.pacs.destination import (
    Destination,
    InstanceOutcome,
    InstanceResult,
    StowInstance,
    StowResult,
)
from relaypacs.pacs.exceptions import DestinationError, DestinationMisconfigured
from relaypacs.pacs.service import BatchLimits, store_in_batches
from relaypacs.reports import service as reports_service
from relaypacs.uploads import repository as uploads_repository
from relaypacs.uploads.models import Upload, UploadState
from relaypacs.uploads.store import ChunkStore, StoreUnavailable

log = structlog.get_logger(__name__)

#: States the forwarding stage takes an upload from (``forwarding``: a run that was cut short).
FORWARDABLE_STATES = frozenset({UploadState.validated, UploadState.queued, UploadState.forwarding})
#: Store passes within one run while each pass still makes progress (e.g. a batch interrupted by
#: a damaged instance is sent again at once instead of after a back-off).
MAX_PASSES = 3
MISSING_AFTER_STOW = "acknowledged by the PACS but not found by QIDO-RS after being sent twice"


class NotYetDelivered(Exception):
    """A transient problem: try again later (``retry_after``: what the PACS asked for)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class ForwardReport:
    """What one run did (for logs, tests and the benchmark's time split)."""

    upload_id: uuid.UUID
    state: UploadState | None = None
    sent: int = 0
    stored: int = 0
    refused: int = 0
    stow_seconds: float = 0.0
    confirm_seconds: float = 0.0
    passes: int = 0
    skipped: bool = False


@dataclass
class Forwarder:
    """Forwards one upload to one destination. Build one per job run."""

    sessionmaker: async_sessionmaker[AsyncSession]
    chunk_store: ChunkStore
    destination: GuardedDestination
    settings: Settings
    upload_id: uuid.UUID

    async def run(self) -> ForwardReport:
        report = ForwardReport(self.upload_id)
        state = await self._enter_queue()
        if state is None:
            report.skipped = True
            return report
        await self._check_reachable()
        if not await self._start_forwarding():
            report.skipped = True
            return report
        await self._store_pending(report)
        if self._confirms():
            await self._confirm(report)
        report.state = await self._finish(report)
        return report

    # --- steps ---

    async def _enter_queue(self) -> UploadState | None:
        """validated → queued (the hook only enqueued the job); None when there is nothing to do."""
        async with self.sessionmaker() as session:
            upload = await uploads_repository.get_upload(session, self.upload_id, lock="update")
            if upload is None or upload.state not in FORWARDABLE_STATES:
                # Delivered, refused, failed or gone: a run after the outcome was committed.
                await session.commit()
                return None
            if upload.state is UploadState.validated:
                await _transition(session, upload, UploadState.queued)
            state = upload.state
            await session.commit()
        return state

    async def _check_reachable(self) -> None:
        # Cheap, and outside any transaction: while the PACS is down the upload waits in
        # `queued` without a `forwarding` row per retry in its timeline. Through the circuit
        # breaker: with many studies queued, only the first few retries wait on a PACS that is
        # down; the rest are told at once (and when to try again).
        try:
            await self.destination.check()
        except DestinationMisconfigured:
            # The check is a QIDO-RS query, which a STOW-only endpoint may not serve: let the
            # STOW-RS request itself tell (wrong credentials fail there too, and are retried).
            return
        except DestinationError as exc:
            raise NotYetDelivered(
                f"the PACS is unreachable: {exc.reason}", retry_after=exc.retry_after
            ) from exc

    async def _start_forwarding(self) -> bool:
        async with self.sessionmaker() as session:
            upload = await uploads_repository.get_upload(session, self.upload_id, lock="update")
            if upload is None or upload.state not in FORWARDABLE_STATES:
                await session.commit()
                return False
            if upload.state is not UploadState.forwarding:
                await _transition(session, upload, UploadState.forwarding)
            await session.commit()
        return True

    async def _store_pending(self, report: ForwardReport) -> None:
        failed: list[InstanceResult] = []
        retry_after: float | None = None
        for _ in range(MAX_PASSES):
            async with self.sessionmaker() as session:
                pending = await repository.instances_with_status(
                    session, self.upload_id, ForwardStatus.pending
                )
                await session.commit()
            if not pending:
                return
            result = await self._store(pending, report)
            failed, retry_after = result.failed, result.retry_after
            if not failed or not (result.stored or result.refused):
                break
        if failed:
            raise NotYetDelivered(
                f"{len(failed)} instance(s) not stored yet: {_summary(failed)}",
                retry_after=retry_after,
            )

    async def send(self, rows: Sequence[DicomInstance], report: ForwardReport) -> StowResult:
        """Send ``rows`` now, recording each batch's outcome as it is answered (whatever the
        upload's state: early forwarding sends while it still receives)."""
        return await self._store(rows, report)

    async def _store(self, rows: Sequence[DicomInstance], report: ForwardReport) -> StowResult:
        report.passes += 1
        report.sent += len(rows)
        started = time.perf_counter()
        result = await store_in_batches(
            _ChunkStoreGuard(self.destination),
            [self._stow_instance(row) for row in rows],
            BatchLimits.from_settings(self.settings),
            on_batch=self._record_batch,
        )
        report.stow_seconds += time.perf_counter() - started
        report.stored += len(result.stored)
        report.refused += len(result.refused)
        return result

    def _stow_instance(self, row: DicomInstance) -> StowInstance:
        return StowInstance(
            sop_instance_uid=row.sop_instance_uid,
            sop_class_uid=row.sop_class_uid,
            study_instance_uid=row.study_instance_uid,
            series_instance_uid=row.series_instance_uid,
            size=row.size,
            open=_opener(self.chunk_store, row.store_key),
            sha256=row.sha256,
        )

    async def _record_batch(self, result: StowResult) -> None:
        """One batch's outcome in its own transaction, before the next batch is answered."""
        now = utcnow()
        async with self.sessionmaker() as session:
            for (outcome, reason), uids in _grouped(result.instances).items():
                if outcome is InstanceOutcome.stored:
                    await repository.set_outcome(
                        session,
                        self.upload_id,
                        uids,
                        status=ForwardStatus.stored,
                        reason=reason,
                        now=now,
                    )
                elif outcome is InstanceOutcome.refused:
                    await repository.set_outcome(
                        session,
                        self.upload_id,
                        uids,
                        status=ForwardStatus.refused,
                        reason=reason,
                        now=now,
                        only_if=ForwardStatus.pending,
                    )
                else:
                    # Shown on the upload while it waits; sent again on the next pass.
                    await repository.set_outcome(
                        session,
                        self.upload_id,
                        uids,
                        status=ForwardStatus.pending,
                        reason=reason,
                        now=None,
                        only_if=ForwardStatus.pending,
                    )
            await session.commit()

    def _confirms(self) -> bool:
        return self.settings.pacs_confirm_with_qido and self.destination.kind != "archive"

    async def _confirm(self, report: ForwardReport) -> None:
        """Every stored instance is held by the PACS (QIDO-RS); a missing one is sent again
        once, and refused if it is still missing."""
        missing = await self._missing(report)
        if not missing:
            return
        log.warning("forward_missing_after_stow", upload_id=str(self.upload_id), count=len(missing))
        async with self.sessionmaker() as session:
            await repository.set_outcome(
                session,
                self.upload_id,
                missing,
                status=ForwardStatus.pending,
                reason="not found by QIDO-RS after being stored; sending again",
                now=None,
            )
            await session.commit()
        await self._store_pending(report)
        still_missing = await self._missing(report, only=missing)
        if still_missing:
            async with self.sessionmaker() as session:
                await repository.set_outcome(
                    session,
                    self.upload_id,
                    still_missing,
                    status=ForwardStatus.refused,
                    reason=MISSING_AFTER_STOW,
                    now=utcnow(),
                )
                await session.commit()
            report.refused += len(still_missing)

    async def _missing(
        self, report: ForwardReport, only: Collection[str] | None = None
    ) -> set[str]:
        async with self.sessionmaker() as session:
            studies = await repository.stored_uids_by_study(session, self.upload_id)
            await session.commit()
        started = time.perf_counter()
        missing: set[str] = set()
        try:
            for study_uid, uids in studies.items():
                if only is not None:
                    uids = uids & set(only)
                if uids:
                    missing |= await _not_held(self.destination, study_uid, uids)
        except DestinationError as exc:
            raise NotYetDelivered(
                f"could not confirm with QIDO-RS: {exc.reason}", retry_after=exc.retry_after
            ) from exc
        finally:
            report.confirm_seconds += time.perf_counter() - started
        return missing

    async def _finish(self, report: ForwardReport) -> UploadState | None:
        async with self.sessionmaker() as session:
            upload = await uploads_repository.get_upload(session, self.upload_id, lock="update")
            if upload is None or upload.state is not UploadState.forwarding:
                await session.commit()
                return None
            counts = await repository.count_by_status(session, self.upload_id)
            if counts[ForwardStatus.pending]:
                # Another run reset an instance meanwhile (only possible with two jobs for one
                # upload): leave the outcome to the run that sends it.
                await session.commit()
                raise NotYetDelivered("instances still pending")
            stored, refused = counts[ForwardStatus.stored], counts[ForwardStatus.refused]
            confirmed = "; confirmed with QIDO-RS" if self._confirms() else ""
            if refused and not stored:
                reasons = await repository.refused_reasons(session, self.upload_id)
                upload.failure_reason = f"the PACS refused every instance ({refused})"
                await _transition(session, upload, UploadState.failed, upload.failure_reason)
                await reports_service.on_upload_failed(session, upload, reasons)
            elif refused:
                upload.failure_reason = f"{refused} of {stored + refused} instance(s) refused"
                await _transition(
                    session,
                    upload,
                    UploadState.partially_delivered,
                    f"{stored} instance(s) stored, {refused} refused{confirmed}",
                )
                await reports_service.on_upload_delivered(session, upload)
            else:
                await _transition(
                    session,
                    upload,
                    UploadState.delivered,
                    f"{stored} instance(s) stored{confirmed}",
                )
                await reports_service.on_upload_delivered(session, upload)
            state = upload.state
            await session.commit()
        _record_finished(upload)
        return state


async def fail_upload(
    sessionmaker: async_sessionmaker[AsyncSession], upload_id: uuid.UUID, reason: str
) -> bool:
    """Give up on an upload whose delivery kept failing past the maximum age (admin can
    requeue it): ``failed`` with the reason, and the uploader is told. False if it had left
    the forwarding stage already."""
    async with sessionmaker() as session:
        upload = await uploads_repository.get_upload(session, upload_id, lock="update")
        if upload is None or upload.state not in FORWARDABLE_STATES:
            await session.commit()
            return False
        upload.failure_reason = reason[: repository.REASON_LENGTH]
        await _transition(session, upload, UploadState.failed, upload.failure_reason)
        await reports_service.on_upload_failed(session, upload, [reason])
        await session.commit()
    _record_finished(upload)
    return True


async def wait_in_queue(
    sessionmaker: async_sessionmaker[AsyncSession], upload_id: uuid.UUID, reason: str
) -> None:
    """forwarding → queued while the job waits for its next attempt (the reason is shown)."""
    async with sessionmaker() as session:
        upload = await uploads_repository.get_upload(session, upload_id, lock="update")
        if upload is not None and upload.state is UploadState.forwarding:
            await _transition(session, upload, UploadState.queued, reason)
        elif upload is not None and upload.state is UploadState.queued:
            # Still waiting for a first send (the PACS was unreachable at the check): one row
            # after the row of queuing says why, and later retries bring it up to date (reason
            # and time, so that its "next attempt in" holds) rather than adding a row each: an
            # outage may last a day of retries.
            latest = await uploads_repository.latest_event(session, upload_id)
            detail = reason[: repository.REASON_LENGTH]
            if latest is not None and latest.state is UploadState.queued and latest.detail:
                latest.detail = detail
                latest.at = utcnow()
                # A changed row is not a new one: its watchers are told by hand.
                await notifications_service.publish_upload_state(session, upload)
            else:
                await uploads_repository.add_event(session, upload_id, UploadState.queued, detail)
        await session.commit()


# --- helpers -----------------------------------------------------------------------------------


async def _transition(
    session: AsyncSession, upload: Upload, state: UploadState, detail: str | None = None
) -> None:
    upload.state = state
    # The retention job dates a delivery by this.
    upload.updated_at = utcnow()
    await uploads_repository.add_event(
        session, upload.id, state, detail[: repository.REASON_LENGTH] if detail else None
    )


def _record_finished(upload: Upload) -> None:
    metrics.record_upload_finished(
        upload.state.value,
        service_level=upload.service_level.value,
        started_at=upload.created_at,
    )


def _opener(chunk_store: ChunkStore, key: str) -> Callable[[], AsyncIterator[bytes]]:
    def open_instance() -> AsyncIterator[bytes]:
        return chunk_store.read(key)

    return open_instance


def _grouped(
    results: Sequence[InstanceResult],
) -> dict[tuple[InstanceOutcome, str | None], list[str]]:
    groups: dict[tuple[InstanceOutcome, str | None], list[str]] = {}
    for result in results:
        groups.setdefault((result.outcome, result.reason), []).append(result.sop_instance_uid)
    return groups


def _summary(results: Sequence[InstanceResult]) -> str:
    reasons = sorted({result.reason or "no reason given" for result in results})
    shown = "; ".join(reasons[:3])
    return shown if len(reasons) <= 3 else f"{shown}; ..."


async def _not_held(destination: GuardedDestination, study_uid: str, uids: set[str]) -> set[str]:
    """Which of ``uids`` the destination does not hold (exactly, where it can list them)."""
    find = getattr(destination.destination, "find_instance_uids", None)
    if find is not None:
        held: set[str] = await find(study_uid)
        return uids - held
    # Only a count is known: a shortfall leaves every instance of the study in doubt.
    return set(uids) if await destination.count_instances(study_uid) < len(uids) else set()


class _ChunkStoreGuard:
    """The destination, with a chunk store failure while a batch streams turned into a
    transient failure of that batch (so the other batches go on and nothing escapes the
    batching)."""

    def __init__(self, destination: Destination) -> None:
        self._destination = destination

    @property
    def name(self) -> str:
        return self._destination.name

    @property
    def kind(self) -> str:
        return self._destination.kind

    async def store_instances(self, instances: Sequence[StowInstance]) -> StowResult:
        try:
            return await self._destination.store_instances(instances)
        except (StoreUnavailable, OSError) as exc:
            reason = f"chunk store: {type(exc).__name__}"
            return StowResult(
                instances=[
                    InstanceResult(i.sop_instance_uid, InstanceOutcome.failed, reason=reason)
                    for i in instances
                ]
            )

    async def count_instances(self, study_instance_uid: str) -> int:
        return await self._destination.count_instances(study_instance_uid)

    async def ping(self) -> None:
        await self._destination.ping()

    async def close(self) -> None:
        await self._destination.close()
