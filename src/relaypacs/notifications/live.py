"""Live events: written with the change that causes them, delivered after it commits.

Publishing (any process: API or worker)::

    stage_event(session, user_id, StreamEventType.notification, {...})   # joins the transaction

A ``before_commit`` hook writes every staged event to ``stream_event`` (its id is the SSE
``id:``, so a reconnecting client can replay what it missed) and, on PostgreSQL, issues
``pg_notify`` in the same transaction: PostgreSQL delivers it to every listening API process
when, and only when, the transaction commits. With SQLite (one process) an ``after_commit`` hook
hands the events to the process's hub directly.

Upload state changes need no call: a session that flushes a new ``upload_event`` row (what
``uploads.repository.add_event`` writes for every transition) stages an ``upload_state`` event
for the upload's owner.

Delivery (API processes): an :class:`EventHub` per engine keeps the open streams by user. Each
stream has a bounded queue; a stream whose queue is full is marked overflowed and ends, and its
client reconnects with ``Last-Event-ID`` to be replayed from the log, so a slow client costs at
most ``RELAYPACS_SSE_QUEUE_SIZE`` events of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg  # type: ignore[import-untyped]
import structlog
from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, UOWTransaction

from relaypacs.notifications import repository
from relaypacs.notifications.exceptions import TooManyStreams
from relaypacs.notifications.models import StreamEventType
from relaypacs.uploads.models import UploadEvent

if TYPE_CHECKING:
    from relaypacs.resources import Resources

log = structlog.get_logger(__name__)

CHANNEL = "relaypacs_events"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; larger events travel as ids.
_MAX_PAYLOAD = 7000
_DRAFTS = "relaypacs.live.drafts"
_WRITTEN = "relaypacs.live.written"


@dataclass(frozen=True)
class LiveEvent:
    id: int
    user_id: uuid.UUID
    event: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        body = json.dumps(self.data, separators=(",", ":"), default=str)
        return f"id: {self.id}\nevent: {self.event}\ndata: {body}\n\n".encode()


@dataclass(frozen=True)
class _Draft:
    user_id: uuid.UUID | None
    event: str
    data: dict[str, Any]
    # For upload_state drafts: the owner is looked up at commit.
    upload_id: uuid.UUID | None = None


# --- publishing --------------------------------------------------------------------------------


def stage_event(
    session: AsyncSession, user_id: uuid.UUID, event_type: StreamEventType, data: dict[str, Any]
) -> None:
    """Queue a live event for ``user_id``; written and delivered only if the session commits."""
    _drafts(session.sync_session).append(_Draft(user_id, event_type.value, data))


def stage_upload_state(session: AsyncSession, upload_id: uuid.UUID, state: str) -> None:
    """An ``upload_state`` event outside the upload timeline (rarely needed: see module doc)."""
    _drafts(session.sync_session).append(_upload_state_draft(upload_id, state, None, None))


def _drafts(session: Session) -> list[_Draft]:
    drafts: list[_Draft] = session.info.setdefault(_DRAFTS, [])
    return drafts


def _upload_state_draft(
    upload_id: uuid.UUID, state: str, at: datetime | None, detail: str | None
) -> _Draft:
    data: dict[str, Any] = {
        "upload_id": str(upload_id),
        "state": state,
        "at": at.isoformat() if at else None,
        "detail": detail,
    }
    return _Draft(None, StreamEventType.upload_state.value, data, upload_id=upload_id)


@event.listens_for(Session, "after_flush")
def _watch_upload_timeline(session: Session, _: UOWTransaction) -> None:
    # ``session.new`` still lists what this flush inserted.
    for instance in session.new:
        if isinstance(instance, UploadEvent):
            state = str(getattr(instance.state, "value", instance.state) or "")
            _drafts(session).append(
                _upload_state_draft(instance.upload_id, state, instance.at, instance.detail)
            )


@event.listens_for(Session, "before_commit")
def _write_events(session: Session) -> None:
    if not session.info.get(_DRAFTS):
        return
    # Whatever is still pending may stage more (upload events), so flush before reading drafts.
    session.flush()
    drafts: list[_Draft] = session.info.pop(_DRAFTS, [])
    if not drafts:
        return
    connection = session.connection()
    owners = _resolve_owners(connection, drafts)
    rows: list[dict[str, Any]] = []
    for draft in drafts:
        user_id = draft.user_id if draft.user_id is not None else owners.get(draft.upload_id)
        if user_id is not None:
            rows.append({"user_id": user_id, "event": draft.event, "data": draft.data})
    if not rows:
        return
    created = repository.insert_events_sync(connection, rows)
    events = [
        LiveEvent(event_id, row["user_id"], row["event"], row["data"])
        for row, (event_id, _) in zip(rows, created, strict=True)
    ]
    if connection.dialect.name == "postgresql":
        repository.pg_notify_sync(connection, CHANNEL, [_payload(e) for e in events])
    else:
        session.info[_WRITTEN] = events


def _resolve_owners(connection: Connection, drafts: Sequence[_Draft]) -> dict[Any, Any]:
    upload_ids = list({d.upload_id for d in drafts if d.user_id is None and d.upload_id})
    return repository.upload_owners_sync(connection, upload_ids) if upload_ids else {}


def _payload(live: LiveEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": live.id,
        "u": str(live.user_id),
        "e": live.event,
        "d": live.data,
    }
    if len(json.dumps(payload, separators=(",", ":"), default=str)) > _MAX_PAYLOAD:
        del payload["d"]
    return payload


@event.listens_for(Session, "after_commit")
def _deliver_in_process(session: Session) -> None:
    events: list[LiveEvent] | None = session.info.pop(_WRITTEN, None)
    if not events:
        return
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    hub = _hubs.get(engine)
    if hub is not None:
        hub.deliver_threadsafe(events)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: object) -> None:
    if session.in_transaction():
        return
    session.info.pop(_DRAFTS, None)
    session.info.pop(_WRITTEN, None)


# --- delivery ----------------------------------------------------------------------------------


def _setter(flag: asyncio.Event) -> Callable[[object], None]:
    return lambda _: flag.set()


@dataclass(eq=False)
class StreamConnection:
    """One open SSE stream of one user, in this process."""

    user_id: uuid.UUID
    queue: asyncio.Queue[LiveEvent]
    overflowed: bool = False
    # Set when events may have been missed (listener reconnected): read the log again.
    resync: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, live: LiveEvent) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(live)
        except asyncio.QueueFull:
            # Never wait on, nor grow for, a client that does not keep up: drop it.
            self.overflowed = True
            self.resync.set()


_hubs: weakref.WeakKeyDictionary[Engine, EventHub] = weakref.WeakKeyDictionary()


class EventHub:
    """This process's open streams, fed by PostgreSQL LISTEN or (SQLite) the commit hook."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        queue_size: int,
        max_streams_per_user: int,
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.queue_size = queue_size
        self.max_streams_per_user = max_streams_per_user
        self.uses_listen = engine.dialect.name == "postgresql"
        self._streams: dict[uuid.UUID, set[StreamConnection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    # life cycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        _hubs[self.engine.sync_engine] = self
        if self.uses_listen:
            self._listener = asyncio.create_task(self._listen(), name="sse-listen")
            await asyncio.wait_for(self._listening.wait(), timeout=30)
        else:
            self._listening.set()

    async def stop(self) -> None:
        self._stopping = True
        _hubs.pop(self.engine.sync_engine, None)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for streams in self._streams.values():
            for stream in streams:
                stream.overflowed = True
                stream.resync.set()

    # streams

    def open(self, user_id: uuid.UUID) -> StreamConnection:
        streams = self._streams.setdefault(user_id, set())
        if len(streams) >= self.max_streams_per_user:
            raise TooManyStreams(
                f"At most {self.max_streams_per_user} open streams per user",
                max_streams=self.max_streams_per_user,
            )
        stream = StreamConnection(user_id, asyncio.Queue(maxsize=self.queue_size))
        streams.add(stream)
        return stream

    def close(self, stream: StreamConnection) -> None:
        streams = self._streams.get(stream.user_id)
        if streams is None:
            return
        streams.discard(stream)
        if not streams:
            del self._streams[stream.user_id]

    def stream_count(self, user_id: uuid.UUID | None = None) -> int:
        if user_id is not None:
            return len(self._streams.get(user_id, ()))
        return sum(len(s) for s in self._streams.values())

    def deliver(self, events: Sequence[LiveEvent]) -> None:
        for live in events:
            for stream in list(self._streams.get(live.user_id, ())):
                stream.offer(live)

    def deliver_threadsafe(self, events: Sequence[LiveEvent]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.deliver(events)
        else:
            loop.call_soon_threadsafe(self.deliver, list(events))

    def _resync_all(self) -> None:
        for streams in self._streams.values():
            for stream in streams:
                stream.resync.set()

    # PostgreSQL LISTEN

    def _dsn(self) -> str:
        url = self.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def _listen(self) -> None:
        delay = 0.5
        while not self._stopping:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._dsn())
                lost = asyncio.Event()
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(CHANNEL, self._on_notify)
                if self._listening.is_set():
                    # Reconnected: what was published meanwhile is only in the log.
                    self._resync_all()
                self._listening.set()
                delay = 0.5
                await lost.wait()
                log.warning("sse_listener_lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sse_listener_failed", error=type(exc).__name__)
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            self._resync_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _on_notify(
        self, _connection: object, _pid: int, _channel: str, payload: str | bytes
    ) -> None:
        try:
            message = json.loads(payload)
            user_id = uuid.UUID(message["u"])
            event_id = int(message["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("sse_bad_notify_payload")
            return
        if user_id not in self._streams:
            return
        if "d" in message:
            self.deliver([LiveEvent(event_id, user_id, str(message["e"]), message["d"])])
        else:
            task = asyncio.get_running_loop().create_task(self._fetch_and_deliver(event_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fetch_and_deliver(self, event_id: int) -> None:
        async with self.sessionmaker() as session:
            rows = await repository.get_events(session, [event_id])
        self.deliver([LiveEvent(r.id, r.user_id, r.event, r.data) for r in rows])


async def start_event_hub(resources: Resources) -> EventHub:
    """The API process's hub (``app.state.event_hub``); stopped by the app's shut-down."""
    settings = resources.settings
    hub = EventHub(
        resources.engine,
        resources.sessionmaker,
        queue_size=settings.sse_queue_size,
        max_streams_per_user=settings.sse_max_streams_per_user,
    )
    await hub.start()
    return hub
