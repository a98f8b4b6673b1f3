"""How a run reports itself: rich progress bars, quiet (errors only) or JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from relaypacs.client.exit_codes import ExitCode
from relaypacs.client.studies import Skipped, Study
from relaypacs.client.uploader import LeftOut, StudyOutcome


class QuietReporter:
    """Prints nothing but failures (to stderr); the exit code says the rest."""

    def __init__(self) -> None:
        self.console = Console(stderr=True, highlight=False)

    def __enter__(self) -> QuietReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def skipped(self, skipped: list[Skipped]) -> None:
        return None

    def note(self, text: str) -> None:
        return None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold any live display while the user answers a question."""
        yield

    def study_started(self, study: Study, label: str, total: int, done: int) -> None:
        return None

    def study_bytes(self, study: Study, moved: int) -> None:
        return None

    def study_note(self, study: Study, text: str) -> None:
        return None

    def study_finished(self, study: Study, outcome: StudyOutcome) -> None:
        # A file the PACS will not get is a failure even when the rest of its study arrived.
        if outcome.exit_code is not ExitCode.OK or outcome.left_out:
            self.console.print(f"{study.study_instance_uid}: {outcome.message}", markup=False)
            for line in left_out_lines(outcome.left_out, outcome.upload_id):
                self.console.print(line, markup=False)


class JsonReporter(QuietReporter):
    """Collects everything into one JSON document written to stdout at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[StudyOutcome] = []
        self.skipped_files: list[Skipped] = []

    def skipped(self, skipped: list[Skipped]) -> None:
        self.skipped_files.extend(skipped)

    def study_finished(self, study: Study, outcome: StudyOutcome) -> None:
        self.outcomes.append(outcome)

    def document(self, exit_code: ExitCode, extra: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {
            "exit_code": int(exit_code),
            "studies": [o.to_json() for o in self.outcomes],
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped_files],
        }
        body.update(extra or {})
        return json.dumps(body, indent=1)


class RichReporter(QuietReporter):
    """One progress bar per study with rate and ETA, on stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def _print(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.progress.stop()
        try:
            yield
        finally:
            self.progress.start()

    def skipped(self, skipped: list[Skipped]) -> None:
        if skipped:
            self._print(f"skipped {len(skipped)} file(s) that are not DICOM instances:")
            for item in skipped[:50]:
                self._print(f"  {item.name}: {item.reason}")
            if len(skipped) > 50:
                self._print(f"  ... and {len(skipped) - 50} more")

    def note(self, text: str) -> None:
        self._print(text)

    def study_started(self, study: Study, label: str, total: int, done: int) -> None:
        task = self.tasks.get(study.study_instance_uid)
        if task is None:
            description = f"{label} ({len(study.instances)} files)"
            self.tasks[study.study_instance_uid] = self.progress.add_task(
                description, total=total, completed=done
            )
        else:
            self.progress.update(task, total=total, completed=done)

    def study_bytes(self, study: Study, moved: int) -> None:
        task = self.tasks.get(study.study_instance_uid)
        if task is not None:
            self.progress.advance(task, moved)

    def study_note(self, study: Study, text: str) -> None:
        self._print(f"{study_label_short(study)}: {text}")

    def study_finished(self, study: Study, outcome: StudyOutcome) -> None:
        task = self.tasks.get(study.study_instance_uid)
        if task is not None and outcome.exit_code in (ExitCode.OK, ExitCode.FILES_LEFT_OUT):
            self.progress.update(task, completed=study.size)
        where = f" (upload {outcome.upload_id})" if outcome.upload_id else ""
        # "delivered" and "ended rejected: ..." already name the state.
        shown = outcome.state and outcome.state not in outcome.message
        state = f", {outcome.state}" if shown else ""
        self._print(f"{study_label_short(study)}: {outcome.message}{state}{where}")
        for line in left_out_lines(outcome.left_out, outcome.upload_id):
            self._print(line)


def study_label_short(study: Study) -> str:
    return f"study …{study.study_instance_uid[-12:]}"


def left_out_lines(left_out: list[LeftOut], upload_id: str | None) -> list[str]:
    count = len(left_out)
    if not count:
        return []
    lines = [f"  {count} file{'' if count == 1 else 's'} left out:"]
    lines += [f"    {f.name}: {f.reason}" for f in left_out[:50]]
    if count > 50:
        lines.append(f"    ... and {count - 50} more (relaypacs status {upload_id})")
    return lines


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
