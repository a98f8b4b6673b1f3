"""The admin commands and the first start of `relaypacs serve`, as real processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

pytestmark = pytest.mark.slow


def _env(data_dir: Path, port: int | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # Only what the child needs: no RELAYPACS_* settings leak in from the caller.
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        "RELAYPACS_DATA_DIR": str(data_dir),
        "RELAYPACS_BCRYPT_ROUNDS": "4",
        "RELAYPACS_LOG_LEVEL": "WARNING",
    }
    if port is not None:
        env["RELAYPACS_PORT"] = str(port)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _serve_until_ready(data_dir: Path, port: int) -> tuple[Process, str]:
    """Start `serve`; return the process and what it printed before answering."""
    process = await anyio.open_process(
        [sys.executable, "-m", "relaypacs", "serve"],
        env=_env(data_dir, port),
        stderr=None,
    )
    assert process.stdout is not None
    printed = ""
    with anyio.fail_after(60):
        async for text in TextReceiveStream(process.stdout):
            printed += text
            if f"http://127.0.0.1:{port}" in printed:
                break
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await anyio.sleep(0.1)  # polling a port: there is no event to await
    return process, printed


async def _stop(process: Process) -> None:
    process.send_signal(signal.SIGTERM)
    with anyio.fail_after(30):
        await process.wait()


async def test_first_serve_creates_an_admin_with_a_one_time_password(tmp_path: Path) -> None:
    port = _free_port()
    process, printed = await _serve_until_ready(tmp_path, port)
    try:
        match = re.search(r"username: (\S+)\s+password: (\S+)", printed)
        assert match, printed
        username, password = match.groups()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            login = await http.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
            assert login.status_code == 200, login.text
            tokens = login.json()
            assert tokens["must_change_password"] is True
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            assert (await http.get("/api/v1/auth/me", headers=headers)).json()["role"] == "admin"
    finally:
        await _stop(process)

    # Printed once: the next start finds an admin and says nothing about passwords.
    process, printed = await _serve_until_ready(tmp_path, port)
    await _stop(process)
    assert "password" not in printed


async def test_create_user_command_makes_any_role_and_refuses_duplicates(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "relaypacs", "admin", "create-user"]
    made = await anyio.run_process(
        [*command, "--username", "Dr.Who", "--email", "who@example.org", "--role", "radiologist"],
        env=_env(tmp_path),
        check=False,
    )
    assert made.returncode == 0, made.stderr
    output = made.stdout.decode()
    assert "created radiologist Dr.Who" in output
    generated = re.search(r"one-time password: (\S+)", output)
    assert generated

    again = await anyio.run_process(
        [*command, "--username", "dr.who", "--email", "other@example.org"],
        env=_env(tmp_path),
        check=False,
    )
    assert again.returncode == 1
    assert "username_taken" in again.stderr.decode()

    weak = await anyio.run_process(
        [*command, "--username", "weakling", "--email", "w@example.org", "--password", "weak"],
        env=_env(tmp_path),
        check=False,
    )
    assert weak.returncode == 1
    assert "weak_password" in weak.stderr.decode()
