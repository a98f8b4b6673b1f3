"""Scripts branch on exit codes: each command lists every code it can return, `status` ends with
the code `upload --wait` would, and an unreachable gateway is reported, not waited on for an hour.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import pytest

from relaypacs.client.exit_codes import ExitCode
from tests.client.lost_answers import Lose, lost_answers_proxy
from tests.resilience.gateway import CliUser, Gateway, free_port

NOT_DELIVERED = 8
GAVE_UP = 7


def _help(command: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "relaypacs", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def _listed_exit_codes(help_text: str) -> set[int]:
    listed = help_text.split("Exit codes:", 1)[1].split("╭", 1)[0]
    return {int(code) for code in re.findall(r"(?<![\w-])(\d+) ", listed)}


def test_upload_help_lists_every_exit_code() -> None:
    assert _listed_exit_codes(_help("upload")) == {int(code) for code in ExitCode}


def test_status_help_lists_its_exit_codes_and_gives_up_after_30_s_or_an_hour_waiting() -> None:
    text = _help("status")

    # Not 3 (duplicate) or 5 (no DICOM): status sends nothing.
    assert _listed_exit_codes(text) == {int(code) for code in ExitCode} - {3, 5}
    give_up = text.split("--give-up-after", 1)[1].split("│ --", 1)[0]
    assert "(default 30; with --wait 3600)" in " ".join(give_up.replace("│", " ").split())


def _started_upload(cli: CliUser) -> str:
    started = cli.api(
        "POST",
        "/uploads",
        json={
            "study": {
                "patient_name": f"TEST^STATUS{uuid.uuid4().hex[:8]}",
                "study_date": "2026-01-02",
                "modality": "CT",
            },
            "files": [{"name": "IM00001.dcm", "size": 1000}],
        },
    )
    assert started.status_code == 201, started.text
    return str(started.json()["upload_id"])


@pytest.mark.slow
def test_status_exits_8_for_a_cancelled_upload_as_wait_does(cli: CliUser) -> None:
    upload_id = _started_upload(cli)
    assert cli.api("DELETE", f"/uploads/{upload_id}").status_code == 204

    shown = cli.run("status", upload_id, "--server", cli.server)
    followed = cli.run("status", upload_id, "--server", cli.server, "--wait")

    assert cli.api("GET", f"/uploads/{upload_id}").json()["state"] == "cancelled"
    assert followed.returncode == NOT_DELIVERED, followed.stdout + followed.stderr
    assert shown.returncode == NOT_DELIVERED, shown.stdout + shown.stderr
    assert "cancelled" in shown.stdout


@pytest.mark.slow
def test_status_exits_8_for_an_expired_upload_as_wait_does(gateway: Gateway, cli: CliUser) -> None:
    upload_id = _started_upload(cli)
    # A real session expires after 24 h: the gateway's own status document, as it reads then.
    expired = {**cli.api("GET", f"/uploads/{upload_id}").json(), "state": "expired"}
    rule = Lose("GET", f"/api/v1/uploads/{upload_id}", times=2, answer=(200, expired))
    with lost_answers_proxy(("127.0.0.1", gateway.port), [rule]) as proxy:
        server = f"http://127.0.0.1:{proxy.port}"
        via_proxy = cli.alias(server)
        shown = via_proxy.run("status", upload_id, "--server", server)
        followed = via_proxy.run("status", upload_id, "--server", server, "--wait")

    assert len(proxy.to("GET", f"/api/v1/uploads/{upload_id}")) == 2
    assert followed.returncode == NOT_DELIVERED, followed.stdout + followed.stderr
    assert "ended expired" in followed.stdout
    assert shown.returncode == NOT_DELIVERED, shown.stdout + shown.stderr
    assert "expired" in shown.stdout


@pytest.mark.slow
def test_status_reports_an_unreachable_gateway_after_its_give_up(cli: CliUser) -> None:
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    user = cli.alias(server)

    started = time.monotonic()
    # The default (30 s, asserted above) would make this test slow; the option is the same.
    result = user.run("status", str(uuid.uuid4()), "--server", server, "--give-up-after", "2",
                      "--verbose", timeout=60)  # fmt: skip
    seconds = time.monotonic() - started

    assert result.returncode == GAVE_UP, result.stderr
    assert f"cannot reach {server}" in result.stderr
    assert "--give-up-after" in result.stderr
    assert "retry " in result.stderr  # --verbose: the retries are no longer silent
    assert 2 <= seconds < 20
