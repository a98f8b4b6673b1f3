"""What the server commands write (database, data folder) is for the service's own user only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path


def _with_open_umask() -> None:
    os.umask(0o022)  # a shell's usual umask: new files readable by every local user


def test_migrate_makes_a_private_data_folder_and_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    result = subprocess.run(
        [sys.executable, "-m", "relaypacs", "migrate"],
        env={**os.environ, "RELAYPACS_DATA_DIR": str(data_dir), "RELAYPACS_LOG_LEVEL": "WARNING"},
        preexec_fn=_with_open_umask,  # in the child only
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    databases = list(data_dir.glob("*.db"))
    assert databases, sorted(p.name for p in data_dir.iterdir())
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for database in databases:
        assert stat.S_IMODE(database.stat().st_mode) == 0o600, database
