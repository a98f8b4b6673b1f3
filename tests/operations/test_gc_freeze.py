"""The server process keeps what start-up built out of the garbage collector's full passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import gc
from starlette.testclient import TestClient
from relaypacs.asgi import app
before = gc.get_freeze_count()
with TestClient(app):
    print("FROZEN", before, gc.get_freeze_count())
"""


def test_the_served_app_freezes_what_start_up_built(tmp_path: Path) -> None:
    # Its own interpreter: freezing is process-wide, and tests build many apps in one process.
    env = {**os.environ, "RELAYPACS_DATA_DIR": str(tmp_path), "RELAYPACS_LOG_LEVEL": "WARNING"}
    env.pop("RELAYPACS_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("FROZEN "))
    before, after = (int(n) for n in line.split()[1:])
    assert before == 0
    assert after > 50_000
