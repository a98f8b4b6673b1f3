"""The uploader when the gateway acted but its answer was lost (issue 5, bad-link gaps).

A real gateway process and the real CLI, with a proxy on real sockets that cuts (or holds) the
answer of chosen requests after the gateway carried them out.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.client.dicom_files import write_study
from tests.client.lost_answers import Lose, lost_answers_proxy
from tests.resilience.gateway import CliUser, Gateway, sha256_of

pytestmark = pytest.mark.slow

UPLOADS = "/api/v1/uploads"
REFRESH = "/api/v1/auth/refresh"
DONE_STATES = {"validated", "queued", "forwarding", "delivered"}


def _upload(cli: CliUser, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli.run("upload", "--server", cli.server, "--json", *args)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def _assert_holds(cli: CliUser, upload_id: str, files: list[Path]) -> None:
    status = cli.wait_for_state(upload_id, DONE_STATES)
    assembled = {f["name"].rsplit("/", 1)[-1]: f["sha256"] for f in status["files"]}
    assert assembled == {p.name: sha256_of(p) for p in files}


def test_a_lost_201_gets_the_same_upload_again(
    gateway: Gateway, cli: CliUser, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=2, pixel_bytes=200_000)
    with lost_answers_proxy(("127.0.0.1", gateway.port), [Lose("POST", UPLOADS)]) as proxy:
        via_proxy = cli.alias(f"http://127.0.0.1:{proxy.port}")
        code, report = _upload(via_proxy, str(tmp_path / "in"))

    assert code == 0, report
    lost, again = proxy.to("POST", UPLOADS)
    assert lost.lost
    assert lost.status == 201
    # The retry carried the same key and was answered with the same upload and its token...
    assert again.request_headers["idempotency-key"] == lost.request_headers["idempotency-key"]
    assert again.status == 201
    assert again.response_headers["idempotent-replayed"] == "true"
    assert again.json() == lost.json()
    (outcome,) = report["studies"]
    assert outcome["upload_id"] == lost.json()["upload_id"]
    # ...so it was not a duplicate to adopt: chunks went with the upload's own token.
    assert outcome["resumed"] is False
    puts = [e for e in proxy.exchanges if e.method == "PUT"]
    assert puts
    assert all("x-upload-token" in e.request_headers for e in puts)
    _assert_holds(cli, outcome["upload_id"], study.files)
    # Nothing is left waiting in the journal once the answer is recorded.
    assert not json.loads((cli.state_dir / "journal.json").read_text()).get("idempotency_keys")


def test_a_start_still_in_flight_is_asked_again_with_the_same_key(
    gateway: Gateway, cli: CliUser, tmp_path: Path
) -> None:
    """The gateway answers 409 `idempotency_key_in_flight` while an earlier attempt with the key
    is still being carried out (its answer lost or stalled): "retry", not "refused"."""
    study = write_study(tmp_path / "in", instances=2, pixel_bytes=200_000)
    in_flight = {
        "type": "about:blank",
        "status": 409,
        "code": "idempotency_key_in_flight",
        "title": "A request with this Idempotency-Key is still being processed; retry",
    }
    rule = Lose("POST", UPLOADS, answer=(409, in_flight))
    with lost_answers_proxy(("127.0.0.1", gateway.port), [rule]) as proxy:
        code, report = _upload(cli.alias(f"http://127.0.0.1:{proxy.port}"), str(tmp_path / "in"))

    assert code == 0, report
    first, again = proxy.to("POST", UPLOADS)
    assert first.lost
    assert again.request_headers["idempotency-key"] == first.request_headers["idempotency-key"]
    assert again.status == 201
    assert again.response_headers["idempotent-replayed"] == "true"
    (outcome,) = report["studies"]
    assert outcome["upload_id"] == first.json()["upload_id"]
    assert report["retries"] >= 1
    _assert_holds(cli, outcome["upload_id"], study.files)


def test_a_crash_before_the_201_arrived_resumes_the_same_upload(
    gateway: Gateway, cli: CliUser, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=2, pixel_bytes=200_000)
    rule = Lose("POST", UPLOADS, hold=True)
    with lost_answers_proxy(("127.0.0.1", gateway.port), [rule]) as proxy:
        server = f"http://127.0.0.1:{proxy.port}"
        via_proxy = cli.alias(server)
        first_run = via_proxy.spawn("upload", str(tmp_path / "in"), "--server", server)
        deadline = time.monotonic() + 60
        while not proxy.to("POST", UPLOADS):
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.05)  # another process's request: there is no event to await
        first_run.send_signal(signal.SIGKILL)  # the gateway made the upload; the CLI never knew
        first_run.wait(30)
        journal = json.loads((cli.state_dir / "journal.json").read_text())
        assert not journal.get("uploads")
        assert journal["idempotency_keys"]

        code, report = _upload(via_proxy, str(tmp_path / "in"))

    assert code == 0, report
    before, after = proxy.to("POST", UPLOADS)
    assert after.request_headers["idempotency-key"] == before.request_headers["idempotency-key"]
    assert after.response_headers["idempotent-replayed"] == "true"
    (outcome,) = report["studies"]
    assert outcome["upload_id"] == before.json()["upload_id"]
    assert outcome["resumed"] is False
    _assert_holds(cli, outcome["upload_id"], study.files)


def test_a_lost_refresh_answer_does_not_sign_the_user_out(gateway: Gateway, tmp_path: Path) -> None:
    write_study(tmp_path / "in", instances=1, pixel_bytes=50_000)
    with lost_answers_proxy(("127.0.0.1", gateway.port), [Lose("POST", REFRESH)]) as proxy:
        user = CliUser(f"http://127.0.0.1:{proxy.port}", tmp_path / "config", tmp_path / "state")
        user.register()
        saved = user.credentials()
        saved["servers"][user.server]["access_token"] = "expired-or-revoked"
        (user.config_dir / "credentials.json").write_text(json.dumps(saved))

        code, report = _upload(user, str(tmp_path / "in"))

        assert code == 0, report
        lost, again = proxy.to("POST", REFRESH)[:2]
        assert lost.lost
        assert lost.status == 200
        assert again.status == 200
        assert again.json()["refresh_token"] == lost.json()["refresh_token"]
        # The kept token is that one successor, and the sign-in goes on with it.
        kept = user.credentials()["servers"][user.server]["refresh_token"]
        assert kept == lost.json()["refresh_token"]
        status = user.run("status", report["studies"][0]["upload_id"], "--server", user.server)
        assert status.returncode == 0, status.stderr
