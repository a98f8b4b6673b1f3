"""The chunk PUT's hook that starts assembly while the rest of the study is still arriving.

Called in the transaction that records chunks (so the job exists exactly when the chunk rows
do): an upload with a file whose chunks are now all stored gets its ``uploads.assemble_ready``
job (:func:`relaypacs.uploads.assembly.assemble_ready_files`), unless one is queued or
running already (which assembles every ready file it finds, round after round). One query per
call, whatever the number of chunks. A file the running job missed (it completed just as the
job found nothing more to do, or two last chunks of one file committed at the same moment) is
taken by the next job or, at the latest, after ``complete``: slower, never wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.jobs.models import JobPriority
from relaypacs.jobs.service import enqueue
from relaypacs.uploads import repository
from relaypacs.users.models import ServiceLevel

ASSEMBLE_READY_JOB = "uploads.assemble_ready"

# Below the study's own jobs (assembly after `complete`, forwarding): early work must never
# hold up a study that is ready to go.
_PRIORITY = {
    ServiceLevel.stat: JobPriority.stat - 1,
    ServiceLevel.emergency: JobPriority.emergency - 1,
    ServiceLevel.routine: JobPriority.routine - 1,
}


async def enqueue_complete_files(session: AsyncSession, file_ids: Iterable[uuid.UUID]) -> int:
    """The upload's assembly job when one of ``file_ids`` has all its chunks stored now."""
    complete = await repository.files_with_all_chunks(session, sorted(set(file_ids)))
    uploads = {upload_id: service_level for upload_id, _, service_level in complete}
    for upload_id, service_level in sorted(uploads.items()):
        await enqueue(
            session,
            ASSEMBLE_READY_JOB,
            {"upload_id": str(upload_id)},
            priority=_PRIORITY[service_level],
            dedupe_key=f"{ASSEMBLE_READY_JOB}:{upload_id}",
        )
    return len(uploads)
