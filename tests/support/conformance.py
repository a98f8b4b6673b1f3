"""Schemathesis conformance runs against a real `relaypacs serve` process.

Every generated request, valid or not, must get a non-5xx answer whose status code, media type
and body match what `/openapi.json` documents.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from relaypacs.config import Settings
from relaypacs.db.engine import create_engine, create_sessionmaker
from relaypacs.users import service as users_service
from relaypacs.users.models import Role
from tests.support.databases import backend_of, throwaway_database
from tests.support.servers import RelayServer

PASSWORD = "Vq8#relay-Pacs!"

# Not negative_data_rejection: unknown query parameters are ignored (as HTTP APIs do), and the
# Authorization header is always ours, so "request without its required header was accepted"
# would be a false alarm.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# Message framing is the HTTP server's, not the API's: uvicorn answers a malformed
# Content-Length in plain text before the application sees the request, so a generated one would
# test uvicorn, not RelayPACS's OpenAPI.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})


def create_admin(server: RelayServer, username: str) -> None:
    """An admin in the server's (migrated) database, before it starts.

    Made here through the users service, as `relaypacs admin create-user` makes it: that command
    as a process of its own spent two seconds importing the gateway for one INSERT.
    """
    settings = Settings(
        database_url=server.env["RELAYPACS_DATABASE_URL"],
        data_dir=server.data_dir,
        bcrypt_rounds=int(server.env["RELAYPACS_BCRYPT_ROUNDS"]),
    )

    async def create() -> None:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                await users_service.create_user_as_admin(
                    session,
                    settings,
                    None,
                    actor_id=None,
                    username=username,
                    email=f"{username}@example.org",
                    password=PASSWORD,
                    role=Role.admin,
                    must_change_password=False,
                )
                await session.commit()
        finally:
            await engine.dispose()

    # A thread of its own: asyncio.run must not replace the event loop pytest-asyncio set.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()


@contextmanager
def conformance_server(
    database_url: str, data_dir: Path, **settings: str
) -> Iterator[tuple[RelayServer, str]]:
    """A running `relaypacs serve` on a database of its own, and the username of its admin.

    Not the session's database: the session's in-process app runs its job worker on the session
    event loop, which is paused between tests, and a claim caught mid-transaction there holds
    SQLite's write lock. This set-up blocks the main thread on the database and would wait out
    busy_timeout behind it.
    """
    with throwaway_database(backend_of(database_url), data_dir) as url:
        server = RelayServer(
            data_dir=data_dir,
            database_url=url,
            log_path=data_dir / "serve.log",
            log_level="ERROR",
            **settings,
        )
        admin = f"fuzz_admin_{uuid.uuid4().hex[:8]}"
        create_admin(server, admin)
        server.start()
        try:
            yield server, admin
        finally:
            server.stop()


def conformance_failures(
    base_url: str,
    path_regex: str,
    headers_for: Callable[[str], dict[str, str]],
    *,
    max_examples: int,
    min_operations: int,
    after: Callable[[str], None] = lambda path: None,
) -> list[str]:
    """Run every operation matching `path_regex` in both generation modes; one line per failure."""
    # Driven through Hypothesis directly: schemathesis' pytest loader does not run on pytest 9.
    api = schemathesis.openapi.from_url(f"{base_url}/openapi.json").include(path_regex=path_regex)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= min_operations, [op.label for op in operations]
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: Any) -> None:
                for name in [n for n in case.headers or {} if n.lower() in FRAMING_HEADERS]:
                    del case.headers[name]
                case.call_and_validate(headers=headers_for(case.path), checks=CHECKS)
                after(case.path)

            try:
                exercise()
            except Unsatisfiable:
                # Nothing to get wrong: the operation takes no parameters and no body.
                assert mode is GenerationMode.NEGATIVE
            # Collect them all: one report per operation and mode. Schemathesis raises its
            # failures as a FailureGroup, a BaseExceptionGroup that `except Exception` misses.
            except (Exception, FailureGroup) as exc:
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    return failures
