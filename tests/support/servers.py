"""Real `relaypacs serve` processes for tests: free ports, env settings, SIGKILL, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.s3 import S3_ENV, free_port


class RelayServer:
    """One gateway process. ``start()`` waits until it answers ``/healthz``."""

    def __init__(self, *, data_dir: Path, database_url: str, log_path: Path, **settings: str):
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.env = {
            **os.environ,
            **S3_ENV,
            "RELAYPACS_DATA_DIR": str(data_dir),
            "RELAYPACS_DATABASE_URL": database_url,
            "RELAYPACS_BCRYPT_ROUNDS": "4",
            "RELAYPACS_LOG_LEVEL": "WARNING",
            "RELAYPACS_RUN_WORKER_IN_PROCESS": "true",
            **{f"RELAYPACS_{key.upper()}": value for key, value in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relaypacs",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {self.log_path}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a power cut of the process."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
