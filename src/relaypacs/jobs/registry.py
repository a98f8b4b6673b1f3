"""Job handlers by kind, periodic kinds, and the context a handler runs with.

Domains register handlers in their ``tasks.py`` module (``relaypacs/<domain>/tasks.py``); the
worker imports every such module at start (:func:`load_task_modules`), so registering is only::

    @job_handler("uploads.assemble")
    async def assemble(ctx: JobContext, payload: dict[str, Any]) -> None: ...

    register_periodic("reports.sync", every=timedelta(minutes=5))

A handler may run more than once for one job (its worker can die after the work and before the
job is marked done), so it must be idempotent. It opens its own sessions from
``ctx.sessionmaker`` and commits them: the job is its transaction boundary.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaypacs.config import Settings
from relaypacs.jobs.exceptions import PermanentFailure, RetryLater

if TYPE_CHECKING:
    from relaypacs.resources import Resources

__all__ = [
    "JobContext",
    "JobHandler",
    "JobRegistry",
    "PermanentFailure",
    "RetryLater",
    "default_registry",
    "job_handler",
    "load_task_modules",
    "register_periodic",
]


@dataclass(frozen=True)
class JobContext:
    resources: Resources
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    job_id: uuid.UUID
    kind: str
    # 1 on the first run; counts every start, including runs whose worker died.
    attempt: int


JobHandler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class HandlerSpec:
    kind: str
    handler: JobHandler
    # None: the worker's default (RELAYPACS_JOB_MAX_AGE_HOURS).
    max_age: timedelta | None = None


@dataclass
class JobRegistry:
    """Which kinds a worker runs. Tests build their own; the product uses ``default_registry``."""

    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    periodic: dict[str, timedelta] = field(default_factory=dict)

    def job_handler(
        self, kind: str, *, max_age: timedelta | None = None
    ) -> Callable[[JobHandler], JobHandler]:
        def register(handler: JobHandler) -> JobHandler:
            existing = self.handlers.get(kind)
            if existing is not None and existing.handler is not handler:
                raise ValueError(f"a handler for job kind {kind!r} is already registered")
            self.handlers[kind] = HandlerSpec(kind=kind, handler=handler, max_age=max_age)
            return handler

        return register

    def register_periodic(self, kind: str, every: timedelta) -> None:
        if every <= timedelta(0):
            raise ValueError("a periodic job needs a positive period")
        self.periodic[kind] = every

    @property
    def kinds(self) -> list[str]:
        return sorted(self.handlers)


default_registry = JobRegistry()


def job_handler(
    kind: str, *, max_age: timedelta | None = None
) -> Callable[[JobHandler], JobHandler]:
    """Register ``async def handler(ctx: JobContext, payload: dict) -> None`` for ``kind``."""
    return default_registry.job_handler(kind, max_age=max_age)


def register_periodic(kind: str, every: timedelta) -> None:
    """Enqueue a ``kind`` job once per ``every`` across all workers (its handler is separate)."""
    default_registry.register_periodic(kind, every)


def load_task_modules(extra: Iterable[str] = ()) -> list[str]:
    """Import ``relaypacs.<domain>.tasks`` for every domain that has one, then ``extra``."""
    import relaypacs

    names = [
        f"relaypacs.{module.name}.tasks"
        for module in pkgutil.iter_modules(relaypacs.__path__)
        if module.ispkg and importlib.util.find_spec(f"relaypacs.{module.name}.tasks") is not None
    ]
    names.extend(extra)
    for name in names:
        importlib.import_module(name)
    return names
