"""`relaypacs watch FOLDER`: upload each study once its files have stopped changing.

A file is *settled* when its size and modification time have not changed for ``settle`` seconds.
A study is sent when all its files are settled and no other file in the same directories is
still changing (a study being copied in file by file is never sent half-way). Files already sent
in a completed upload (per the journal) are never sent again; files added later to a study that
was already sent go as a new upload of that study.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from relaypacs.client.api import GaveUp
from relaypacs.client.exit_codes import ExitCode
from relaypacs.client.journal import Journal
from relaypacs.client.progress import QuietReporter
from relaypacs.client.run import Connection, upload_studies
from relaypacs.client.studies import (
    Instance,
    Skipped,
    Study,
    collect_sources,
    group_instances,
    read_instances,
)
from relaypacs.client.uploader import UploadOptions


@dataclass
class FolderState:
    """What the watcher has seen of each file: its last (size, mtime) and when that changed."""

    seen: dict[Path, tuple[int, int]] = field(default_factory=dict)
    changed_at: dict[Path, float] = field(default_factory=dict)
    headers: dict[str, Instance | Skipped] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)

    def observe(self, folder: Path, now: float) -> tuple[list[Path], set[Path]]:
        """Returns the settled files and the directories that hold a file still changing."""
        current: dict[Path, tuple[int, int]] = {}
        for path in folder.rglob("*"):
            try:
                if path.is_file():
                    stat = path.stat()
                    current[path] = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                continue  # removed while we looked
        for path, signature in current.items():
            if self.seen.get(path) != signature:
                self.changed_at[path] = now
        for path in set(self.seen) - set(current):
            self.changed_at.pop(path, None)
        self.seen = current
        return list(current), {p.parent for p in current}

    def split(self, settle: float, now: float) -> tuple[list[Path], set[Path]]:
        settled = [p for p in self.seen if now - self.changed_at.get(p, now) >= settle]
        busy_dirs = {p.parent for p in self.seen if now - self.changed_at.get(p, now) < settle}
        return sorted(settled), busy_dirs


def ready_studies(
    state: FolderState, folder: Path, settle: float, uploaded: set[str], threads: int = 8
) -> tuple[list[Study], set[str], list[Skipped]]:
    """Studies whose files have settled and were not sent yet, and which of them continue one."""
    now = time.monotonic()
    state.observe(folder, now)
    settled, busy_dirs = state.split(settle, now)
    sources, skipped = collect_sources(settled, root=folder)
    fresh = [s for s in sources if s.fingerprint not in state.headers]
    for source, result in zip(fresh, read_instances(fresh, threads), strict=True):
        state.headers[source.fingerprint] = result
    new_skips = [s for s in skipped if s.name not in state.reported]
    results: list[Instance | Skipped] = []
    for source in sources:
        result = state.headers[source.fingerprint]
        if isinstance(result, Skipped):
            if source.fingerprint not in state.reported:
                state.reported.add(source.fingerprint)
                new_skips.append(result)
            continue
        if source.fingerprint in uploaded or source.fingerprint in state.refused:
            continue
        results.append(result)
    state.reported.update(s.name for s in skipped)
    grouped = group_instances(results, [])
    ready: list[Study] = []
    continued: set[str] = set()
    uploaded_studies = {
        r.study_instance_uid
        for fp, r in state.headers.items()
        if isinstance(r, Instance) and fp in uploaded
    }
    for study in grouped.studies:
        if any(i.source.path.parent in busy_dirs for i in study.instances):
            continue
        ready.append(study)
        if study.study_instance_uid in uploaded_studies:
            continued.add(study.study_instance_uid)
    return ready, continued, new_skips


def _continuation(force: bool, continued: set[str]) -> Callable[[Study], bool]:
    """New files of a study already sent are a continuation, not a duplicate."""
    return lambda study: force or study.study_instance_uid in continued


async def watch_folder(
    connection: Connection,
    folder: Path,
    options: UploadOptions,
    reporter: QuietReporter,
    settle: float = 30.0,
    interval: float = 5.0,
) -> ExitCode:
    journal = Journal()
    state = FolderState()
    reporter.note(f"watching {folder} (a study is sent {settle:.0f} s after its files settle)")
    while True:
        uploaded = await asyncio.to_thread(journal.uploaded_sources, connection.server)
        ready, continued, skipped = await asyncio.to_thread(
            ready_studies, state, folder, settle, uploaded
        )
        reporter.skipped(skipped)
        if ready:
            try:
                outcomes, _ = await upload_studies(
                    connection,
                    ready,
                    options,
                    reporter,
                    force_for=_continuation(options.force, continued),
                )
            except GaveUp as error:
                reporter.note(f"server unreachable ({error}); will try again")
                outcomes = []
            for study, outcome in zip(ready, outcomes, strict=False):
                if outcome.exit_code in (ExitCode.REFUSED, ExitCode.DUPLICATE_SKIPPED):
                    # Do not retry the same refused files on every poll; a change resets this.
                    state.refused.update(i.source.fingerprint for i in study.instances)
        await asyncio.sleep(interval)
