"""The chunk PUT's hook that starts assembly while the rest of the study is still arriving.

Called in the transaction that records chunks (so the job exists exactly when the chunk rows
do): an upload with a file whose chunks are now all stored gets its ``uploads.assemble_ready``
job (:func:`relaypacs.uploads.assembly.assemble_ready_files`), unless one is queued or
running already (which assembles every ready file it finds, round after round). One query per
call, whatever the number of chunks. A file the running job missed (it completed just as the
job found nothing more to do, or two last chunks of one file committed at the same moment) is
taken by the next job or, at the latest, after ``complete``: slower, never wrong.

Only when the jobs run in another process than the API (``RELAYPACS_ASSEMBLE_WHILE_RECEIVING``,
default: when ``serve`` runs no worker): inside ``serve`` (SQLite's embedded default) the
assembly competes with the chunk PUTs for the process and the one write lock, and measured
slower overall than assembling after ``complete`` (bench/README.md).

With ``RELAYPACS_FORWARD_WHILE_RECEIVING`` (off by default; it implies early assembly) each
round of files the assembly job records also gets the upload's ``pacs.forward_ready`` job,
which sends the recorded instances to the PACS before ``complete``
(:mod:`relaypacs.pacs.early`). Off by default because a study cancelled or left to expire
afterwards keeps, in the PACS, the instances it already stored: the operator chooses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.config import Settings
from relaypacs.jobs.models import JobPriority
from relaypacs.jobs.registry import default_registry
from relaypacs.jobs.service import enqueue
from relaypacs.uploads import repository
from relaypacs.users.models import ServiceLevel

ASSEMBLE_READY_JOB = "uploads.assemble_ready"
#: Sends an upload's validated instances while it still receives (handled by the pacs domain).
FORWARD_READY_JOB = "pacs.forward_ready"
#: ``Session.info`` key: whether this process's chunk PUTs start assembly early.
SESSION_FLAG = "relaypacs.assemble_while_receiving"
#: ``Session.info`` key: whether this process's early assembly rounds start early forwarding.
FORWARD_FLAG = "relaypacs.forward_while_receiving"

# Below every study's own jobs (assembly after `complete`, forwarding) whatever their service
# level: early work must never hold up a study that is ready to go, not even a routine one.
# Among themselves, in the service levels' order.
EARLY_PRIORITY = {
    ServiceLevel.emergency: JobPriority.routine - 1,
    ServiceLevel.stat: JobPriority.routine - 2,
    ServiceLevel.routine: JobPriority.routine - 3,
}


def assemble_while_receiving(settings: Settings) -> bool:
    if settings.assemble_while_receiving is not None:
        return settings.assemble_while_receiving
    if settings.forward_while_receiving:
        return True
    in_process = settings.run_worker_in_process
    return not (settings.is_sqlite if in_process is None else in_process)


def configure_overlap(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Tell the sessions of this process whether chunk PUTs start assembly (and assembly
    rounds start forwarding) early."""
    sessionmaker.configure(
        info={
            SESSION_FLAG: assemble_while_receiving(settings),
            FORWARD_FLAG: settings.forward_while_receiving,
        }
    )


async def enqueue_complete_files(session: AsyncSession, file_ids: Iterable[uuid.UUID]) -> int:
    """The upload's assembly job when one of ``file_ids`` has all its chunks stored now."""
    if not session.info.get(SESSION_FLAG, True):
        return 0
    complete = await repository.files_with_all_chunks(session, sorted(set(file_ids)))
    uploads = {upload_id: service_level for upload_id, _, service_level in complete}
    for upload_id, service_level in sorted(uploads.items()):
        await enqueue(
            session,
            ASSEMBLE_READY_JOB,
            {"upload_id": str(upload_id)},
            priority=EARLY_PRIORITY[service_level],
            dedupe_key=f"{ASSEMBLE_READY_JOB}:{upload_id}",
        )
    return len(uploads)


async def enqueue_forward_ready(
    session: AsyncSession, upload_id: uuid.UUID, service_level: ServiceLevel
) -> bool:
    """The upload's early forwarding job, in the transaction that recorded validated instances
    (when this process forwards early and the forwarding stage is installed)."""
    if not session.info.get(FORWARD_FLAG, False) or FORWARD_READY_JOB not in (
        default_registry.handlers
    ):
        return False
    await enqueue(
        session,
        FORWARD_READY_JOB,
        {"upload_id": str(upload_id)},
        priority=EARLY_PRIORITY[service_level],
        dedupe_key=f"{FORWARD_READY_JOB}:{upload_id}",
    )
    return True
