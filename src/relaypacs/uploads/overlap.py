"""The chunk PUT's hook that starts assembly while the rest of the study is still arriving.

Called in the transaction that records chunks (so the job exists exactly when the chunk rows
do): each file whose chunks are now all stored gets an ``uploads.assemble_file`` job
(:func:`relaypacs.uploads.assembly.assemble_file_early`). One query per call, whatever the
number of chunks. Two last chunks of one file committing at the same moment may each miss the
other's row: the file is then assembled after ``complete`` instead, which is slower, never wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.jobs.models import JobPriority
from relaypacs.jobs.service import enqueue
from relaypacs.uploads import repository
from relaypacs.users.models import ServiceLevel

ASSEMBLE_FILE_JOB = "uploads.assemble_file"

# Below the study's own jobs (assembly after `complete`, forwarding): early work must never
# hold up a study that is ready to go.
_PRIORITY = {
    ServiceLevel.stat: JobPriority.stat - 1,
    ServiceLevel.emergency: JobPriority.emergency - 1,
    ServiceLevel.routine: JobPriority.routine - 1,
}


async def enqueue_complete_files(session: AsyncSession, file_ids: Iterable[uuid.UUID]) -> int:
    """A per-file assembly job for each of ``file_ids`` whose chunks are all stored now."""
    complete = await repository.files_with_all_chunks(session, sorted(set(file_ids)))
    for upload_id, file_id, service_level in complete:
        await enqueue(
            session,
            ASSEMBLE_FILE_JOB,
            {"upload_id": str(upload_id), "file_id": str(file_id)},
            priority=_PRIORITY[service_level],
            dedupe_key=f"{ASSEMBLE_FILE_JOB}:{file_id}",
        )
    return len(complete)
