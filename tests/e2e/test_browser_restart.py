"""An upload outlives the browser: Chromium killed mid-upload, started again on the same profile.

Not a reload, and not a clean close: the whole browser gets SIGKILL, so nothing is flushed on
the way out. Chromium writes localStorage to disk in batches, seconds late (a value set less than
about 5 s before the kill comes back missing), while an IndexedDB commit is on disk once it
completes; the app must keep what it needs after a restart — the queue and the sign-in — there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect

from tests.e2e.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    Api,
    queued_jobs,
    wait_for_service_worker,
)
from tests.e2e.orthanc import Orthanc
from tests.e2e.proxy import ThrottlingProxy
from tests.e2e.studies import write_study
from tests.e2e.test_upload import choose_folder, send, server_upload_id, stored_chunks

CHUNK_SIZE = 524_288
PATIENT_ID = "E2E-RESTART"

# What the app has noted on the device as confirmed by the gateway (its IndexedDB queue).
SAVED_CONFIRMED_BYTES = """jobs => jobs.flatMap(job => job.files)
    .reduce((sum, file) => sum + (file.confirmedBytes ?? 0), 0)"""


def launch(driver: Playwright, profile: Path, base_url: str) -> BrowserContext:
    """Chromium on a normal (not incognito) profile kept on disk, as a person's browser is."""
    return driver.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        base_url=base_url,
        viewport={"width": 1280, "height": 900},
    )


def browser_pid(profile: Path) -> int:
    """The browser process of this profile (its helpers carry `--type=`)."""
    flag = f"--user-data-dir={profile}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if flag in args and not any(a.startswith(b"--type=") for a in args):
                return int(entry)
    raise AssertionError(f"no Chromium runs on {profile}")


def kill_browser(profile: Path) -> None:
    """SIGKILL to the whole browser (Playwright starts it as its own process group): no unload
    handlers, no shutdown flush — what a crash, a killed app or a dead battery leaves behind."""
    pid = browser_pid(profile)
    assert os.getpgid(pid) == pid, "Chromium is not its own process group"
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return  # gone and reaped
        if state == "Z":
            return  # dead, waiting for Playwright to reap it
        time.sleep(0.02)
    raise AssertionError("Chromium outlived SIGKILL")


def wait_for_saved_bytes(page: Page, at_least: int) -> int:
    deadline = time.monotonic() + 30
    while (saved := int(queued_jobs(page, SAVED_CONFIRMED_BYTES))) < at_least:
        assert time.monotonic() < deadline, f"only {saved} bytes noted as sent within 30 s"
        page.wait_for_timeout(50)
    return saved


def selected_files(folder: Path) -> dict[str, str]:
    """SOP Instance UID -> SHA-256 of each DICOM file the user picked."""
    digests: dict[str, str] = {}
    for path in sorted(folder.glob("*.dcm")):
        data = path.read_bytes()
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        digests[uid] = hashlib.sha256(data).hexdigest()
    return digests


@pytest.fixture
def profile(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "profile"
    yield folder
    # A browser the test failed to close must not outlive it.
    with contextlib.suppress(AssertionError):
        kill_browser(folder)


def test_an_upload_survives_a_killed_browser_and_resumes_without_resending_stored_chunks(
    playwright_driver: Playwright,
    account: tuple[str, dict[str, Any]],
    api: Api,
    link: ThrottlingProxy,
    pacs: Orthanc | None,
    profile: Path,
    tmp_path: Path,
) -> None:
    if pacs is None:
        pytest.skip("Orthanc is not installed (make test installs it with apt)")
    username, tokens = account
    api.put(
        "/users/me/preferences",
        tokens,
        {"default_service_level": "routine", "chunk_size": CHUNK_SIZE, "duplicate_warnings": True},
    )
    study = write_study(
        tmp_path / "study",
        instances=12,
        image_side=512,
        patient_name="RESTART^RUTH",
        patient_id=PATIENT_ID,
    )
    picked = selected_files(study)
    sizes = [p.stat().st_size for p in sorted(study.glob("*.dcm"))]
    total_chunks = sum(-(-size // CHUNK_SIZE) for size in sizes)
    # About 2 MB/s over the engine's 4 connections: the 6.4 MB take some 3 s.
    link.rate = 500_000

    errors: list[str] = []
    # First run of the browser: sign in, pick the study, send it.
    context = launch(playwright_driver, profile, link.url)
    page = context.pages[0]
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/sign-in")
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="New upload").wait_for()
    # Installed and holding the shell: the next start opens the app with the gateway silent.
    wait_for_service_worker(page)
    choose_folder(page, study)
    send(page)
    # Until the app has noted on the device a chunk's worth of what the gateway confirmed.
    saved_bytes = wait_for_saved_bytes(page, CHUNK_SIZE)

    # Nothing moves from here; then the browser dies with requests in the air, a few seconds
    # after the sign-in (usually before Chromium has written localStorage to disk).
    link.freeze()
    kill_browser(profile)
    with contextlib.suppress(Exception):
        context.close()
    link.drop_connections()
    link.thaw()
    upload_id = server_upload_id(api, tokens)
    stored, missing = stored_chunks(api, tokens, upload_id)
    assert stored, "no chunk reached the gateway before the kill"
    assert missing, "every chunk reached the gateway before the kill"
    assert len(stored) + missing == total_chunks
    upload = api.get(f"/uploads/{upload_id}", tokens)
    total_bytes = sum(sizes)
    stored_bytes = sum(
        min(CHUNK_SIZE, file["size"] - index * CHUNK_SIZE)
        for file in upload["files"]
        for index in range(file["chunk_count"])
        if (file["file_id"], index) in stored
    )

    # Second run, same profile, the gateway unreachable at first: the study is still listed,
    # with what it had sent, before a single answer came back.
    link.freeze()
    mark = link.mark()
    context = launch(playwright_driver, profile, link.url)
    try:
        page = context.pages[0]
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Still signed in; the shell comes from the service worker's cache.
        page.goto("/uploads")
        item = page.locator(".upload-list__item", has_text="RESTART RUTH")
        badge = item.locator(".badge")
        expect(badge).to_have_text(re.compile(r"^Sending \d+%$"), timeout=15_000)
        shown = int(re.sub(r"\D", "", badge.text_content() or ""))
        # What the device had noted, at least; what the gateway holds, at most.
        assert 100 * saved_bytes // total_bytes <= shown <= 100 * stored_bytes // total_bytes
        assert shown > 0
        item.click()
        expect(page.get_by_test_id("job-percent")).to_have_text(f"{shown}%")
        expect(page.get_by_role("button", name="Pause")).to_be_visible()

        # The gateway answers again: the upload carries on by itself (the app resumes queued
        # uploads on start; there is nothing to click), from the missing chunks only.
        link.thaw()
        expect(page.get_by_test_id("server-status")).to_have_attribute(
            "data-state", "delivered", timeout=60_000
        )
        assert errors == []
    finally:
        context.close()

    after = link.chunk_puts(since=mark)
    resent = [e.chunk for e in after if e.chunk in stored]
    assert resent == [], f"chunks the gateway already had were sent again: {resent}"
    assert 0 < len({e.chunk for e in after}) <= missing
    upload = api.get(f"/uploads/{upload_id}", tokens)
    assert upload["state"] == "delivered"
    assert upload["instance_count"] == 12
    assert pacs.instance_sha256s(PATIENT_ID) == picked
