"""What a job handler raises to steer its retry, and the errors of the admin operations.

A handler's outcome::

    returns                      -> succeeded
    raises RetryLater            -> queued again after a back-off (or `delay`), until the job's
                                    maximum age or attempts are spent -> failed
    raises PermanentFailure      -> failed at once (an admin can requeue it)
    raises anything else         -> like RetryLater, with the traceback logged
    its worker dies              -> taken up by another worker when the lease expires; after
                                    too many such deaths -> dead (an admin can requeue it)

Reasons end up in ``job.last_error`` and in logs: they must never hold patient data.
"""

from __future__ import annotations

from relaypacs.errors import Conflict, NotFound


class RetryLater(Exception):
    """A transient problem (PACS down, timeout): run the job again later."""

    def __init__(self, reason: str = "retry later", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class PermanentFailure(Exception):
    """Retrying cannot help (bad payload, refused for good): the job fails now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobNotFound(NotFound):
    code = "job_not_found"
    title = "No such job"


class JobNotRequeueable(Conflict):
    code = "job_not_requeueable"
    title = "Only a failed or dead job can be requeued"


class JobAlreadyQueued(Conflict):
    code = "job_already_queued"
    title = "An unfinished job with the same key is already queued"
