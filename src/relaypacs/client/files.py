"""Private files of the uploader: per-user directories, atomic writes readable by the owner only."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import platformdirs

APP_NAME = "relaypacs"
#: How often a lock another process holds is tried again by a waiter that must not block.
LOCK_RETRY_S = 0.05


def config_dir() -> Path:
    """Where the sign-in lives (``RELAYPACS_CONFIG_DIR`` overrides, e.g. for tests)."""
    override = os.environ.get("RELAYPACS_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def state_dir() -> Path:
    """Where the resume journal lives (``RELAYPACS_STATE_DIR`` overrides)."""
    override = os.environ.get("RELAYPACS_STATE_DIR")
    return Path(override) if override else Path(platformdirs.user_state_dir(APP_NAME))


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # A torn or hand-edited file must not stop an upload; it is rewritten on the next save.
        return {}
    return data if isinstance(data, dict) else {}


def write_json_private(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically with mode 0600: a crash leaves the old or the new file whole."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock between uploader processes of the same user (e.g. `watch` and `upload`)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@asynccontextmanager
async def locked_async(path: Path) -> AsyncIterator[None]:
    """:func:`locked` for a coroutine: while another process holds the lock, the event loop
    goes on (a blocking ``flock`` would freeze every transfer of this process meanwhile).

    Tried without blocking and again after a short sleep, not waited for in a thread: a waiter
    cancelled meanwhile then leaves no thread behind to take the lock and never give it back.
    """
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(LOCK_RETRY_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
