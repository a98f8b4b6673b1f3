"""The upload flow in a real browser against the real gateway."""

from __future__ import annotations

import importlib.util
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import (
    SCREENSHOTS,
    Api,
    sign_in_with_tokens,
    wait_for_service_worker,
)
from tests.e2e.proxy import ThrottlingProxy
from tests.e2e.studies import write_study

# The gateway's terminal states once an upload has been handed over (delivered needs a PACS).
ACCEPTED = re.compile(r"^(validated|queued|forwarding|delivered)$")


def choose_folder(page: Page, folder: Path) -> None:
    page.get_by_test_id("pick-folder").set_input_files(folder)
    page.get_by_role("button", name="Send study").wait_for()


def send(page: Page) -> str:
    page.get_by_role("button", name="Send study").click()
    page.wait_for_url(re.compile(r"/uploads/[0-9a-f-]+$"))
    return page.url.rsplit("/", 1)[1]


def server_upload_id(api: Api, tokens: dict[str, Any]) -> str:
    items = api.get("/uploads", tokens)["items"]
    assert items, "the gateway has no upload"
    upload_id: str = items[0]["upload_id"]
    return upload_id


def test_a_folder_of_real_dicom_files_is_checked_sent_and_validated(
    page: Page, account: tuple[str, dict[str, Any]], api: Api, study_dir: Path
) -> None:
    username, tokens = account
    write_study(study_dir, instances=5)
    preferences = api.get("/users/me/preferences", tokens)
    api.put("/users/me/preferences", tokens, {**preferences, "default_service_level": "emergency"})
    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    # The service level starts at the user's default.
    expect(page.get_by_role("radio", name=re.compile("^Emergency"))).to_be_checked()

    # Pre-filled from the headers; the text file is listed and left out.
    expect(page.get_by_role("heading", name=re.compile("5 DICOM files"))).to_be_visible()
    expect(page.get_by_label("Patient name")).to_have_value("DOE^JANE")
    expect(page.get_by_label("Study date")).to_have_value("2026-01-02")
    expect(page.get_by_label("Modality")).to_have_value("CT")
    expect(page.get_by_text("1 file is not DICOM and will not be sent")).to_be_visible()
    page.get_by_label("Clinical history (optional)").fill("Fall from height, query fracture")
    page.get_by_text("STAT", exact=True).click()
    send(page)

    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=30_000
    )
    upload = api.get(f"/uploads/{server_upload_id(api, tokens)}", tokens)
    assert upload["study"]["service_level"] == "stat"
    assert upload["study"]["clinical_history"] == "Fall from height, query fracture"
    assert upload["instance_count"] == 5
    assert [f["name"] for f in upload["files"]] == [f"study/IM{n:04d}.dcm" for n in range(1, 6)]


def big_study(api: Api, tokens: dict[str, Any], folder: Path) -> None:
    """About 6 MB in 512 KiB chunks: long enough at 1.5 MB/s to interrupt half-way."""
    api.put(
        "/users/me/preferences",
        tokens,
        {"default_service_level": "routine", "chunk_size": 524288, "duplicate_warnings": True},
    )
    write_study(folder, instances=12, image_side=512, patient_id="E2E-BIG")


def wait_for_percent(page: Page, at_least: int) -> None:
    page.wait_for_function(
        """(n) => parseInt(
            document.querySelector('[data-testid=job-percent]')?.textContent ?? '0') >= n""",
        arg=at_least,
        timeout=30_000,
    )


def percent(page: Page) -> int:
    return int((page.get_by_test_id("job-percent").text_content() or "0").rstrip("%"))


def settled_percent(page: Page, quiet_ms: int = 1_500, within_ms: int = 20_000) -> int:
    """The progress once it has not changed for `quiet_ms` (in-flight requests finished)."""
    last, quiet, waited = percent(page), 0, 0
    while quiet < quiet_ms:
        assert waited < within_ms, "progress kept moving while offline"
        page.wait_for_timeout(250)
        waited += 250
        now = percent(page)
        quiet = quiet + 250 if now == last else 0
        last = now
    return last


