"""`relaypacs upload` when its user signs out everywhere mid-upload: the upload token ends with the
sign-in, the run stops for a new sign-in, and after `relaypacs login` the same command resumes the
same upload without sending again a chunk the gateway holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.dicom_files import write_study
from tests.client.test_upload_command import (
    assert_gateway_holds,
    settled_bytes_received,
    upload_json,
    wait_for_journaled_upload,
    wait_until,
)
from tests.resilience.gateway import CliUser, Gateway
from tests.resilience.proxy import delay_proxy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway of its own: this test signs in again after signing out everywhere, and sign-ins
    against the shared one would use up the login rate limit its other tests rely on."""
    process = Gateway(
        tmp_path_factory.mktemp("revoking-gateway"),
        extra_env={"RELAYPACS_LOGIN_RATE_LIMIT": "100/minute"},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _journaled_token(user: CliUser, upload_id: str) -> str:
    uploads = json.loads((user.state_dir / "journal.json").read_text())["uploads"]
    (entry,) = [u for u in uploads.values() if u["upload_id"] == upload_id]
    return str(entry["upload_token"])


def test_an_upload_stopped_by_signing_out_everywhere_resumes_after_login_without_resending(
    own_gateway: Gateway, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=4, pixel_bytes=1_000_000)
    user = CliUser(own_gateway.url, tmp_path / "config", tmp_path / "state")
    user.register()
    with delay_proxy(("127.0.0.1", own_gateway.port), one_way_delay=0.25) as port:
        slow_link = f"http://127.0.0.1:{port}"
        first_run = user.alias(slow_link).spawn(
            "upload", str(tmp_path / "in"), "--server", slow_link, "--json",
            "--parallel", "1", "--chunk-size", str(512 * 1024),
        )  # fmt: skip
        upload_id = wait_for_journaled_upload(user.state_dir / "journal.json")
        first_token = _journaled_token(user, upload_id)
        wait_until(
            lambda: user.api("GET", f"/uploads/{upload_id}").json()["bytes_received"] >= 1 << 20
        )

        # Another device (or the PWA's Settings) signs the user out everywhere.
        assert user.api("POST", "/auth/logout-all").status_code == 204

        stdout, stderr = first_run.communicate(timeout=120)
        assert first_run.returncode == 4, stderr  # not signed in: `relaypacs login`, not refused
        assert json.loads(stdout)["exit_code"] == 4
        login = user.run("login", "--server", user.server, "-u", user.username,
                         "--password-stdin", stdin=user.password + "\n")  # fmt: skip
        assert login.returncode == 0, login.stderr
        received = settled_bytes_received(user, upload_id)
        assert 0 < received < study.size

        code, report = upload_json(user.alias(slow_link), str(tmp_path / "in"), "--parallel", "4")

    assert code == 0, report
    (outcome,) = report["studies"]
    assert outcome["upload_id"] == upload_id
    assert outcome["resumed"] is True
    assert outcome["bytes_needed"] == study.size - received
    assert report["bytes_sent"] == study.size - received
    assert report["bytes_resent"] == 0
    # The journal keeps the new token, so a run stopped now would resume with it.
    assert _journaled_token(user, upload_id) != first_token
    assert_gateway_holds(user, upload_id, study, user.server)
