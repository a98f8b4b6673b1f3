"""Staging a chunk body: a request cancelled while its thread still writes leaves nothing."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relaypacs.uploads import store
from relaypacs.uploads.store import stage_to_file


async def _body(pieces: int, size: int) -> AsyncIterator[bytes]:
    for n in range(pieces):
        yield bytes([n]) * size


def _open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_a_request_cancelled_during_the_fsync_closes_and_removes_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_fsync, release = threading.Event(), threading.Event()
    fsync = os.fsync

    def slow_fsync(descriptor: int) -> None:
        in_fsync.set()
        release.wait(10)
        fsync(descriptor)

    monkeypatch.setattr(store.os, "fsync", slow_fsync)
    path = tmp_path / "chunk.part"
    before = _open_descriptors()
    staging = asyncio.create_task(
        stage_to_file(_body(4, 100_000), path, max_size=1_000_000, fsync=True)
    )
    await asyncio.to_thread(in_fsync.wait, 10)
    staging.cancel()  # the client went away while its last batch is being fsync'd
    await asyncio.sleep(0.05)
    assert path.exists(), "the file must stay while the thread still uses it"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await staging
    for _ in range(200):  # the clean-up finishes in the background once the thread is done
        if not path.exists():
            break
        await asyncio.sleep(0.01)
    assert not path.exists()
    assert _open_descriptors() <= before | {str(n) for n in range(3)}