def test_going_offline_mid_upload_waits_and_completes_when_back(
    page: Page,
    account: tuple[str, dict[str, Any]],
    api: Api,
    study_dir: Path,
    link: ThrottlingProxy,
) -> None:
    username, tokens = account
    big_study(api, tokens, study_dir)
    link.rate = 1_500_000
    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    send(page)
    wait_for_percent(page, 20)

    page.context.set_offline(True)
    expect(page.get_by_test_id("network-status")).to_have_text("Offline")
    expect(page.get_by_test_id("job-status-line")).to_contain_text("Offline")
    page.locator("summary", has_text="12 files").click()  # per-file progress, for the picture
    page.screenshot(path=str(SCREENSHOTS / "upload-offline-1280.png"), full_page=True)
    # A chunk already on the wire when the browser went offline may still finish (or be taken
    # back); once those have settled, nothing new is sent until the network returns.
    before = settled_percent(page)
    stored_before, _ = stored_chunks(api, tokens, server_upload_id(api, tokens))
    page.wait_for_timeout(2_000)
    assert percent(page) <= before
    assert stored_chunks(api, tokens, server_upload_id(api, tokens))[0] == stored_before

    page.context.set_offline(False)
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=60_000
    )
    upload = api.get(f"/uploads/{server_upload_id(api, tokens)}", tokens)
    assert upload["instance_count"] == 12


def stored_chunks(
    api: Api, tokens: dict[str, Any], upload_id: str
) -> tuple[set[tuple[str, int]], int]:
    upload = api.get(f"/uploads/{upload_id}", tokens)
    stored: set[tuple[str, int]] = set()
    missing = 0
    for file in upload["files"]:
        gaps = {i for first, last in file["missing_chunks"] for i in range(first, last + 1)}
        missing += len(gaps)
        stored |= {(file["file_id"], i) for i in range(file["chunk_count"]) if i not in gaps}
    return stored, missing


def test_reload_mid_upload_resumes_without_resending_stored_chunks(
    page: Page,
    account: tuple[str, dict[str, Any]],
    api: Api,
    study_dir: Path,
    link: ThrottlingProxy,
) -> None:
    username, tokens = account
    big_study(api, tokens, study_dir)
    link.rate = 1_500_000
    sign_in_with_tokens(page, username, tokens)
    # The reload below, with the link frozen, is answered by the service worker.
    wait_for_service_worker(page)
    choose_folder(page, study_dir)
    send(page)
    wait_for_percent(page, 30)

    link.freeze()
    page.wait_for_timeout(500)
    upload_id = server_upload_id(api, tokens)
    stored, missing = stored_chunks(api, tokens, upload_id)
    assert stored
    assert missing
    mark = link.mark()
    # The service worker serves the app shell while the link is frozen, as on a dead network.
    page.reload()
    link.thaw()

    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=60_000
    )
    after = link.chunk_puts(since=mark)
    resent = [e.chunk for e in after if e.chunk in stored]
    assert resent == [], f"chunks the gateway already had were sent again: {resent}"
    assert 0 < len({e.chunk for e in after}) <= missing
    assert api.get(f"/uploads/{upload_id}", tokens)["instance_count"] == 12


def test_a_server_killed_mid_upload_and_restarted_still_gets_the_whole_study(
    page: Page,
    account: tuple[str, dict[str, Any]],
    api: Api,
    study_dir: Path,
    link: ThrottlingProxy,
    gateway: Any,
) -> None:
    username, tokens = account
    big_study(api, tokens, study_dir)
    link.rate = 1_500_000
    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    send(page)
    wait_for_percent(page, 25)

    gateway.kill()
    expect(page.get_by_test_id("job-status-line")).to_contain_text("Reconnecting", timeout=15_000)
    # The browser still says online; the header tells the truth about the gateway.
    expect(page.get_by_test_id("network-status")).to_have_text("Reconnecting…")
    gateway.start()
    expect(page.get_by_test_id("network-status")).to_have_text("Online", timeout=30_000)

    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=90_000
    )
    assert api.get(f"/uploads/{server_upload_id(api, tokens)}", tokens)["instance_count"] == 12


