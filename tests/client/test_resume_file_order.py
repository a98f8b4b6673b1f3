"""A resumed upload sends each file's missing chunks from that file, whatever the order the files
are given in: the same files in another order are the same study, and resume the same session.

The real CLI and a real gateway behind a delay proxy, so the first run can be killed mid-upload.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.client.dicom_files import GeneratedStudy, write_study
from tests.client.test_upload_command import (
    settled_bytes_received,
    upload_json,
    wait_for_journaled_upload,
    wait_until,
)
from tests.resilience.gateway import CliUser, sha256_of

pytestmark = pytest.mark.slow

CHUNK = 512 * 1024
# Past receiving, whatever the validation made of the assembled files.
ASSEMBLED_STATES = {"validated", "queued", "forwarding", "delivered", "rejected", "failed",
                    "partially_delivered"}  # fmt: skip


def _two_files_of_one_size(folder: Path) -> GeneratedStudy:
    """Two different instances of one study, exactly as long as each other: a chunk of one is
    then a chunk the gateway takes for the other (only the count of bytes is checked)."""
    for _ in range(50):
        study = write_study(folder, instances=2, pixel_bytes=1_200_000)
        first, second = study.files
        if first.stat().st_size == second.stat().st_size:
            return study
        # The UIDs are random and so is their length, which decides the files' lengths.
        shutil.rmtree(folder)
    raise AssertionError("no two instances of one size")


def _stored_by_name(status: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["sha256"] for f in status["files"]}


def test_a_resume_given_the_files_in_another_order_sends_each_file_its_own_chunks(
    cli: CliUser, slow_link: str, tmp_path: Path
) -> None:
    study = _two_files_of_one_size(tmp_path / "in")
    first, second = study.files
    assert first.read_bytes() != second.read_bytes()
    via_proxy = cli.alias(slow_link)
    first_run = via_proxy.spawn("upload", str(first), str(second), "--server", slow_link,
                                "--parallel", "1", "--chunk-size", str(CHUNK))  # fmt: skip
    upload_id = wait_for_journaled_upload(cli.state_dir / "journal.json")
    # The first file whole and the second begun: what the second still misses must come from it.
    wait_until(
        lambda: (
            cli.api("GET", f"/uploads/{upload_id}").json()["bytes_received"]
            >= first.stat().st_size + CHUNK
        )
    )
    first_run.send_signal(signal.SIGKILL)
    first_run.wait(30)
    received = settled_bytes_received(cli, upload_id)
    assert 0 < received < study.size

    code, report = upload_json(via_proxy, str(second), str(first))

    assert code == 0, report
    (outcome,) = report["studies"]
    assert outcome["upload_id"] == upload_id
    assert outcome["resumed"] is True
    assert report["bytes_sent"] == study.size - received
    status = cli.wait_for_state(upload_id, ASSEMBLED_STATES)
    # Every byte stored for each file is that file's: no chunk was read from the other one.
    assert _stored_by_name(status) == {p.name: sha256_of(p) for p in study.files}
    assert status["state"] != "rejected", status
