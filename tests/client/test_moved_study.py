"""Our own unfinished upload is not "a study the server already has": when its files come back
at another path (a USB stick mounted elsewhere, a copy) they have another fingerprint, so no
journal entry names that session for them, and the gateway refuses the new start as a duplicate
of it. The uploader cancels the session it knows to be its own and sends the study again; so it
does with a session whose journal entry does not match the files.

The real CLI and a real gateway behind a delay proxy, so the first run can be killed mid-upload.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from tests.client.dicom_files import GeneratedStudy, write_study
from tests.client.test_upload_command import (
    assert_gateway_holds,
    settled_bytes_received,
    wait_for_journaled_upload,
    wait_until,
)
from tests.resilience.gateway import CliUser

pytestmark = pytest.mark.slow

CHUNK = 512 * 1024


def _killed_half_way(proxied: CliUser, cli: CliUser, folder: Path, study: GeneratedStudy) -> str:
    """The id of the session a run killed mid-upload of ``folder`` left receiving."""
    first_run = proxied.spawn("upload", str(folder), "--server", proxied.server,
                              "--parallel", "1", "--chunk-size", str(CHUNK))  # fmt: skip
    upload_id = wait_for_journaled_upload(cli.state_dir / "journal.json")
    wait_until(lambda: cli.api("GET", f"/uploads/{upload_id}").json()["bytes_received"] > 0)
    first_run.send_signal(signal.SIGKILL)
    first_run.wait(30)
    assert 0 < settled_bytes_received(cli, upload_id) < study.size
    return upload_id


def _completed_upload(cli: CliUser) -> str:
    uploads = json.loads((cli.state_dir / "journal.json").read_text())["uploads"].values()
    (upload_id,) = [u["upload_id"] for u in uploads if u["completed"]]
    return str(upload_id)


def test_an_unfinished_upload_of_files_now_elsewhere_is_cancelled_and_the_study_sent_again(
    cli: CliUser, slow_link: str, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "usb", instances=3, pixel_bytes=1_000_000)
    proxied = cli.alias(slow_link)
    upload_id = _killed_half_way(proxied, cli, tmp_path / "usb", study)
    # The same files at another path: another fingerprint, so the journal names no session.
    shutil.copytree(tmp_path / "usb", tmp_path / "mounted-elsewhere")

    # Not at a terminal (stdin is not one): a duplicate could not be confirmed.
    result = proxied.run("upload", str(tmp_path / "mounted-elsewhere"), "--server", slow_link,
                         stdin="")  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert f"cancelled our unfinished upload {upload_id}" in result.stderr
    assert cli.api("GET", f"/uploads/{upload_id}").json()["state"] == "cancelled"
    new_id = _completed_upload(cli)
    assert new_id != upload_id
    assert_gateway_holds(cli, new_id, study, cli.server)


def test_a_session_whose_journal_entry_does_not_match_the_files_is_cancelled(
    cli: CliUser, slow_link: str, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=3, pixel_bytes=1_000_000)
    proxied = cli.alias(slow_link)
    upload_id = _killed_half_way(proxied, cli, tmp_path / "in", study)
    journal = cli.state_dir / "journal.json"
    data = json.loads(journal.read_text())
    (entry,) = data["uploads"].values()
    entry["files"][0]["source"] = "/elsewhere/another-file|1|1"  # e.g. edited by hand
    journal.write_text(json.dumps(data))

    result = proxied.run("upload", str(tmp_path / "in"), "--server", slow_link, stdin="")

    assert result.returncode == 0, result.stderr
    assert f"upload {upload_id} was cancelled" in result.stderr
    assert cli.api("GET", f"/uploads/{upload_id}").json()["state"] == "cancelled"
    new_id = _completed_upload(cli)
    assert new_id != upload_id
    assert_gateway_holds(cli, new_id, study, cli.server)
