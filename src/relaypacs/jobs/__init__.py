"""The durable job queue: jobs live in the database, beside the state changes that enqueue them.

Public surface: :func:`relaypacs.jobs.service.enqueue` / ``requeue``;
:func:`relaypacs.jobs.registry.job_handler`, ``register_periodic``, ``JobContext``;
:class:`relaypacs.jobs.exceptions.RetryLater` / ``PermanentFailure``;
:class:`relaypacs.jobs.worker.Worker`.
"""
