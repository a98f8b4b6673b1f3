"""A study delivered without some of its files: `--wait` exits 10 and names each file, why.

A truncated instance still has a readable header, so the uploader sends it; the gateway's
validation leaves it out and delivers the rest. A DICOMDIR is an index, not an instance: the
gateway skips it, and that is no loss.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.data import get_testdata_files

from tests.client.dicom_files import write_study
from tests.resilience.gateway import CliUser
from tests.support.uploads import md5_b64

pytestmark = pytest.mark.slow

FILES_LEFT_OUT = 10
NOT_DELIVERED = 8


def _truncate_pixels(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-50_000])


def _dicomdir() -> bytes:
    # Local files only: get_testdata_file() would try to download missing ones.
    return Path(min(p for p in get_testdata_files() if Path(p).name == "DICOMDIR")).read_bytes()


def _problem_of(status: dict[str, Any], name: str) -> dict[str, Any]:
    (file,) = [f for f in status["files"] if f["name"] == name]
    (problem,) = file["problems"]
    assert isinstance(problem, dict)
    return problem


def _upload_as_the_pwa(cli: CliUser, files: dict[str, bytes]) -> str:
    """Files sent as they are, as the PWA sends them (the uploader never sends a DICOMDIR)."""
    started = cli.api(
        "POST",
        "/uploads",
        json={
            "study": {
                "patient_name": f"TEST^PWA{uuid.uuid4().hex[:8]}",
                "study_date": "2026-01-02",
                "modality": "CT",
            },
            "files": [{"name": name, "size": len(data)} for name, data in files.items()],
        },
    )
    assert started.status_code == 201, started.text
    upload = started.json()
    chunk_size = upload["chunk_size"]
    token = {"X-Upload-Token": upload["upload_token"]}
    base = f"{cli.server}/api/v1/uploads/{upload['upload_id']}"
    for declared, data in zip(upload["files"], files.values(), strict=True):
        for index in range(declared["chunk_count"]):
            chunk = data[index * chunk_size : (index + 1) * chunk_size]
            stored = httpx.put(
                f"{base}/files/{declared['file_id']}/chunks/{index}",
                content=chunk,
                headers={**token, "Content-MD5": md5_b64(chunk)},
                timeout=60,
            )
            assert stored.status_code == 201, stored.text
    completed = httpx.post(f"{base}/complete", headers=token, timeout=60)
    assert completed.status_code == 202, completed.text
    return str(upload["upload_id"])


def test_upload_wait_exits_10_when_the_study_was_delivered_without_a_file(
    cli: CliUser, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=2, pixel_bytes=100_000)
    broken = study.files[1]
    _truncate_pixels(broken)
    args = ["upload", str(tmp_path / "in"), "--server", cli.server, "--wait",
            "--wait-timeout", "120"]  # fmt: skip

    as_json = cli.run(*args, "--json")

    report = json.loads(as_json.stdout)
    (outcome,) = report["studies"]
    upload_id = outcome["upload_id"]
    status = cli.api("GET", f"/uploads/{upload_id}").json()
    assert status["state"] == "delivered"
    problem = _problem_of(status, broken.name)
    assert as_json.returncode == FILES_LEFT_OUT, as_json.stderr
    assert report["exit_code"] == FILES_LEFT_OUT
    assert outcome["exit_code"] == FILES_LEFT_OUT
    assert outcome["message"] == "delivered, but 1 file left out"
    assert outcome["left_out"] == [{"name": broken.name, "reason": problem["reason"]}]

    # Run again, the journal knows the study was sent: the wait says the same, even --quiet.
    quiet = cli.run(*args, "--quiet")
    assert quiet.returncode == FILES_LEFT_OUT, quiet.stderr
    assert f"{broken.name}: {problem['reason']}" in quiet.stderr

    followed = cli.run("status", upload_id, "--server", cli.server, "--wait")
    assert followed.returncode == FILES_LEFT_OUT, followed.stderr
    assert "delivered, but 1 file left out" in followed.stdout
    assert f"    {broken.name}: {problem['reason']}" in followed.stdout
    shown = cli.run("status", upload_id, "--server", cli.server)
    assert shown.returncode == FILES_LEFT_OUT, shown.stderr


def test_status_wait_says_why_a_study_was_rejected_and_which_files(
    cli: CliUser, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=1, pixel_bytes=100_000)
    (image,) = study.files
    _truncate_pixels(image)
    sent = cli.run("upload", str(tmp_path / "in"), "--server", cli.server, "--json")
    upload_id = json.loads(sent.stdout)["studies"][0]["upload_id"]

    followed = cli.run("status", upload_id, "--server", cli.server, "--wait",
                       "--wait-timeout", "120")  # fmt: skip

    status = cli.api("GET", f"/uploads/{upload_id}").json()
    assert status["state"] == "rejected"
    assert followed.returncode == NOT_DELIVERED, followed.stderr
    assert f"ended rejected: {status['failure_reason']}" in followed.stdout
    assert "1 file left out:" in followed.stdout
    assert f"    {image.name}: {_problem_of(status, image.name)['reason']}" in followed.stdout


def test_a_dicomdir_is_not_a_file_left_out(cli: CliUser, tmp_path: Path) -> None:
    first = write_study(tmp_path / "a", instances=2, pixel_bytes=10_000)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("IM00002.dcm", first.files[1].read_bytes())
        out.writestr("DICOMDIR", _dicomdir())
    whole = _upload_as_the_pwa(
        cli,
        {
            "IM00001.dcm": first.files[0].read_bytes(),
            "DICOMDIR": _dicomdir(),
            "media.zip": archive.getvalue(),
        },
    )
    second = write_study(tmp_path / "b", instances=2, pixel_bytes=100_000)
    _truncate_pixels(second.files[1])
    lacking = _upload_as_the_pwa(
        cli,
        {
            "IM00001.dcm": second.files[0].read_bytes(),
            "IM00002.dcm": second.files[1].read_bytes(),
            "DICOMDIR": _dicomdir(),
        },
    )
    wait = ["--server", cli.server, "--wait", "--wait-timeout", "120"]

    delivered = cli.run("status", whole, *wait)
    left_out = cli.run("status", lacking, *wait)

    status = cli.api("GET", f"/uploads/{whole}").json()
    assert status["state"] == "delivered"
    by_name = {f["name"]: f for f in status["files"]}
    assert by_name["DICOMDIR"]["status"] == "skipped"
    assert [p["status"] for p in by_name["media.zip"]["problems"]] == ["skipped"]
    assert delivered.returncode == 0, delivered.stdout + delivered.stderr
    assert "left out" not in delivered.stdout
    reason = _problem_of(cli.api("GET", f"/uploads/{lacking}").json(), "IM00002.dcm")["reason"]
    assert left_out.returncode == FILES_LEFT_OUT, left_out.stdout + left_out.stderr
    assert "delivered, but 1 file left out" in left_out.stdout
    assert f"    IM00002.dcm: {reason}" in left_out.stdout
    assert "DICOMDIR" not in left_out.stdout
