"""Wake the workers of this process as soon as a transaction that enqueued jobs commits.

:func:`relaypacs.jobs.service.enqueue` marks the session; a SQLAlchemy ``after_commit`` hook
then wakes every worker polling the same engine. A rolled-back transaction wakes nobody. Workers
in other processes find the job at their next poll (``RELAYPACS_JOB_POLL_SECONDS``).
"""

from __future__ import annotations

import asyncio
import weakref

from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

_ENQUEUED = "relaypacs.jobs.enqueued"


class Wakeup:
    """An asyncio.Event that may be set from any thread."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def notify(self) -> None:
        if self._loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self.event.set()
        else:
            self._loop.call_soon_threadsafe(self.event.set)


# Keyed weakly by engine, so that workers on separate engines (several test databases, or two
# workers of one test) wake only for their own database.
_subscribers: weakref.WeakKeyDictionary[Engine, set[Wakeup]] = weakref.WeakKeyDictionary()


def subscribe(engine: AsyncEngine, wakeup: Wakeup) -> None:
    _subscribers.setdefault(engine.sync_engine, set()).add(wakeup)


def unsubscribe(engine: AsyncEngine, wakeup: Wakeup) -> None:
    _subscribers.get(engine.sync_engine, set()).discard(wakeup)


def notify(engine: AsyncEngine) -> None:
    """Wake this process's workers on ``engine`` now (e.g. a slot freed, a retry is due)."""
    for wakeup in list(_subscribers.get(engine.sync_engine, ())):
        wakeup.notify()


def mark_enqueued(session: AsyncSession) -> None:
    session.sync_session.info[_ENQUEUED] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if not session.info.pop(_ENQUEUED, False):
        return
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    for wakeup in list(_subscribers.get(engine, ())):
        wakeup.notify()


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: object) -> None:
    if session.in_transaction():
        return
    session.info.pop(_ENQUEUED, None)
