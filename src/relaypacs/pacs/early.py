"""Sending validated instances while the rest of the study is still arriving: the
``pacs.forward_ready`` job (``RELAYPACS_FORWARD_WHILE_RECEIVING``, off by default).

Each round of files that early assembly records enqueues this job for the upload (one at a time
per upload: see :func:`relaypacs.uploads.overlap.enqueue_forward_ready`). It sends the
instances never offered to the PACS yet, in the batches of the forwarding stage, recording each
batch's outcome as it is answered, and goes on until none is left or the upload has left
``receiving``. The lifecycle does not change: the upload is still ``receiving``; after
``complete`` the ``pacs.forward`` job sends only what is still ``pending`` and confirms the
whole study with QIDO-RS before ``delivered``.

Best effort by design: a batch the PACS could not take now (down, slow, an open circuit) stops
this job, and those instances keep their reason and wait for the forwarding after ``complete``,
which retries with back-off. An instance the PACS refuses for good is ``refused`` here with
its reason, as it would be later.

What the operator accepts by turning it on: a study cancelled, or left to expire, after some of
its instances reached the PACS keeps those instances there (the cancel's timeline row says how
many). The final assembly waits for this job to stop before it decides between two copies of
one instance, and keeps the copy the PACS already holds.
"""

from __future__ import annotations

import asyncio

from relaypacs.db.base import utcnow
from relaypacs.pacs import repository
from relaypacs.pacs.forwarding import Forwarder, ForwardReport
from relaypacs.pacs.service import BatchLimits
from relaypacs.uploads import repository as uploads_repository
from relaypacs.uploads.models import RECEIVING_STATES

#: How long the job waits for more instances before it ends, and how often it looks. An
#: instance recorded just as it ends waits for the forwarding after ``complete``: slower,
#: never wrong.
LINGER_SECONDS = 2.0
POLL_SECONDS = 0.2
#: How long a batch smaller than the stage's may wait for more instances before it goes. On a
#: slow link each round brings a file or two, and every STOW-RS request (and the recording of
#: its outcome) has a fixed cost: waiting a moment sends fuller requests, fewer of them.
GATHER_SECONDS = 1.0


async def forward_ready_instances(forwarder: Forwarder) -> ForwardReport:
    """Send the upload's unsent instances while it still receives; what was done."""
    report = ForwardReport(forwarder.upload_id)
    limits = BatchLimits.from_settings(forwarder.settings)
    # Enough for every request the stage may have in flight at once.
    round_size = max(1, limits.max_instances * limits.parallel)
    offered: set[str] = set()
    idle = 0.0
    gathering = 0.0
    while True:
        async with forwarder.sessionmaker() as session:
            upload = await uploads_repository.get_upload(session, forwarder.upload_id)
            if (
                upload is None
                or upload.state not in RECEIVING_STATES
                or upload.expires_at <= utcnow()
            ):
                # Completed (the forwarding after it does the rest), cancelled or expired.
                await session.commit()
                return report
            rows = await repository.unsent_instances(session, forwarder.upload_id, limit=round_size)
            await session.commit()
        # A failure without a reason would leave a row looking unsent: never offer it twice.
        rows = [row for row in rows if row.sop_instance_uid not in offered]
        if not rows:
            if idle >= LINGER_SECONDS:
                return report
            # The next round of files is usually being assembled now; its enqueue finds this
            # job still running and adds none, so stay a moment rather than leave it behind.
            await asyncio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            continue
        idle = 0.0
        if len(rows) < limits.max_instances and gathering < GATHER_SECONDS:
            await asyncio.sleep(POLL_SECONDS)
            gathering += POLL_SECONDS
            continue
        gathering = 0.0
        offered.update(row.sop_instance_uid for row in rows)
        result = await forwarder.send(rows, report)
        if result.failed:
            # The PACS cannot take them now: the forwarding after `complete` retries with its
            # back-off instead of this job hammering a PACS that is down.
            return report
