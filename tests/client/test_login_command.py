"""`relaypacs login` is interactive: it must answer promptly and never hammer a locked account."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.resilience.gateway import CliUser, Gateway, free_port

pytestmark = pytest.mark.slow

LOCKOUT_S = 120


@pytest.fixture(scope="module")
def strict_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway of its own that locks an account after one wrong password: failed sign-ins
    against the shared one would use up the login rate limit its other tests rely on."""
    process = Gateway(
        tmp_path_factory.mktemp("strict-gateway"),
        extra_env={
            "RELAYPACS_LOGIN_LOCKOUT_THRESHOLD": "1",
            "RELAYPACS_LOGIN_LOCKOUT_SECONDS": str(LOCKOUT_S),
            # Only the account lock answers 429 here, not the per-address limit.
            "RELAYPACS_LOGIN_RATE_LIMIT": "100/minute",
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _login(user: CliUser, password: str, timeout: float = 30) -> tuple[int, str, float]:
    started = time.monotonic()
    result = user.run("login", "--server", user.server, "-u", user.username,
                      "--password-stdin", stdin=password + "\n", timeout=timeout)  # fmt: skip
    return result.returncode, result.stderr, time.monotonic() - started


def test_a_wrong_password_does_not_tell_the_user_to_run_login(
    strict_gateway: Gateway, tmp_path: Path
) -> None:
    user = CliUser(strict_gateway.url, tmp_path / "config", tmp_path / "state")
    user.register()

    code, stderr, _ = _login(user, "wrong password")

    assert code == 4, stderr
    assert "Wrong username or password" in stderr
    assert "relaypacs login" not in stderr  # the user is running it right now


def test_a_locked_account_is_reported_at_once_and_the_password_not_sent_again(
    strict_gateway: Gateway, tmp_path: Path
) -> None:
    user = CliUser(strict_gateway.url, tmp_path / "config", tmp_path / "state")
    user.register()
    _login(user, "wrong password")  # locks the account (threshold 1)

    # Locked for LOCKOUT_S: waiting that out and re-sending would keep it locked (and would run
    # past this timeout, failing the test).
    code, stderr, seconds = _login(user, "wrong password")

    assert code != 0
    match = re.search(r"too many sign-in attempts; try again in (\d+) s", stderr)
    assert match is not None, stderr
    assert 0 < int(match.group(1)) <= LOCKOUT_S
    assert seconds < 15


def test_an_unreachable_server_is_reported_within_a_minute(tmp_path: Path) -> None:
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    user = CliUser(server, tmp_path / "config", tmp_path / "state", username="tech1")

    # Without a short limit of its own, login keeps retrying for an hour: the timeout fails it.
    code, stderr, seconds = _login(user, "whatever", timeout=90)

    assert code == 7, stderr  # "gave up": the documented code for a server that never answered
    assert f"cannot reach {server}" in stderr
    assert seconds < 60
