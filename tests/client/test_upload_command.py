"""`relaypacs upload/status/login/watch` as a user runs them, against a real gateway process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from relaypacs.client.exit_codes import ExitCode
from tests.client.dicom_files import GeneratedStudy, write_study
from tests.resilience.gateway import CliUser, Gateway, sha256_of

pytestmark = pytest.mark.slow

DONE_STATES = {"validated", "queued", "forwarding", "delivered"}


def upload_json(cli: CliUser, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli.run("upload", "--server", cli.server, "--json", *args)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def assert_gateway_holds(cli: CliUser, upload_id: str, study: GeneratedStudy, via: str) -> None:
    """Byte identity, checked where it is visible until forwarding lands: the assembled files."""
    status = cli.wait_for_state(upload_id, DONE_STATES, via=via)
    assembled = {f["name"].rsplit("/", 1)[-1]: f["sha256"] for f in status["files"]}
    assert assembled == {p.name: sha256_of(p) for p in study.files}
    assert sorted(i["sha256"] for i in status["instances"]) == sorted(assembled.values())


def wait_until(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)  # watching another process's files: there is no event to await


def wait_for_journaled_upload(journal: Path) -> str:
    """The id of the upload the journal records (it also holds a start's key before that)."""
    found: list[str] = []

    def recorded() -> bool:
        if journal.exists():
            uploads = json.loads(journal.read_text()).get("uploads", {})
            found.extend(str(u["upload_id"]) for u in uploads.values())
        return bool(found)

    wait_until(recorded)
    return found[0]


def settled_bytes_received(cli: CliUser, upload_id: str) -> int:
    """What the gateway holds once bytes still queued in the delay proxy have drained."""
    last = -1
    while True:
        now = cli.api("GET", f"/uploads/{upload_id}").json()["bytes_received"]
        if now == last:
            return int(now)
        last = now
        time.sleep(1.0)  # the proxy's queue has no event we can await from here


def test_login_keeps_the_sign_in_readable_only_by_the_user(signed_in: CliUser) -> None:
    path = signed_in.config_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(signed_in.config_dir.stat().st_mode) == 0o700
    assert signed_in.password not in path.read_text()


def test_each_study_becomes_one_upload_and_the_gateway_holds_the_same_bytes(
    cli: CliUser, tmp_path: Path
) -> None:
    first = write_study(tmp_path / "in" / "a", instances=3, pixel_bytes=700_000)
    second = write_study(tmp_path / "in" / "b", instances=2, pixel_bytes=100_000, modality="MR")
    (tmp_path / "in" / "notes.txt").write_text("not an image")

    code, report = upload_json(cli, str(tmp_path / "in"), "--service-level", "stat")

    assert code == 0, report
    assert [s["name"] for s in report["skipped"]] == ["notes.txt"]
    by_uid = {s["study_instance_uid"]: s for s in report["studies"]}
    assert set(by_uid) == {first.study_instance_uid, second.study_instance_uid}
    assert report["bytes_sent"] == first.size + second.size
    assert report["bytes_resent"] == 0
    for study in (first, second):
        assert_gateway_holds(cli, by_uid[study.study_instance_uid]["upload_id"], study, cli.server)
    status = cli.api("GET", f"/uploads/{by_uid[second.study_instance_uid]['upload_id']}").json()
    assert status["study"]["modality"] == "MR"
    assert status["study"]["service_level"] == "stat"
    assert status["study"]["patient_name"] == second.patient_name


def test_a_killed_upload_resumes_and_sends_only_the_missing_chunks(
    cli: CliUser, slow_link: str, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=4, pixel_bytes=1_000_000)
    via_proxy = cli.alias(slow_link)
    args = ["upload", str(tmp_path / "in"), "--server", slow_link, "--json", "--parallel", "1",
            "--chunk-size", str(512 * 1024)]  # fmt: skip
    first_run = via_proxy.spawn(*args)
    journal = cli.state_dir / "journal.json"
    upload_id = wait_for_journaled_upload(journal)
    wait_until(
        lambda: cli.api("GET", f"/uploads/{upload_id}").json()["bytes_received"] >= 1024 * 1024
    )
    first_run.send_signal(signal.SIGKILL)
    first_run.wait(30)
    received = settled_bytes_received(cli, upload_id)
    assert 0 < received < study.size

    code, report = upload_json(via_proxy, str(tmp_path / "in"), "--parallel", "4")

    assert code == 0, report
    (outcome,) = report["studies"]
    assert outcome["upload_id"] == upload_id
    assert outcome["resumed"] is True
    assert outcome["bytes_needed"] == study.size - received
    assert report["bytes_sent"] == study.size - received
    assert_gateway_holds(cli, upload_id, study, cli.server)


def test_an_unfinished_upload_the_journal_does_not_name_is_never_resumed(
    cli: CliUser, slow_link: str, tmp_path: Path
) -> None:
    """A 409 duplicate_study only says the same patient, date and modality were sent: resuming
    the session it names could mix another study's (or an older version's) stored chunks into
    what reaches the PACS. Without the journal's word it is a duplicate like any other."""
    study = write_study(tmp_path / "in", instances=3, pixel_bytes=1_000_000)
    via_proxy = cli.alias(slow_link)
    first_run = via_proxy.spawn("upload", str(tmp_path / "in"), "--server", slow_link,
                                "--parallel", "1", "--chunk-size", str(512 * 1024))  # fmt: skip
    journal = cli.state_dir / "journal.json"
    upload_id = wait_for_journaled_upload(journal)
    wait_until(lambda: cli.api("GET", f"/uploads/{upload_id}").json()["bytes_received"] > 0)
    first_run.send_signal(signal.SIGKILL)
    first_run.wait(30)
    received = settled_bytes_received(cli, upload_id)
    shutil.rmtree(cli.state_dir)  # another machine, or a wiped profile

    code, report = upload_json(cli, str(tmp_path / "in"))

    assert code == 3, report  # skipped as a duplicate, pointing at the earlier upload
    (outcome,) = report["studies"]
    assert outcome["upload_id"] == upload_id
    assert "--force" in outcome["message"]
    assert report["bytes_sent"] == 0
    assert cli.api("GET", f"/uploads/{upload_id}").json()["bytes_received"] == received

    forced, report = upload_json(cli, str(tmp_path / "in"), "--force")
    assert forced == 0, report
    (outcome,) = report["studies"]
    assert outcome["upload_id"] != upload_id
    assert report["bytes_sent"] == study.size
    assert_gateway_holds(cli, outcome["upload_id"], study, cli.server)


def test_a_study_the_gateway_already_has_is_skipped_unless_forced(
    cli: CliUser, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=1, pixel_bytes=50_000)
    code, report = upload_json(cli, str(tmp_path / "in"))
    assert code == 0
    first_id = report["studies"][0]["upload_id"]
    cli.wait_for_state(first_id, DONE_STATES)

    again, report = upload_json(cli, str(tmp_path / "in"))
    assert again == 0
    assert report["studies"][0]["message"] == "already uploaded"
    assert report["bytes_sent"] == 0

    elsewhere = cli.with_state_dir(tmp_path / "other-state")
    skipped, report = upload_json(elsewhere, str(tmp_path / "in"))
    assert skipped == 3
    assert report["studies"][0]["upload_id"] == first_id
    assert "--force" in report["studies"][0]["message"]

    forced, report = upload_json(elsewhere, str(tmp_path / "in"), "--force")
    assert forced == 0
    assert report["studies"][0]["upload_id"] != first_id
    assert report["bytes_sent"] == study.size


def test_a_rejected_access_token_is_refreshed_and_the_new_refresh_token_kept(
    gateway: Gateway, tmp_path: Path
) -> None:
    user = CliUser(gateway.url, tmp_path / "config", tmp_path / "state")
    user.register()
    saved = user.credentials()
    entry = saved["servers"][gateway.url]
    old_refresh = entry["refresh_token"]
    entry["access_token"] = "expired-or-revoked"  # still "valid" by the clock: the server decides
    (user.config_dir / "credentials.json").write_text(json.dumps(saved))
    write_study(tmp_path / "in", instances=1, pixel_bytes=50_000)

    code, report = upload_json(user, str(tmp_path / "in"))

    assert code == 0, report
    renewed = user.credentials()["servers"][gateway.url]
    assert renewed["refresh_token"] != old_refresh
    assert renewed["access_token"] != "expired-or-revoked"
    assert stat.S_IMODE((user.config_dir / "credentials.json").stat().st_mode) == 0o600
    # The renewed refresh token is the live one: it can be used (once) right now.
    status = user.run("status", report["studies"][0]["upload_id"], "--server", gateway.url)
    assert status.returncode == 0, status.stderr


def test_without_a_sign_in_the_exit_code_says_to_log_in(gateway: Gateway, tmp_path: Path) -> None:
    user = CliUser(gateway.url, tmp_path / "config", tmp_path / "state")
    write_study(tmp_path / "in", instances=1, pixel_bytes=10_000)

    result = user.run("upload", str(tmp_path / "in"), "--server", gateway.url, "--quiet")

    assert result.returncode == 4
    assert "relaypacs login" in result.stderr


def test_a_folder_without_dicom_exits_5(cli: CliUser, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "report.pdf").write_bytes(b"%PDF-1.4 not an image")

    code, report = upload_json(cli, str(tmp_path / "in"))

    assert code == 5
    assert report["studies"] == []
    assert report["skipped"] == [{"name": "report.pdf", "reason": "not DICOM"}]


def test_status_shows_state_instances_and_timeline(cli: CliUser, tmp_path: Path) -> None:
    write_study(tmp_path / "in", instances=2, pixel_bytes=10_000)
    _, report = upload_json(cli, str(tmp_path / "in"))
    upload_id = report["studies"][0]["upload_id"]
    cli.wait_for_state(upload_id, DONE_STATES)

    as_json = cli.run("status", upload_id, "--server", cli.server, "--json")
    human = cli.run("status", upload_id, "--server", cli.server)

    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["upload_id"] == upload_id
    assert human.returncode == 0, human.stderr
    assert "instances: 2 " in human.stdout
    assert "receiving" in human.stdout  # the timeline
    unknown = cli.run("status", "00000000-0000-0000-0000-000000000000", "--server", cli.server)
    assert unknown.returncode == 6


def test_status_wait_ends_with_the_delivery_outcome(cli: CliUser, tmp_path: Path) -> None:
    write_study(tmp_path / "in", instances=1, pixel_bytes=10_000)
    _, report = upload_json(cli, str(tmp_path / "in"))
    upload_id = report["studies"][0]["upload_id"]

    waited = cli.run("status", upload_id, "--server", cli.server, "--wait",
                     "--wait-timeout", "20", "--json")  # fmt: skip

    state = json.loads(waited.stdout)["state"]
    # 0 once the study is delivered (to the local archive: no PACS is configured here); 9 while
    # this build of the gateway does not forward yet and the study stays validated.
    assert (waited.returncode, state == "delivered") in {(0, True), (9, False)}


def _completed(journal: Path) -> list[dict[str, Any]]:
    if not journal.exists():
        return []
    uploads = json.loads(journal.read_text()).get("uploads", {})
    return [u for u in uploads.values() if u["completed"]]


def _stop_with_ctrl_c(watcher: subprocess.Popen[str]) -> None:
    """Ctrl-C ends `relaypacs watch` with 130, "interrupted", as it does every command; a watcher
    that ignores it is not left running."""
    watcher.send_signal(signal.SIGINT)
    try:
        assert watcher.wait(30) == ExitCode.INTERRUPTED
    except subprocess.TimeoutExpired:
        watcher.kill()
        watcher.wait()
        raise


def test_ctrl_c_stops_watch_with_the_interrupted_exit_code(cli: CliUser, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    watcher = cli.spawn("watch", str(folder), "--server", cli.server, "--interval", "0.2")
    try:
        assert watcher.stderr is not None
        assert "watching" in watcher.stderr.readline()
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(30) == 130  # what exit_codes.py and --help say "interrupted" is
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def test_watch_never_sends_a_study_that_is_still_being_copied(cli: CliUser, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    (folder / "study").mkdir(parents=True)
    study = write_study(tmp_path / "staging", instances=4, pixel_bytes=20_000)
    watcher = cli.spawn("watch", str(folder), "--server", cli.server, "--settle", "1.5",
                        "--interval", "0.2")  # fmt: skip
    try:
        assert watcher.stderr is not None
        assert "watching" in watcher.stderr.readline()  # it is scanning from now on
        # One file every 0.8 s: the first ones settle long before the last one arrives.
        for path in study.files:
            shutil.copy(path, folder / "study" / path.name)
            time.sleep(0.8)
        wait_until(lambda: len(_completed(cli.state_dir / "journal.json")) == 1)
        time.sleep(1.0)
        (entry,) = _completed(cli.state_dir / "journal.json")
        assert len(entry["files"]) == 4
    finally:
        _stop_with_ctrl_c(watcher)


def test_watch_sends_a_study_once_its_files_stop_changing(cli: CliUser, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    watcher = cli.spawn("watch", str(folder), "--server", cli.server, "--settle", "1",
                        "--interval", "0.2", "--quiet")  # fmt: skip
    try:
        study = write_study(tmp_path / "staging", instances=3, pixel_bytes=20_000)
        shutil.copytree(tmp_path / "staging", folder / "study1")
        (folder / "Thumbs.db").write_bytes(os.urandom(100))
        journal = cli.state_dir / "journal.json"

        def completed() -> list[dict[str, Any]]:
            if not journal.exists():
                return []
            uploads = json.loads(journal.read_text()).get("uploads", {}).values()
            return [u for u in uploads if u["completed"]]

        wait_until(lambda: len(completed()) == 1)
        time.sleep(1.5)  # several more scans: the same files must not be sent twice
        assert len(completed()) == 1
        (entry,) = completed()
        assert entry["study_instance_uid"] == study.study_instance_uid
        assert len(entry["files"]) == 3
    finally:
        _stop_with_ctrl_c(watcher)


def test_a_started_upload_finishes_without_the_sign_in(
    cli: CliUser, slow_link: str, tmp_path: Path
) -> None:
    """Once started, an upload needs only its own token: a lost sign-in cannot strand it."""
    study = write_study(tmp_path / "in", instances=3, pixel_bytes=1_000_000)
    via_proxy = cli.alias(slow_link)
    first_run = via_proxy.spawn("upload", str(tmp_path / "in"), "--server", slow_link,
                                "--parallel", "1", "--chunk-size", str(512 * 1024))  # fmt: skip
    journal = cli.state_dir / "journal.json"
    upload_id = wait_for_journaled_upload(journal)
    wait_until(lambda: cli.api("GET", f"/uploads/{upload_id}").json()["bytes_received"] > 0)
    first_run.send_signal(signal.SIGKILL)
    first_run.wait(30)
    saved = via_proxy.credentials()
    saved["servers"][slow_link].update(access_token="revoked", refresh_token="revoked")
    (cli.config_dir / "credentials.json").write_text(json.dumps(saved))

    code, report = upload_json(via_proxy, str(tmp_path / "in"))

    assert code == 0, report
    assert report["studies"][0]["upload_id"] == upload_id
    assert_gateway_holds(cli, upload_id, study, cli.server)
    status = via_proxy.run("status", upload_id, "--server", slow_link)
    assert status.returncode == 0, status.stderr


def test_a_cancelled_session_is_replaced_by_a_new_upload(
    cli: CliUser, slow_link: str, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "in", instances=3, pixel_bytes=1_000_000)
    via_proxy = cli.alias(slow_link)
    first_run = via_proxy.spawn("upload", str(tmp_path / "in"), "--server", slow_link,
                                "--parallel", "1", "--chunk-size", str(512 * 1024))  # fmt: skip
    journal = cli.state_dir / "journal.json"
    upload_id = wait_for_journaled_upload(journal)
    wait_until(lambda: cli.api("GET", f"/uploads/{upload_id}").json()["bytes_received"] > 0)
    first_run.send_signal(signal.SIGKILL)
    first_run.wait(30)
    assert cli.api("DELETE", f"/uploads/{upload_id}").status_code == 204

    code, report = upload_json(cli.alias(slow_link), str(tmp_path / "in"))

    assert code == 0, report
    (outcome,) = report["studies"]
    assert outcome["upload_id"] != upload_id
    assert report["bytes_sent"] == study.size
    assert_gateway_holds(cli, outcome["upload_id"], study, cli.server)


def test_wait_says_why_a_study_was_rejected_and_which_files_even_when_quiet(
    cli: CliUser, tmp_path: Path
) -> None:
    """--quiet prints "only failures": a study the gateway rejected is one, with the reason."""
    study = write_study(tmp_path / "in", instances=1, pixel_bytes=100_000)
    (image,) = study.files
    # Cut into the pixel data: the header still reads, so the scan sends it; the gateway cannot.
    image.write_bytes(image.read_bytes()[:-50_000])
    args = ["upload", str(tmp_path / "in"), "--server", cli.server, "--wait",
            "--wait-timeout", "120", "--force"]  # fmt: skip

    quiet = cli.run(*args, "--quiet")
    code, report = upload_json(cli, args[1], *args[4:])

    (outcome,) = report["studies"]
    status = cli.api("GET", f"/uploads/{outcome['upload_id']}").json()
    assert status["state"] == "rejected"
    (problem,) = status["files"][0]["problems"]
    assert quiet.returncode == 8, quiet.stderr
    assert "rejected" in quiet.stderr
    assert status["failure_reason"] in quiet.stderr
    assert f"{image.name}: {problem['reason']}" in quiet.stderr
    assert code == 8
    assert outcome["state"] == "rejected"
    assert status["failure_reason"] in outcome["message"]
    assert outcome["failure_reason"] == status["failure_reason"]
    assert outcome["left_out"] == [{"name": image.name, "reason": problem["reason"]}]

    shown = cli.run(*args)
    assert shown.returncode == 8
    final = shown.stderr.split(": uploaded, ", 1)[1]  # what comes after the upload itself
    assert status["failure_reason"] in final
    assert f"{image.name}: {problem['reason']}" in final


def test_a_path_that_does_not_exist_is_a_usage_error_and_nothing_is_sent(
    cli: CliUser, tmp_path: Path
) -> None:
    write_study(tmp_path / "study1", instances=1, pixel_bytes=10_000)
    typo = tmp_path / "cdrmo"

    result = cli.run("upload", str(tmp_path / "study1"), str(typo), "--server", cli.server)

    assert result.returncode == 2, result.stderr
    assert f"no such file or folder: {typo}" in result.stderr
    # The journal holds every start's idempotency key before its POST: no file, no request.
    assert not (cli.state_dir / "journal.json").exists()
