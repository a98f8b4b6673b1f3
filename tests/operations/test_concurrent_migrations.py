"""Every gateway and worker applies the migrations at start: several at once on an empty
PostgreSQL database (a first `docker compose up`, an upgrade) must all come up."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.databases import POSTGRES_ADMIN_DSN, _execute, _in_thread

ROOT = Path(__file__).parents[2]


def test_processes_migrating_an_empty_database_at_once_all_succeed(tmp_path: Path) -> None:
    name = f"relaypacs_test_{uuid.uuid4().hex[:12]}"
    _in_thread(_execute(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    env = {
        **os.environ,
        "RELAYPACS_DATABASE_URL": f"{base}/{name}",
        "RELAYPACS_DATA_DIR": str(tmp_path),
    }
    try:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "relaypacs", "migrate"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(4)
        ]
        outputs = [
            process.communicate(timeout=120)[0].decode(errors="replace") for process in processes
        ]
        for process, output in zip(processes, outputs, strict=True):
            assert process.returncode == 0, output[-2000:]
    finally:
        _in_thread(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
