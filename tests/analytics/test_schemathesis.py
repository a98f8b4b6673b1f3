"""Schemathesis against a running gateway's OpenAPI for reports, notifications, analytics and
the admin's uploads: every generated request, valid or not, gets a non-5xx answer that matches
the documented status codes, media types and schemas.

The SSE stream is left out (a valid request never ends); it has tests of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.conformance import PASSWORD, conformance_failures, conformance_server

PATHS = r"^/api/v1/(reports|notifications(?!/stream$)|analytics|admin/uploads)"


@pytest.fixture(scope="module")
def gateway(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis-reports")
    with conformance_server(database_url, data_dir, analytics_rate_limit="100000/minute") as (
        server,
        admin,
    ):
        login = requests.post(
            f"{server.url}/api/v1/auth/login",
            json={"username": admin, "password": PASSWORD},
            timeout=30,
        )
        login.raise_for_status()
        yield server.url, {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.mark.slow
def test_reports_notifications_and_analytics_conform_to_their_openapi(
    gateway: tuple[str, dict[str, str]],
) -> None:
    base_url, headers = gateway
    failures = conformance_failures(
        base_url, PATHS, lambda path: headers, max_examples=10, min_operations=15
    )
    assert not failures, "\n\n".join(failures)
