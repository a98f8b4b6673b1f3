"""`relaypacs upload` is run once per study by scripts: the command must not load the server."""

from __future__ import annotations

import ast
import subprocess
import sys

SERVER_ONLY = ("uvicorn", "alembic", "sqlalchemy.orm", "relaypacs.jobs.worker", "sentry_sdk")


def _run(*code: str) -> str:
    # A fresh interpreter: the test process itself has long since imported all of these.
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_importing_the_cli_loads_no_server_module() -> None:
    loaded = _run(
        "import relaypacs.cli, sys",
        f"print(sorted(m for m in {SERVER_ONLY!r} if m in sys.modules))",
    )
    assert ast.literal_eval(loaded.strip()) == []


def test_help_still_lists_every_command() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "relaypacs", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for command in ("login", "upload", "status", "watch", "migrate", "worker", "serve", "admin"):
        assert f" {command} " in top, command
    admin = subprocess.run(
        [sys.executable, "-m", "relaypacs", "admin", "create-user", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # The role choices come from the enum the admin command now imports without SQLAlchemy.
    assert "<clinician|radiographer" in admin
