"""A file rewritten while it is being uploaded stops its study: the session is never completed from
a mix of the old and the new bytes, and it is cancelled, so the next run sends the files as they
are now instead of being refused as a duplicate of it.

The uploader runs in this process (so a hook can rewrite the file at a chosen moment) against a
real gateway process; nothing of the uploader or the gateway is replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relaypacs.client.exit_codes import ExitCode
from relaypacs.client.journal import Journal
from relaypacs.client.progress import QuietReporter
from relaypacs.client.run import Connection, upload_paths
from relaypacs.client.studies import Study
from relaypacs.client.uploader import UploadOptions
from tests.client.dicom_files import write_study
from tests.client.test_upload_command import DONE_STATES
from tests.resilience.gateway import CliUser, sha256_of

pytestmark = pytest.mark.slow

CHUNK = 512 * 1024


class RewriteOnceMoving(QuietReporter):
    """Rewrites ``path`` in place (same size, other pixels) as soon as its first bytes move."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.rewritten = False

    def study_bytes(self, study: Study, moved: int) -> None:
        if self.rewritten or moved <= 0:
            return
        self.rewritten = True
        data = bytearray(self.path.read_bytes())
        data[-200_000:] = os.urandom(200_000)  # the header stays: still the same instance
        before = self.path.stat()
        self.path.write_bytes(bytes(data))
        # An edit a moment after the scan may fall in the same tick of a coarse file clock;
        # a real one comes seconds later. Make sure the modification time says it changed.
        os.utime(self.path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def _one_image_study(
    cli: CliUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Connection, UploadOptions]:
    """A study of one three-chunk image in ``tmp_path/in``, sent one chunk at a time (the
    second chunk is read only after the rewrite), as ``cli``'s user."""
    monkeypatch.setenv("RELAYPACS_CONFIG_DIR", str(cli.config_dir))
    monkeypatch.setenv("RELAYPACS_STATE_DIR", str(cli.state_dir))
    study = write_study(tmp_path / "in", instances=1, pixel_bytes=1_500_000)
    (image,) = study.files
    return image, Connection(cli.server, parallel=1), UploadOptions(parallel=1, chunk_size=CHUNK)


async def test_a_file_rewritten_during_its_upload_ends_the_run_and_nothing_mixed_is_completed(
    cli: CliUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, connection, options = _one_image_study(cli, tmp_path, monkeypatch)
    reporter = RewriteOnceMoving(image)

    run = await upload_paths(connection, [tmp_path / "in"], options, reporter)

    assert reporter.rewritten
    # The code exit_codes.py and --help give an unusable local file.
    assert run.exit_code is ExitCode.ERROR
    (outcome,) = run.outcomes
    assert image.name in outcome.message
    assert "changed" in outcome.message
    assert outcome.upload_id is not None
    assert "cancelled" in outcome.message
    status = cli.api("GET", f"/uploads/{outcome.upload_id}").json()
    # Never completed: only the chunk read before the rewrite had reached it.
    assert status["state"] == "cancelled"
    assert status["bytes_received"] == CHUNK
    assert "assembling" not in {e["state"] for e in status["timeline"]}


async def test_after_a_file_changed_mid_upload_the_next_run_sends_the_changed_files(
    cli: CliUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, connection, options = _one_image_study(cli, tmp_path, monkeypatch)
    stopped = await upload_paths(connection, [tmp_path / "in"], options, RewriteOnceMoving(image))
    assert stopped.exit_code is ExitCode.ERROR
    (abandoned,) = stopped.outcomes
    # By the run that abandoned it, not left for the next one to find.
    assert cli.api("GET", f"/uploads/{abandoned.upload_id}").json()["state"] == "cancelled"
    assert abandoned.upload_id is not None
    assert Journal(cli.state_dir).find_upload(abandoned.upload_id) is None

    # As `watch` or a script would: no --force, and no terminal to ask about a duplicate.
    run = await upload_paths(connection, [tmp_path / "in"], options, QuietReporter())

    (outcome,) = run.outcomes
    assert run.exit_code is ExitCode.OK, outcome.message
    assert outcome.upload_id is not None
    assert outcome.upload_id != abandoned.upload_id
    assert outcome.replaced_upload_id is None  # no duplicate refusal to get past
    status = cli.wait_for_state(outcome.upload_id, DONE_STATES)
    assert [f["sha256"] for f in status["files"]] == [sha256_of(image)]