def test_a_study_reaches_the_pacs_and_the_page_says_delivered(
    page: Page, account: tuple[str, dict[str, Any]], study_dir: Path, pacs: Any
) -> None:
    if pacs is None:
        pytest.skip("Orthanc is not installed (make test installs it with apt)")
    if importlib.util.find_spec("relaypacs.pacs.tasks") is None:
        pytest.skip("the gateway does not forward to a PACS yet (issue 4)")
    username, tokens = account
    write_study(study_dir, instances=3, patient_id="E2E-PACS-1")
    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    send(page)
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", "delivered", timeout=60_000
    )
    expect(page.get_by_test_id("server-state")).to_have_text("Delivered to the PACS")
    assert pacs.instance_count("E2E-PACS-1") == 3


def test_a_study_sent_while_offline_waits_on_the_device_and_goes_when_back(
    page: Page, account: tuple[str, dict[str, Any]], api: Api, study_dir: Path
) -> None:
    username, tokens = account
    write_study(study_dir, instances=2, patient_id="E2E-OFFLINE-START")
    sign_in_with_tokens(page, username, tokens)
    wait_for_service_worker(page)
    choose_folder(page, study_dir)
    page.context.set_offline(True)
    expect(
        page.get_by_text("You are offline. The study will be kept on this device")
    ).to_be_visible()
    page.get_by_role("button", name="Send study").click()
    page.get_by_role("dialog", name="You are offline").get_by_role(
        "button", name="Keep it and send later"
    ).click()
    page.wait_for_url(re.compile(r"/uploads/[0-9a-f-]+$"))
    expect(page.get_by_test_id("job-status-line")).to_contain_text("Offline")
    assert api.get("/uploads", tokens)["items"] == []
    # Background Sync wakes the app when the network returns, where the browser has it.
    tags = page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.sync.getTags())")
    assert "relaypacs-uploads" in tags

    page.context.set_offline(False)
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=30_000
    )


def test_a_duplicate_study_asks_first_and_can_be_sent_anyway(
    page: Page, account: tuple[str, dict[str, Any]], api: Api, study_dir: Path
) -> None:
    username, tokens = account
    write_study(study_dir, instances=1, patient_id="E2E-DUP")
    sign_in_with_tokens(page, username, tokens)
    for attempt in range(2):
        page.goto("/upload")
        choose_folder(page, study_dir)
        send(page)
        if attempt == 0:
            expect(page.get_by_test_id("server-status")).to_have_attribute(
                "data-state", ACCEPTED, timeout=30_000
            )
    dialog = page.get_by_role("dialog", name="This study may already have been sent")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("the same patient name, study date and modality")
    expect(dialog).not_to_contain_text("force_upload")  # the API's words, not the user's
    dialog.get_by_role("button", name="Send anyway").click()
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=30_000
    )
    assert api.get("/uploads", tokens)["total"] == 2


def test_a_zip_of_a_study_is_checked_in_the_browser_and_sent_as_one_file(
    page: Page, account: tuple[str, dict[str, Any]], api: Api, study_dir: Path, tmp_path: Path
) -> None:
    username, tokens = account
    write_study(study_dir, instances=3, patient_name="ZIP^ZOE", patient_id="E2E-ZIP")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(study_dir.iterdir()):
            zf.write(file, f"export/{file.name}")
    sign_in_with_tokens(page, username, tokens)
    page.get_by_test_id("pick-files").set_input_files(archive)
    expect(page.get_by_role("heading", name=re.compile("3 DICOM files"))).to_be_visible()
    expect(page.get_by_label("Patient name")).to_have_value("ZIP^ZOE")
    expect(page.get_by_text("1 file is not DICOM and will not be sent")).to_be_visible()
    send(page)
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=30_000
    )
    upload = api.get(f"/uploads/{server_upload_id(api, tokens)}", tokens)
    assert [f["name"] for f in upload["files"]] == ["study.zip"]
    assert upload["instance_count"] == 3


