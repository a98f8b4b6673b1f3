"""A real `relaypacs serve` process (optionally inside a network namespace) and a real CLI user.

The gateway runs from the working tree's virtualenv with its own data directory (SQLite and the
filesystem chunk store, the in-process job worker), so it can be killed with SIGKILL and started
again on the same data like a production box losing power.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.accounts import DEFAULT_PASSWORD

VENV_BIN = Path(sys.executable).parent
RELAYPACS = str(VENV_BIN / "relaypacs")
START_TIMEOUT_S = 90.0


def _listen_to_ctrl_c() -> None:
    # A non-interactive shell starts background commands (`pytest … &`) with SIGINT ignored, and
    # an ignored signal stays ignored across fork and exec: the CLI would never see the tests'
    # Ctrl-C. Runs in the child between fork and exec; signal() is safe there.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYPACS_")}
    env.update(extra)
    return env


def free_port_except(taken: set[int]) -> int:
    port = free_port()
    while port in taken:
        port = free_port()
    return port


@dataclass
class Gateway:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    namespace: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, wait: bool = True) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [RELAYPACS, "serve", "--host", self.host, "--port", str(self.port)]
        if self.namespace:
            argv = ["ip", "netns", "exec", self.namespace, *argv]
        env = _clean_env(
            RELAYPACS_DATA_DIR=str(self.data_dir),
            RELAYPACS_BCRYPT_ROUNDS="4",
            RELAYPACS_LOG_LEVEL="WARNING",
            **self.extra_env,
        )
        self.starts += 1
        log = (self.data_dir / f"serve-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling a process that has no readiness event to await
        raise TimeoutError(f"gateway not ready after {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, like a power cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class CliUser:
    """A registered account and the uploader's own config and state dirs for it."""

    server: str
    config_dir: Path
    state_dir: Path
    username: str = field(default_factory=lambda: f"tech_{uuid.uuid4().hex[:10]}")
    password: str = DEFAULT_PASSWORD

    def with_state_dir(self, state_dir: Path) -> CliUser:
        """The same sign-in with its own journal (the login limit allows few sign-ins a minute)."""
        return CliUser(self.server, self.config_dir, state_dir, self.username, self.password)

    def env(self, **extra: str) -> dict[str, str]:
        return _clean_env(
            RELAYPACS_CONFIG_DIR=str(self.config_dir),
            RELAYPACS_STATE_DIR=str(self.state_dir),
            COLUMNS="120",
            **extra,
        )

    def register(self, via: str | None = None) -> None:
        response = httpx.post(
            f"{via or self.server}/api/v1/auth/register",
            json={
                "username": self.username,
                "email": f"{self.username}@example.org",
                "password": self.password,
            },
            timeout=60,
        )
        response.raise_for_status()
        login = self.run("login", "--server", self.server, "-u", self.username,
                         "--password-stdin", stdin=self.password + "\n")  # fmt: skip
        assert login.returncode == 0, login.stderr

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RELAYPACS, *args],
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """The command running as if started at a terminal, where Ctrl-C (SIGINT) reaches it."""
        return subprocess.Popen(
            [RELAYPACS, *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_listen_to_ctrl_c,
        )

    def credentials(self) -> dict[str, Any]:
        return dict(json.loads((self.config_dir / "credentials.json").read_text()))

    def access_token(self) -> str:
        return str(self.credentials()["servers"][self.server]["access_token"])

    def alias(self, server: str) -> CliUser:
        """The same access token for another URL of the same gateway (e.g. through a proxy).

        The refresh token is not copied: two copies of a single-use token would revoke the family.
        """
        data = self.credentials()
        entry = dict(data["servers"][self.server])
        entry["refresh_token"] = "not-copied"
        data["servers"][server] = entry
        (self.config_dir / "credentials.json").write_text(json.dumps(data))
        return CliUser(server, self.config_dir, self.state_dir, self.username, self.password)

    def api(self, method: str, path: str, via: str | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{via or self.server}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.access_token()}"},
            timeout=60,
            **kwargs,
        )

    def wait_for_state(
        self, upload_id: str, states: set[str], timeout: float = 120, via: str | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                response = self.api("GET", f"/uploads/{upload_id}", via=via)
                status = response.json()
                if status.get("state") in states:
                    return status
            except httpx.HTTPError:
                pass
            time.sleep(0.5)  # the gateway's jobs have no event we can await from outside
        raise TimeoutError(f"upload {upload_id} still {status.get('state')} after {timeout} s")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
