"""Reports and notifications in real Chromium against the real gateway and Orthanc: a report made
ready in the PACS reaches an open page live (list and unread badge, no reload) and its PDF
downloads; the list and the report read offline; a radiologist hears of a STAT study at once,
asks for more information and makes the report ready; notifications are marked read one by one
(with the keyboard) and all at once; axe finds nothing serious at 375 and 1280 px; after a
network cut the stream comes back by itself with a fresh ticket and replays what was missed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import PASSWORD, Api, sign_in_with_tokens, wait_for_service_worker
from tests.e2e.gateway import Gateway
from tests.e2e.orthanc import Orthanc
from tests.e2e.proxy import ThrottlingProxy
from tests.e2e.studies import write_study
from tests.e2e.test_pwa import no_horizontal_overflow, run_axe
from tests.e2e.test_upload import choose_folder, send
from tests.reports.documents import structured_report

WIDTHS = {"phone": 375, "desktop": 1280}
FINDINGS = "No acute intracranial abnormality."
IMPRESSION = "Normal CT head."

# The Notification API, recorded: a headless browser shows no system notifications, and the test
# needs to see which ones the app raised (a stand-in only for the OS's notification centre).
RECORD_NOTIFICATIONS = """
(() => {
  const shown = [];
  class RecordedNotification {
    static permission = 'granted';
    static requestPermission() { return Promise.resolve('granted'); }
    constructor(title, options) {
      const data = (options && options.data) || {};
      shown.push({ title, body: options && options.body, url: data.url });
    }
    close() {}
  }
  window.Notification = RecordedNotification;
  window.__shownNotifications = shown;
})();
"""


@pytest.fixture
def pacs_required(pacs: Orthanc | None) -> Orthanc:
    if pacs is None:
        pytest.skip("Orthanc is not installed (make test installs it with apt)")
    return pacs


@pytest.fixture
def axe_context(browser: Browser, link: ThrottlingProxy) -> Iterator[BrowserContext]:
    # axe is injected as a script: the app's CSP would rightly refuse it.
    ctx = browser.new_context(
        base_url=link.url, bypass_csp=True, viewport={"width": 1280, "height": 900}
    )
    yield ctx
    ctx.close()


def store_in_orthanc(pacs: Orthanc, data: bytes) -> None:
    response = httpx.post(
        f"{pacs.url}/instances",
        content=data,
        auth=pacs.auth,
        headers={"Content-Type": "application/dicom"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def deliver(page: Page, study_dir: Path, *, stat: bool = False) -> None:
    """Send a study from the upload page and wait until the PACS has it."""
    page.goto("/upload")
    choose_folder(page, study_dir)
    if stat:
        page.locator("input[name=service_level][value=stat]").check()
    send(page)
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", "delivered", timeout=60_000
    )


def report_of(api: Api, tokens: dict[str, Any]) -> dict[str, Any]:
    items = api.get("/reports", tokens)["items"]
    assert len(items) == 1, items
    report: dict[str, Any] = items[0]
    return report


def badge_count(page: Page) -> int:
    badge = page.get_by_test_id("unread-badge")
    if badge.count() == 0:
        return 0
    return int(badge.get_attribute("data-count") or 0)


def shown_notifications(page: Page) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = page.evaluate("window.__shownNotifications || []")
    return shown


def test_a_report_ready_in_the_pacs_arrives_live_downloads_and_reads_offline(
    page: Page,
    account: tuple[str, dict[str, Any]],
    api: Api,
    study_dir: Path,
    pacs_required: Orthanc,
    tmp_path: Path,
) -> None:
    username, tokens = account
    write_study(study_dir, instances=2, patient_name="REPORT^RITA", patient_id="E2E-RPT-1")
    page.add_init_script(RECORD_NOTIFICATIONS)
    sign_in_with_tokens(page, username, tokens)
    deliver(page, study_dir)

    page.get_by_role("link", name="Reports", exact=True).click()
    reports = page.get_by_test_id("reports")
    expect(reports).to_contain_text("REPORT RITA")
    row = reports.locator("li").first
    expect(row.get_by_test_id("report-status")).to_have_attribute("data-status", "assigned")
    # The delivery itself is a notification: the badge shows it.
    expect(page.get_by_test_id("unread-badge")).to_have_attribute("data-count", "1")
    # Proof that nothing below reloads the page.
    page.evaluate("window.__sameDocument = true")

    # The reading centre's PACS gets the radiologist's Structured Report for the study ...
    report = report_of(api, tokens)
    evidence = (study_dir / "IM0001.dcm").read_bytes()
    sr = structured_report(
        evidence, findings=FINDINGS, impression=IMPRESSION, radiologist="Reader^Rosa"
    )
    store_in_orthanc(pacs_required, sr)
    # ... and the gateway looks for it (the look-up the minute job makes, asked for now).
    synced = api.http.post(
        f"/reports/{report['id']}/sync",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert synced.status_code == 200, synced.text
    assert synced.json()["status"] == "ready"

    expect(row.get_by_test_id("report-status")).to_have_attribute(
        "data-status", "ready", timeout=15_000
    )
    expect(page.get_by_test_id("unread-badge")).to_have_attribute("data-count", "2")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert [n["title"] for n in shown_notifications(page)] == ["Report ready"]
    # The pop-up carries its target, for the service worker's click handler.
    assert shown_notifications(page)[0]["url"] == f"/reports/{report['id']}"

    row.get_by_role("link").click()
    detail = page.get_by_test_id("report-detail")
    expect(detail).to_have_attribute("data-status", "ready")
    expect(page.get_by_test_id("report-text")).to_contain_text(FINDINGS)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download PDF").click()
    download = download_info.value
    assert download.suggested_filename == f"report-{report['id']}.pdf"
    saved = tmp_path / "report.pdf"
    download.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF-")

    # The notifications page, seen once online, keeps its newest page on this device too.
    page.get_by_role("link", name=re.compile(r"^Notifications")).first.click()
    expect(page.get_by_test_id("notifications")).to_contain_text("Report ready")

    # Offline: the list and the report opened before still read, from this device.
    wait_for_service_worker(page)
    page.context.set_offline(True)
    try:
        page.goto("/reports")
        expect(page.get_by_test_id("network-status")).to_have_text("Offline")
        expect(
            page.get_by_text("You are offline: this is the list as it was last seen")
        ).to_be_visible()
        expect(page.get_by_test_id("reports")).to_contain_text("REPORT RITA")
        page.get_by_test_id("reports").get_by_role("link").first.click()
        expect(
            page.get_by_text("You are offline: this is the report as it was last seen.")
        ).to_be_visible()
        expect(page.get_by_test_id("report-text")).to_contain_text(IMPRESSION)
        expect(page.get_by_role("button", name="Download PDF")).to_be_disabled()
        page.goto("/notifications")
        expect(page.get_by_text("You are offline — showing saved notifications")).to_be_visible()
        saved = page.get_by_test_id("notifications")
        expect(saved).to_contain_text("Report ready")
        expect(saved.get_by_role("link", name="Report ready")).to_have_attribute(
            "href", f"/reports/{report['id']}"
        )
        assert run_axe(page) == []
    finally:
        page.context.set_offline(False)


def test_a_click_on_a_system_notification_closes_it_and_brings_the_app_to_its_page(
    page: Page, account: tuple[str, dict[str, Any]]
) -> None:
    """Android shows notifications only through the service worker: its click handler does it."""
    username, tokens = account
    page.context.grant_permissions(["notifications"])
    sign_in_with_tokens(page, username, tokens)
    page.goto("/upload")
    wait_for_service_worker(page)
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30_000)
    worker = page.context.service_workers[0]
    # A real notification of the worker (what Android shows) ...
    worker.evaluate(
        """() => self.registration.showNotification('Report ready', {
            tag: 'e2e-click', data: { url: '/notifications?from=click' } })"""
    )
    assert (
        worker.evaluate(
            "() => self.registration.getNotifications({ tag: 'e2e-click' }).then(n => n.length)"
        )
        == 1
    )
    # ... clicked: a synthetic event cannot waitUntil(), so the listener's own function is
    # given the real notification, as the browser's event would give it.
    worker.evaluate(
        """async () => {
            const [notification] = await self.registration.getNotifications({ tag: 'e2e-click' });
            await self.relaypacsNotificationClick({ notification });
        }"""
    )
    expect(page).to_have_url(re.compile(r"/notifications\?from=click$"))
    expect(page.get_by_role("heading", name="Notifications", level=1)).to_be_visible()
    assert (
        worker.evaluate(
            "() => self.registration.getNotifications({ tag: 'e2e-click' }).then(n => n.length)"
        )
        == 0
    ), "the clicked notification stays in the tray"
    # Another site's address is never opened: the app's start page instead.
    worker.evaluate(
        """() => self.relaypacsNotificationClick({
            notification: { data: { url: 'https://example.org/x' }, close() {} } })"""
    )
    expect(page).to_have_url(re.compile(r"/upload$"))


def create_radiologist(gateway: Gateway, username: str) -> None:
    gateway.create_user(username, "radiologist", PASSWORD)


def too_wide(page: Page) -> list[str]:
    """The elements that stick out on the right, for the failure message."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(0, 8)
            .map((e) => `${e.tagName.toLowerCase()}.${e.className}`
                        + ` ${Math.round(e.getBoundingClientRect().right)}`)"""
    )
    return found


def check_screen(page: Page, screenshots: Path, name: str) -> None:
    """axe clean (serious, critical) and no sideways scrolling at both widths; screenshots."""
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        assert run_axe(page) == [], f"{name} at {label}"
        assert no_horizontal_overflow(page), f"{name} overflows at {width} px: {too_wide(page)}"
        page.screenshot(path=str(screenshots / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_radiologist_hears_of_a_stat_study_and_reports_it_and_the_sender_reads_it_all(
    page: Page,
    axe_context: BrowserContext,
    account: tuple[str, dict[str, Any]],
    api: Api,
    gateway: Gateway,
    study_dir: Path,
    pacs_required: Orthanc,
    screenshots: Path,
) -> None:
    username, tokens = account
    reader = f"{username}-rad"
    create_radiologist(gateway, reader)
    reader_tokens = api.login(reader)

    radiologist = axe_context.new_page()
    radiologist.add_init_script(RECORD_NOTIFICATIONS)
    sign_in_with_tokens(radiologist, reader, reader_tokens)
    radiologist.get_by_role("link", name="Notifications").click()
    expect(radiologist.get_by_role("heading", name="Notifications")).to_be_visible()

    write_study(study_dir, instances=2, patient_name="STAT^SAM", patient_id="E2E-RPT-2")
    sign_in_with_tokens(page, username, tokens)
    deliver(page, study_dir, stat=True)

    # The radiologist's open page hears of it at once: list, badge and a system notification.
    live_list = radiologist.get_by_test_id("notifications")
    expect(live_list.locator("li[data-type=stat_study_arrived]")).to_have_count(1, timeout=15_000)
    expect(radiologist.get_by_test_id("unread-badge")).not_to_have_count(0)
    assert "STAT study arrived" in [n["title"] for n in shown_notifications(radiologist)]

    # From the notification to the report; ask for more, then make it ready, with the keyboard.
    live_list.locator("li[data-type=stat_study_arrived]").get_by_role("link").click()
    expect(radiologist.get_by_test_id("report-detail")).to_have_attribute("data-status", "assigned")
    check_screen(radiologist, screenshots, "report-detail-radiologist")
    radiologist.get_by_label("Status").select_option("additional_data_required")
    radiologist.get_by_role("button", name="Save").click()
    expect(radiologist.get_by_text("Say what is needed from the sender.")).to_be_visible()
    radiologist.get_by_label("What is needed from the sender").fill("The prior CT, please.")
    radiologist.get_by_label("What is needed from the sender").press("Tab")
    radiologist.get_by_role("button", name="Save").focus()
    radiologist.keyboard.press("Enter")
    expect(radiologist.get_by_test_id("report-detail")).to_have_attribute(
        "data-status", "additional_data_required"
    )
    radiologist.get_by_label("Status").select_option("ready")
    radiologist.get_by_label("Report text").fill(f"{FINDINGS}\n{IMPRESSION}")
    radiologist.get_by_role("button", name="Save").click()
    expect(radiologist.get_by_test_id("report-detail")).to_have_attribute("data-status", "ready")
    expect(radiologist.get_by_test_id("report-text")).to_contain_text(IMPRESSION)
    assert api.get("/reports", tokens)["items"][0]["status"] == "ready"

    # The sender: delivered, more information needed, ready — three unread, live.
    owner = axe_context.new_page()
    owner.add_init_script(RECORD_NOTIFICATIONS)
    sign_in_with_tokens(owner, username, tokens)
    expect(owner.get_by_test_id("unread-badge")).to_have_attribute("data-count", "3")
    owner.get_by_role("link", name="Reports", exact=True).click()
    expect(owner.get_by_test_id("reports")).to_contain_text("STAT SAM")
    check_screen(owner, screenshots, "reports-list")
    owner.get_by_test_id("reports").get_by_role("link").first.click()
    expect(owner.get_by_test_id("report-text")).to_contain_text(IMPRESSION)
    check_screen(owner, screenshots, "report-detail")

    owner.get_by_role("link", name=re.compile(r"^Notifications")).click()
    items = owner.get_by_test_id("notifications").locator("li")
    expect(items).to_have_count(3)
    expect(owner.locator("li[data-read=false]")).to_have_count(3)
    check_screen(owner, screenshots, "notifications")

    # One read, with the keyboard: Tab to its button, Enter.
    first_toggle = items.first.get_by_role("button", name=re.compile("^Mark as read"))
    first_toggle.focus()
    owner.keyboard.press("Enter")
    expect(items.first).to_have_attribute("data-read", "true")
    expect(owner.get_by_test_id("unread-badge")).to_have_attribute("data-count", "2")
    # ... and unread again.
    items.first.get_by_role("button", name=re.compile("^Mark as unread")).click()
    expect(items.first).to_have_attribute("data-read", "false")
    expect(owner.get_by_test_id("unread-badge")).to_have_attribute("data-count", "3")
    owner.get_by_role("button", name="Mark all as read").click()
    expect(owner.locator("li[data-read=false]")).to_have_count(0)
    expect(owner.get_by_test_id("unread-badge")).to_have_count(0)
    assert api.get("/notifications/unread-count", tokens)["count"] == 0

    # The unread filter shows none now; the read filter all three.
    owner.get_by_label("Show").select_option("unread")
    expect(owner.get_by_text("No notifications.")).to_be_visible()
    owner.get_by_label("Show").select_option("read")
    expect(items).to_have_count(3)
    radiologist.close()
    owner.close()


def test_the_stream_comes_back_after_a_network_cut_and_replays_what_was_missed(
    page: Page,
    account: tuple[str, dict[str, Any]],
    api: Api,
    gateway: Gateway,
    study_dir: Path,
    pacs_required: Orthanc,
) -> None:
    username, tokens = account
    reader = f"{username}-rad"
    create_radiologist(gateway, reader)
    reader_tokens = api.login(reader)
    streams: list[str] = []
    page.on(
        "request",
        lambda request: (
            streams.append(request.url) if "/notifications/stream?" in request.url else None
        ),
    )
    write_study(study_dir, instances=2, patient_name="CUT^CARL", patient_id="E2E-RPT-3")
    sign_in_with_tokens(page, username, tokens)
    deliver(page, study_dir)
    page.get_by_role("link", name=re.compile(r"^Notifications")).click()
    items = page.get_by_test_id("notifications").locator("li")
    expect(items).to_have_count(1)
    page.evaluate("window.__sameDocument = true")
    opened = len(streams)
    assert opened >= 1
    assert "last_event_id" not in streams[0]

    page.context.set_offline(True)
    try:
        expect(page.get_by_test_id("network-status")).to_have_text("Offline")
        # While this device is cut off, the radiologist asks the sender for more information.
        report = report_of(api, tokens)
        asked = api.http.patch(
            f"/reports/{report['id']}",
            json={"status": "additional_data_required", "message": "The prior CT, please."},
            headers={"Authorization": f"Bearer {reader_tokens['access_token']}"},
        )
        assert asked.status_code == 200, asked.text
        page.wait_for_timeout(500)
        expect(items).to_have_count(1)
    finally:
        page.context.set_offline(False)

    # Back: a new stream (a fresh ticket) from where the last one stopped; the missed
    # notification arrives in the open page, and the badge counts it.
    expect(page.locator("li[data-type=additional_data_required]")).to_have_count(1, timeout=20_000)
    expect(page.get_by_test_id("unread-badge")).to_have_attribute("data-count", "2")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    resumed = streams[opened:]
    assert resumed, "no new stream after the network came back"
    assert all("last_event_id=" in url for url in resumed), resumed
    tickets = {parse_qs(urlsplit(url).query)["ticket"][0] for url in streams}
    assert len(tickets) == len(streams), "a ticket was used twice"


def test_the_minute_job_finds_a_report_the_pacs_already_holds(
    page: Page,
    account: tuple[str, dict[str, Any]],
    study_dir: Path,
    pacs_required: Orthanc,
) -> None:
    """No one asks: the gateway's periodic PACS look-up (every minute; every 5 s for these
    tests' gateway) makes the report ready. The SR is in Orthanc before the images are
    delivered, so the first look-up finds it."""
    username, tokens = account
    write_study(study_dir, instances=1, patient_name="JOB^JUNE", patient_id="E2E-RPT-4")
    evidence = (study_dir / "IM0001.dcm").read_bytes()
    store_in_orthanc(
        pacs_required,
        structured_report(
            evidence, findings=FINDINGS, impression=IMPRESSION, radiologist="Reader^Rosa"
        ),
    )
    sign_in_with_tokens(page, username, tokens)
    deliver(page, study_dir)
    page.get_by_role("link", name="Reports", exact=True).click()
    row = page.get_by_test_id("reports").locator("li").first
    expect(row).to_contain_text("JOB JUNE")
    expect(row.get_by_test_id("report-status")).to_have_attribute(
        "data-status", "ready", timeout=90_000
    )
    row.get_by_role("link").click()
    expect(page.get_by_test_id("report-text")).to_contain_text(FINDINGS)
    expect(page.get_by_text("From the structured report in the PACS.")).to_be_visible()
