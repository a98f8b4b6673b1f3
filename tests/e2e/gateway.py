"""A real `relaypacs serve` process for the browser tests, killable with SIGKILL and restartable
on the same port and data directory (what a crashed server looks like to the PWA)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
RELAYPACS = Path(sys.executable).with_name("relaypacs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Gateway:
    def __init__(
        self, data_dir: Path, port: int, web_dir: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.web_dir = web_dir
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_user(self, username: str, role: str, password: str) -> None:
        """An account of any role, made the way an operator would: `relaypacs admin create-user`
        against this gateway's data directory."""
        result = subprocess.run(
            [str(RELAYPACS), "admin", "create-user", "--username", username,
             "--email", f"{username}@example.org", "--role", role, "--password", password],
            env={
                **os.environ,
                "RELAYPACS_DATA_DIR": str(self.data_dir),
                "RELAYPACS_BCRYPT_ROUNDS": "4",
                **self.extra_env,
            },
            cwd=self.data_dir, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self) -> None:
        env = {
            **os.environ,
            "RELAYPACS_DATA_DIR": str(self.data_dir),
            "RELAYPACS_WEB_DIR": str(self.web_dir),
            "RELAYPACS_BCRYPT_ROUNDS": "4",
            "RELAYPACS_LOG_LEVEL": "WARNING",
            # The browser tests sign in and send chunks far faster than a person would.
            "RELAYPACS_LOGIN_RATE_LIMIT": "1000/minute",
            "RELAYPACS_REGISTER_RATE_LIMIT": "1000/minute",
            "RELAYPACS_UPLOAD_START_RATE_LIMIT": "1000/minute",
            "RELAYPACS_CHUNK_RATE_LIMIT": "100000/minute",
            # The PACS report look-up runs every 5 s instead of every minute: a test waits less.
            "RELAYPACS_JOB_PERIODIC_SECONDS": '{"reports.sync": 5}',
            **self.extra_env,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(RELAYPACS), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relaypacs serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("relaypacs serve did not become healthy within 60 s")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as in a crash or a power cut."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None
