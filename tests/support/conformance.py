"""Schemathesis conformance runs against a real `relaypacs serve` process.

Every generated request, valid or not, must get a non-5xx answer whose status code, media type
and body match what `/openapi.json` documents.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
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
    subprocess.run(
        [sys.executable, "-m", "relaypacs", "admin", "create-user", "--username", username,
         "--email", f"{username}@example.org", "--role", "admin", "--password", PASSWORD],
        env=server.env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip


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
