"""Schemathesis against the running gateway's OpenAPI, for the accounts, auth and audit API.

A real `relaypacs serve` process per database backend; every generated request, valid or
not, must get a non-5xx answer that matches the documented status codes, media types and
schemas. A generated logout (of one sign-in or all) or password change makes the next case sign
in again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

PATHS = r"^/(api/v1/(auth|users|admin/users|admin/audit)|\.well-known)/"
PASSWORD = "Vq8#relay-Pacs!"
MAX_EXAMPLES = 25


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Gateway:
    def __init__(self, base_url: str, user: str, admin: str) -> None:
        self.base_url = base_url
        self.user = user
        self.admin = admin
        self._headers: dict[str, dict[str, str]] = {}

    def headers_for(self, path: str) -> dict[str, str]:
        username = self.admin if path.startswith("/api/v1/admin/") else self.user
        if username not in self._headers:
            response = requests.post(
                f"{self.base_url}/api/v1/auth/login",
                json={"username": username, "password": PASSWORD},
                timeout=30,
            )
            response.raise_for_status()
            token = response.json()["access_token"]
            self._headers[username] = {"Authorization": f"Bearer {token}"}
        return self._headers[username]

    def after(self, path: str) -> None:
        # A generated logout or password change ends the sign-in: sign in again next time.
        if path.endswith(("/auth/logout", "/auth/logout-all", "/auth/password")):
            self._headers.clear()


@pytest.fixture(scope="session")
def gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("schemathesis")
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # Only what the child needs: no RELAYPACS_* settings leak in from the caller.
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        "RELAYPACS_DATA_DIR": str(data_dir),
        "RELAYPACS_DATABASE_URL": database_url,
        "RELAYPACS_PORT": str(port),
        "RELAYPACS_BCRYPT_ROUNDS": "4",
        "RELAYPACS_LOG_LEVEL": "ERROR",
        # The fuzzer sends many wrong sign-ins: the brute-force defences would stop it.
        "RELAYPACS_LOGIN_RATE_LIMIT": "100000/minute",
        "RELAYPACS_LOGIN_LOCKOUT_THRESHOLD": "100000",
    }
    admin = f"fuzz_admin_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [sys.executable, "-m", "relaypacs", "admin", "create-user", "--username", admin,
         "--email", f"{admin}@example.org", "--role", "admin", "--password", PASSWORD],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "relaypacs", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)  # polling a port: there is no event to await
        user = f"fuzz_user_{uuid.uuid4().hex[:8]}"
        registered = requests.post(
            f"{base_url}/api/v1/auth/register",
            json={"username": user, "email": f"{user}@example.org", "password": PASSWORD},
            timeout=30,
        )
        registered.raise_for_status()
        yield Gateway(base_url, user, admin)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_accounts_api_conforms_to_its_openapi(gateway: Gateway) -> None:
    # Driven through Hypothesis directly: schemathesis' pytest loader does not run on pytest 9.
    api = schemathesis.openapi.from_url(f"{gateway.base_url}/openapi.json").include(
        path_regex=PATHS
    )
    failures: list[str] = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: Any) -> None:
                case.call_and_validate(
                    headers=gateway.headers_for(case.path),
                    # Not negative_data_rejection: unknown query parameters are ignored (as
                    # HTTP APIs do), and the Authorization header is always ours, so "request
                    # without its required header was accepted" would be a false alarm.
                    checks=[
                        not_a_server_error,
                        status_code_conformance,
                        content_type_conformance,
                        response_schema_conformance,
                    ],
                )
                gateway.after(case.path)

            try:
                exercise()
            except Unsatisfiable:
                # Nothing to get wrong: the operation takes no parameters and no body.
                assert mode is GenerationMode.NEGATIVE
            except Exception as exc:  # collect them all: one report per operation and mode
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