def stored_blob_count(page: Page) -> int:
    """The file records the app keeps in IndexedDB (the queued studies' bytes)."""
    count: int = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const open = indexedDB.open('relaypacs');
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
                const db = open.result;
                const request = db.transaction('blobs').objectStore('blobs').count();
                request.onsuccess = () => { db.close(); resolve(request.result); };
                request.onerror = () => reject(request.error);
            };
        })"""
    )
    return count


def chunks_in_flight(link: ThrottlingProxy, since: int) -> int:
    """Chunk PUTs sent since `since` and not answered yet."""
    return sum(1 for e in link.chunk_puts(since=since) if e.status is None)


def test_the_engine_runs_in_a_worker_sends_a_few_chunks_at_once_and_obeys_pause_resume_cancel(
    page: Page,
    account: tuple[str, dict[str, Any]],
    api: Api,
    study_dir: Path,
    link: ThrottlingProxy,
) -> None:
    username, tokens = account
    big_study(api, tokens, study_dir)
    link.rate = 150_000  # per connection: about 11 s for the study with 4 at once
    # Counts the app's calls to persist() (Chromium answers them by site engagement, so the
    # answer itself says nothing here); the browser's own method still does the work.
    page.add_init_script(
        """(() => {
            const persist = navigator.storage.persist.bind(navigator.storage);
            window.persistAsked = 0;
            navigator.storage.persist = () => { window.persistAsked += 1; return persist(); };
        })()"""
    )
    sign_in_with_tokens(page, username, tokens)
    assert page.evaluate("window.persistAsked") == 0
    choose_folder(page, study_dir)
    start = link.mark()
    send(page)
    # Asked for when a study is kept on the device: the browser must not evict it.
    assert page.evaluate("window.persistAsked") >= 1
    wait_for_percent(page, 5)
    assert any("upload-engine" in w.url or "worker" in w.url for w in page.workers), [
        w.url for w in page.workers
    ]

    # 3 to 4 chunk PUTs at once on the wire, never more.
    most = 0
    for _ in range(30):
        most = max(most, chunks_in_flight(link, since=start))
        page.wait_for_timeout(50)
    assert 3 <= most <= 4, most

    # The rate and the time left, overall; bytes per file.
    expect(page.locator(".job-numbers")).to_contain_text(re.compile(r"B/s · about .+ left"))
    page.locator("summary", has_text="12 files").click()
    expect(page.locator(".file-progress li").first).to_contain_text(re.compile(r"/ \d"))

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("job-status-line")).to_have_text("Paused")
    # Screen readers hear the change through a polite live region.
    announced = page.get_by_test_id("job-progress").locator("[aria-live=polite]")
    expect(announced).to_have_text(re.compile(r"^Paused, \d+%$"))
    page.wait_for_timeout(1_000)
    mark = link.mark()
    paused_at = percent(page)
    page.wait_for_timeout(2_500)
    assert link.chunk_puts(since=mark) == []
    assert percent(page) == paused_at

    page.get_by_role("button", name="Resume").click()
    # Resuming sends chunks again. (Progress alone is no proof: on resume the engine also counts
    # what the gateway confirmed for requests cut short by the pause.)
    for _ in range(300):
        if link.chunk_puts(since=mark):
            break
        page.wait_for_timeout(100)
    assert link.chunk_puts(since=mark), "no chunk sent within 30 s of Resume"
    wait_for_percent(page, paused_at + 5)

    upload_id = server_upload_id(api, tokens)
    assert stored_blob_count(page) == 12
    page.get_by_role("button", name="Cancel upload").click()
    page.get_by_role("dialog", name="Cancel this upload?").get_by_role(
        "button", name="Cancel upload"
    ).click()
    expect(page.get_by_text("This upload was cancelled.")).to_be_visible()
    # Said only once the gateway confirmed the DELETE: until then the study could still go on.
    assert api.get(f"/uploads/{upload_id}", tokens)["state"] == "cancelled"
    assert stored_blob_count(page) == 0
