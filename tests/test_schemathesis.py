"""Schemathesis against the running gateway's OpenAPI, for the accounts, auth and audit API.

A real `relaypacs serve` process per database backend; every generated request, valid or
not, must get a non-5xx answer that matches the documented status codes, media types and
schemas. A generated logout (of one sign-in or all) or password change makes the next case sign
in again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.conformance import PASSWORD, conformance_failures, conformance_server

PATHS = r"^/(api/v1/(auth|users|admin/users|admin/audit)|\.well-known)/"


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
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    with conformance_server(
        database_url,
        data_dir,
        # The fuzzer sends many wrong sign-ins: the brute-force defences would stop it.
        login_rate_limit="100000/minute",
        register_rate_limit="100000/minute",
        login_lockout_threshold="100000",
    ) as (server, admin):
        user = f"fuzz_user_{uuid.uuid4().hex[:8]}"
        registered = requests.post(
            f"{server.url}/api/v1/auth/register",
            json={"username": user, "email": f"{user}@example.org", "password": PASSWORD},
            timeout=30,
        )
        registered.raise_for_status()
        yield Gateway(server.url, user, admin)


@pytest.mark.slow
def test_accounts_api_conforms_to_its_openapi(gateway: Gateway) -> None:
    failures = conformance_failures(
        gateway.base_url,
        PATHS,
        gateway.headers_for,
        # 10 per operation, mode and database, as in the reports run (25 took 35-46 s a
        # database). The NUL and control-character rules this run first found have
        # deterministic tests of their own (tests/auth/test_errors.py).
        max_examples=10,
        min_operations=15,
        after=gateway.after,
    )
    assert not failures, "\n\n".join(failures)
