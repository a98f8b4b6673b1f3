"""A real gateway process for the uploader's black-box tests, and one signed-in CLI user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.resilience.gateway import CliUser, Gateway
from tests.resilience.proxy import delay_proxy


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    process = Gateway(tmp_path_factory.mktemp("gateway"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def signed_in(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> CliUser:
    home = tmp_path_factory.mktemp("cli-user")
    user = CliUser(gateway.url, home / "config", home / "state")
    user.register()
    return user


@pytest.fixture
def cli(signed_in: CliUser, tmp_path: Path) -> CliUser:
    """The session's user with a journal of its own."""
    return signed_in.with_state_dir(tmp_path / "state")


@pytest.fixture
def slow_link(gateway: Gateway) -> Iterator[str]:
    """The gateway behind 500 ms of round trip, so a test can act in the middle of an upload."""
    with delay_proxy(("127.0.0.1", gateway.port), one_way_delay=0.25) as port:
        yield f"http://127.0.0.1:{port}"
