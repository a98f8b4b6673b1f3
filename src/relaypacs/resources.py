"""Long-lived resources shared by the API (`serve`) and the job runner (`worker`).

Both processes build them the same way through :func:`open_resources`, so a job handler sees the
same database, chunk store and clients as a request handler. Each domain adds its own resource
here (a field plus its start-up and shut-down in :func:`open_resources`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from relaypacs.auth.keys import Keyring
from relaypacs.config import Environment, Settings
from relaypacs.db.engine import create_engine, create_sessionmaker
from relaypacs.operations.metrics import forget_process
from relaypacs.operations.readiness import Readiness, database_check
from relaypacs.pacs.destinations import PacsDestinations, open_destinations
from relaypacs.ratelimit import RateLimiter
from relaypacs.uploads.overlap import configure_overlap
from relaypacs.uploads.store import ChunkStore, open_chunk_store


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    readiness: Readiness
    exit_stack: AsyncExitStack
    # --- domain resources: `name: Type = field(init=False)`, assigned in open_resources ---
    keyring: Keyring = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    chunk_store: ChunkStore = field(init=False)
    pacs: PacsDestinations = field(init=False)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        engine = create_engine(
            settings.resolved_database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        stack.push_async_callback(engine.dispose)
        # A stopping process's live gauges (open SSE streams) leave the multiprocess sum.
        stack.callback(forget_process)
        readiness = Readiness()
        readiness.register("database", database_check(engine))
        resources = Resources(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            readiness=readiness,
            exit_stack=stack,
        )
        # --- domain start-up (register shut-down callbacks on `stack`) ---
        configure_overlap(resources.sessionmaker, settings)
        resources.keyring = await anyio.to_thread.run_sync(
            lambda: Keyring.open(
                settings.resolved_jwt_key_file,
                allow_generate=settings.env is not Environment.production,
                reload_seconds=settings.jwt_key_reload_seconds,
            )
        )
        resources.rate_limiter = RateLimiter(settings.redis_url)
        if settings.redis_url:
            # Without Redis the limiter counts in memory: shown, but never a reason to be unready.
            readiness.register("rate_limiter", resources.rate_limiter.check_storage, required=False)
        resources.chunk_store = await anyio.to_thread.run_sync(open_chunk_store, settings)
        stack.push_async_callback(resources.chunk_store.close)
        # Temporaries of processes killed mid-write (their 2xx was never sent) go now.
        await resources.chunk_store.clean_stale_temporaries(0)
        readiness.register("chunk_store", resources.chunk_store.check)
        resources.pacs = open_destinations(settings)
        stack.push_async_callback(resources.pacs.close)
        for destination in resources.pacs.destinations:
            readiness.register(f"pacs:{destination.name}", destination.ping)
        yield resources
