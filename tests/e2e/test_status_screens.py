"""What the PWA tells the user about a study after "Send study", in real Chromium against the
real gateway: files the gateway left out, the study an upload is for, an upload that does not
exist, the network going away, the dashboard under the analytics rate limit, and where the
keyboard focus goes when the form cannot be sent."""

from __future__ import annotations

import re
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect
from pydicom.data import get_testdata_file

from tests.e2e.conftest import Api, sign_in_with_tokens, store_tokens
from tests.e2e.gateway import Gateway, free_port
from tests.e2e.studies import write_study
from tests.e2e.test_upload import ACCEPTED, choose_folder, send

DECLARED = {
    "patient_name": "ROE^RICHARD",
    "patient_id": "E2E-ELSEWHERE",
    "study_date": "2026-02-01",
    "modality": "MR",
    "service_level": "stat",
    "study_description": "MR KNEE LEFT",
}


def damage(file: Path) -> None:
    """Cut the file off inside its pixel data: the header still reads (the browser's check
    passes and the file is sent), the gateway's structure walk finds the value cut short."""
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 2 // 3])


def add_dicomdir(folder: Path) -> None:
    """A DICOMDIR (pydicom's own), as on a CD export: an index of the media, not an image."""
    index = pydicom.dcmread(str(get_testdata_file("DICOMDIR")))
    index.save_as(folder / "DICOMDIR", enforce_file_format=True)


def delivered_or_accepted(pacs: Any) -> re.Pattern[str] | str:
    return "delivered" if pacs is not None else ACCEPTED


def declare_upload(api: Api, tokens: dict[str, Any]) -> str:
    """An upload started from another device (the API, as any client does): the study is
    declared, no file has arrived yet, and this browser has no job or history for it."""
    response = api.http.post(
        "/uploads",
        json={"study": DECLARED, "files": [{"name": "IM0001.dcm", "size": 40_000}]},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert response.status_code == 201, response.text
    upload_id: str = response.json()["upload_id"]
    return upload_id


def status_requests(page: Page, upload_id: str) -> list[str]:
    """Every GET of this upload's status the page makes from now on (sent, or tried offline)."""
    seen: list[str] = []

    def note(request: Request) -> None:
        if request.method == "GET" and request.url.split("?")[0].endswith(
            f"/api/v1/uploads/{upload_id}"
        ):
            seen.append(request.url)

    page.on("request", note)
    return seen


def test_a_damaged_file_is_named_with_its_reason_and_the_dicomdir_is_not(
    page: Page, account: tuple[str, dict[str, Any]], study_dir: Path, pacs: Any
) -> None:
    username, tokens = account
    write_study(study_dir, instances=4, patient_id="E2E-LEFT-OUT")
    damage(study_dir / "IM0003.dcm")
    add_dicomdir(study_dir)
    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    # The browser reads headers only: the damaged file looks like the others and is sent; the
    # DICOMDIR and the text file stay on the device.
    expect(page.get_by_role("heading", name=re.compile("4 DICOM files"))).to_be_visible()
    expect(page.get_by_text("2 files are not DICOM and will not be sent")).to_be_visible()
    send(page)

    status = page.get_by_test_id("server-status")
    expect(status).to_have_attribute("data-state", delivered_or_accepted(pacs), timeout=30_000)
    left_out = page.get_by_test_id("left-out")
    # Not all green: a warning that names the file and says why.
    expect(left_out.locator(".alert--warning")).to_be_visible()
    if pacs is not None:
        expect(left_out).to_contain_text("3 of 4 files delivered — 1 left out")
    else:
        expect(left_out).to_contain_text("1 of 4 files could not be used")
    items = left_out.locator("li")
    expect(items).to_have_count(1)
    reason = r"the file is damaged or incomplete \(truncated or malformed: "
    expect(items).to_have_text(re.compile(rf"^study/IM0003\.dcm: {reason}"))
    expect(status).not_to_contain_text("DICOMDIR")


def test_a_dicomdir_inside_a_zip_is_not_counted_as_left_out_but_a_damaged_entry_is(
    page: Page,
    account: tuple[str, dict[str, Any]],
    study_dir: Path,
    tmp_path: Path,
    pacs: Any,
) -> None:
    username, tokens = account
    write_study(study_dir, instances=3, patient_id="E2E-LEFT-OUT-ZIP")
    damage(study_dir / "IM0002.dcm")
    add_dicomdir(study_dir)
    archive = tmp_path / "cd-export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(study_dir.iterdir()):
            if file.suffix != ".txt":
                zf.write(file, file.name)
    sign_in_with_tokens(page, username, tokens)
    page.get_by_test_id("pick-files").set_input_files(archive)
    page.get_by_role("button", name="Send study").wait_for()
    send(page)

    # The ZIP travels whole: the gateway opens it, skips the DICOMDIR and leaves out IM0002.
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", delivered_or_accepted(pacs), timeout=30_000
    )
    left_out = page.get_by_test_id("left-out")
    if pacs is not None:
        expect(left_out).to_contain_text("Delivered — but 1 file could not be used")
    items = left_out.locator("li")
    expect(items).to_have_count(1)
    expect(items).to_have_text(
        re.compile(r"^cd-export\.zip / IM0002\.dcm: the file is damaged or incomplete")
    )
    expect(left_out).not_to_contain_text("DICOMDIR")


def test_an_upload_from_another_device_shows_the_study_as_declared(
    page: Page, account: tuple[str, dict[str, Any]], api: Api
) -> None:
    username, tokens = account
    upload_id = declare_upload(api, tokens)
    sign_in_with_tokens(page, username, tokens)
    page.goto(f"/uploads/{upload_id}")

    expect(page.get_by_test_id("server-status")).to_have_attribute("data-state", "created")
    study = page.get_by_test_id("study-summary")
    expect(study.locator(".study-header__patient")).to_have_text("ROE RICHARD")
    expect(study).to_contain_text("MR · 2026-02-01")
    expect(study.locator(".badge--stat")).to_have_text("STAT")
    expect(study).to_contain_text("1 file,")
    expect(study).to_contain_text("MR KNEE LEFT")
    expect(page.get_by_test_id("server-state")).to_have_text("Waiting for the files")


def test_an_unknown_upload_says_not_found_and_stops_asking(
    page: Page, account: tuple[str, dict[str, Any]]
) -> None:
    username, tokens = account
    sign_in_with_tokens(page, username, tokens)
    # With the live stream open the page asks only every 15 s; without it, every 2 s. Cut the
    # stream, so that a page that kept asking would be caught within the few seconds below.
    page.route(re.compile(r"/api/v1/notifications/stream\?"), lambda route: route.abort())
    unknown = str(uuid.uuid4())
    asked = status_requests(page, unknown)
    page.goto(f"/uploads/{unknown}")

    status = page.get_by_test_id("server-status")
    expect(status).to_have_attribute("data-state", "not-found")
    expect(status).to_contain_text("No such upload.")
    expect(status).not_to_contain_text("Asking the gateway")
    expect(status.locator(".stepper")).to_have_count(0)
    expect(page.get_by_test_id("study-summary")).to_have_count(0)
    page.wait_for_timeout(4_500)
    # Nor does the network coming back make it ask again.
    page.context.set_offline(True)
    expect(page.get_by_test_id("network-status")).to_have_text("Offline")
    page.context.set_offline(False)
    expect(page.get_by_test_id("network-status")).to_have_text("Online")
    page.wait_for_timeout(500)
    assert len(asked) == 1, asked


def test_offline_the_detail_page_keeps_the_last_state_and_refreshes_itself_when_back(
    page: Page, account: tuple[str, dict[str, Any]], api: Api
) -> None:
    username, tokens = account
    upload_id = declare_upload(api, tokens)
    sign_in_with_tokens(page, username, tokens)
    page.goto(f"/uploads/{upload_id}")
    status = page.get_by_test_id("server-status")
    expect(status).to_have_attribute("data-state", "created")
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    page.context.set_offline(True)
    expect(page.get_by_test_id("network-status")).to_have_text("Offline")
    expect(status).to_contain_text("You are offline — this is the last known state.")
    # Meanwhile the upload is cancelled from elsewhere; this page cannot know yet.
    cancelled = api.http.delete(
        f"/uploads/{upload_id}", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert cancelled.status_code == 204, cancelled.text
    asked = status_requests(page, upload_id)
    page.wait_for_timeout(2_500)  # more than the 2 s between polls
    assert asked == [], "the page asked the gateway while offline"
    expect(status).to_have_attribute("data-state", "created")
    expect(page.get_by_test_id("server-state")).to_have_text("Waiting for the files")
    expect(page.get_by_test_id("study-summary")).to_contain_text("ROE RICHARD")

    page.context.set_offline(False)
    expect(status).to_have_attribute("data-state", "cancelled", timeout=10_000)
    expect(page.get_by_test_id("server-state")).to_have_text("Cancelled")
    expect(status).not_to_contain_text("You are offline")
    assert page.evaluate("window.sameDocument === true"), "the page was reloaded"


@pytest.fixture(scope="module")
def rate_limited_gateway(
    tmp_path_factory: pytest.TempPathFactory, web_dist: Path
) -> Iterator[Gateway]:
    """A gateway of its own allowing 2 analytics reads per 5 s: one dashboard view (summary and
    trends), then the next period is refused for a few seconds, not the 60 of the real limit."""
    server = Gateway(
        tmp_path_factory.mktemp("rate-limited-gateway"),
        free_port(),
        web_dist,
        {"RELAYPACS_ANALYTICS_RATE_LIMIT": "2/5 seconds"},
    )
    server.start()
    yield server
    server.stop()


def spend_the_analytics_budget(api: Api, tokens: dict[str, Any]) -> None:
    """Two analytics reads of the test's own, both allowed, just now: the window (2 per 5 s)
    holds these two and nothing older, so the page's next read is refused with a wait of about
    5 s, however long the page took to get here (a loaded machine)."""
    allowed = 0
    deadline = time.monotonic() + 15
    while allowed < 2:
        response = api.http.get(
            "/analytics/summary",
            params={"period": "all"},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        if response.status_code == 200:
            allowed += 1
        else:
            # The page's own reads still fill the window: a slot frees within 5 s.
            assert response.status_code == 429, response.text
            assert time.monotonic() < deadline, "the analytics budget never freed up"
            time.sleep(0.25)


def test_the_dashboard_keeps_its_figures_when_rate_limited_and_recovers_by_itself(
    browser: Browser, rate_limited_gateway: Gateway
) -> None:
    api = Api(rate_limited_gateway.url)
    context = browser.new_context(
        base_url=rate_limited_gateway.url, viewport={"width": 1280, "height": 900}
    )
    errors: list[str] = []
    try:
        username = "e2e-dashboard-429"
        tokens = api.register(username)
        declare_upload(api, tokens)  # one upload, so the figures are not all zero
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        refused: list[int] = []
        page.on(
            "response",
            lambda r: refused.append(r.status) if "/api/v1/analytics/" in r.url else None,
        )
        # The week's reads: the first one finds the budget just spent (so the refusal does not
        # hang on how soon after the first view the period is changed), and the reads after the
        # wait are held until the test has looked at the screen meanwhile.
        week = {"asked": 0, "hold": True}
        held: list[Route] = []

        def week_read(route: Route) -> None:
            week["asked"] += 1
            if week["asked"] == 1:
                spend_the_analytics_budget(api, tokens)
            if week["asked"] > 2 and week["hold"]:
                held.append(route)
            else:
                route.continue_()

        page.route(re.compile(r"/api/v1/analytics/(summary|trends)\?period=1w"), week_read)
        sign_in_with_tokens(page, username, tokens)
        page.goto("/dashboard")
        figures = page.get_by_test_id("dashboard-figures")
        expect(figures).to_have_attribute("data-loaded", "true", timeout=15_000)
        expect(page.get_by_test_id("card-uploads")).to_have_text("1")

        page.get_by_role("radio", name=re.compile("^1W")).check()
        wait = page.get_by_test_id("dashboard-wait")
        # (Spending the budget may wait up to 5 s for the first view's reads to leave the window.)
        expect(wait).to_contain_text(
            re.compile(r"the figures will refresh in \d s\."), timeout=15_000
        )
        expect(wait).to_contain_text("Until then these are the figures for the last 30 days.")
        assert 429 in refused
        # The last figures stay on screen, no skeleton in their place.
        expect(page.get_by_test_id("card-uploads")).to_have_text("1")
        expect(page.get_by_test_id("dashboard-skeleton")).to_have_count(0)
        # A live countdown: the seconds go down.
        notice = wait.inner_text()
        first = re.search(r"in (\d+) s", notice)
        assert first, notice
        if int(first[1]) >= 2:  # (a loaded machine may look only in the last second)
            expect(wait).to_contain_text(f"in {int(first[1]) - 1} s", timeout=2_000)

        # The wait over, it asks again by itself; until the answer comes the figures stay.
        expect(wait).to_contain_text("the figures will refresh now", timeout=10_000)
        expect(wait).to_contain_text("Until then these are the figures for the last 30 days.")
        expect(page.get_by_test_id("card-uploads")).to_have_text("1")
        expect(page.get_by_test_id("dashboard-skeleton")).to_have_count(0)
        assert held, "the week's figures were not asked for again"
        week["hold"] = False
        for route in held:
            route.continue_()

        # The week's figures come.
        expect(figures).to_have_attribute("data-loaded", "true", timeout=15_000)
        expect(wait).to_have_count(0)
        expect(page.get_by_test_id("card-uploads")).to_have_text("1")
        expect(page.get_by_role("radio", name=re.compile("^1W"))).to_be_checked()
        assert refused[-1] == 200
    finally:
        context.close()
        api.http.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def test_kept_figures_stay_on_screen_when_the_next_period_is_refused(
    browser: Browser, rate_limited_gateway: Gateway
) -> None:
    """Figures the page took from its cache (not asked of the gateway again) are on screen too:
    refused the next period, it keeps them rather than a blank dashboard."""
    api = Api(rate_limited_gateway.url)
    context = browser.new_context(
        base_url=rate_limited_gateway.url, viewport={"width": 1280, "height": 900}
    )
    errors: list[str] = []
    try:
        username = "e2e-dashboard-429-kept"
        tokens = api.register(username)
        declare_upload(api, tokens)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in_with_tokens(page, username, tokens)
        page.goto("/dashboard")
        figures = page.get_by_test_id("dashboard-figures")
        expect(figures).to_have_attribute("data-loaded", "true", timeout=15_000)
        # Away and back within the app: the 30 days' figures come from the page's cache.
        analytics: list[str] = []
        page.on("request", lambda r: analytics.append(r.url) if "/analytics/" in r.url else None)
        page.get_by_role("link", name="New upload").click()
        page.get_by_role("heading", name="New upload").wait_for()
        page.get_by_role("link", name="Dashboard").click()
        expect(figures).to_have_attribute("data-loaded", "true")
        expect(page.get_by_test_id("card-uploads")).to_have_text("1")
        assert analytics == [], analytics

        # The week's first read finds the budget just spent: refused, however long this took.
        spent: list[bool] = []

        def week_read(route: Route) -> None:
            if not spent:
                spend_the_analytics_budget(api, tokens)
                spent.append(True)
            route.continue_()

        page.route(re.compile(r"/api/v1/analytics/(summary|trends)\?period=1w"), week_read)
        page.get_by_role("radio", name=re.compile("^1W")).check()
        wait = page.get_by_test_id("dashboard-wait")
        # (Spending the budget may wait up to 5 s for the first view's reads to leave the window.)
        expect(wait).to_contain_text(
            "Until then these are the figures for the last 30 days.", timeout=15_000
        )
        expect(page.get_by_test_id("card-uploads")).to_have_text("1")
        expect(page.get_by_test_id("dashboard-skeleton")).to_have_count(0)
        expect(figures).to_have_attribute("data-loaded", "true", timeout=15_000)
        expect(wait).to_have_count(0)
    finally:
        context.close()
        api.http.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def test_a_form_that_cannot_be_sent_puts_the_focus_on_the_first_field_to_correct(
    page: Page, account: tuple[str, dict[str, Any]], api: Api, study_dir: Path
) -> None:
    username, tokens = account
    write_study(study_dir, instances=1, patient_id="E2E-FOCUS")
    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    page.get_by_label("Patient name").fill("")
    page.get_by_label("Modality").fill("C T")
    page.get_by_role("button", name="Send study").click()

    patient = page.get_by_label("Patient name")
    expect(patient).to_be_focused()
    assert page.evaluate("document.activeElement.name") == "patient_name"
    # The error is tied to the field, so a screen reader reads it out with the focus.
    expect(patient).to_have_attribute("aria-invalid", "true")
    expect(patient).to_have_accessible_description(re.compile("Enter the patient name."))

    patient.fill("DOE^JANE")
    page.get_by_role("button", name="Send study").click()
    expect(page.get_by_label("Modality")).to_be_focused()
    expect(page.get_by_label("Modality")).to_have_accessible_description(
        re.compile("C T is not a DICOM modality code")
    )
    assert page.url.endswith("/upload")
    assert api.get("/uploads", tokens)["items"] == []


def test_the_dashboard_asks_for_figures_only_once_it_knows_whose(
    page: Page, account: tuple[str, dict[str, Any]]
) -> None:
    """Figures are kept per viewer: asked for before the user is known, they would be kept under
    no one's name and spend the user's few analytics reads a minute twice."""
    _, tokens = account
    # Signed in by tokens alone, with no remembered user: the app must ask who this is first.
    store_tokens(page, tokens)
    held: list[Route] = []
    page.route(re.compile(r"/api/v1/auth/me$"), lambda route: held.append(route))
    analytics: list[str] = []
    page.on("request", lambda r: analytics.append(r.url) if "/api/v1/analytics/" in r.url else None)
    page.goto("/dashboard")
    expect(page.get_by_text("Loading the dashboard…")).to_be_visible()
    page.wait_for_timeout(1500)  # time enough for a premature request to show
    assert held, "the app did not ask who is signed in"
    assert analytics == []
    for route in held:
        route.continue_()
    page.unroute(re.compile(r"/api/v1/auth/me$"))
    expect(page.get_by_test_id("dashboard-figures")).to_have_attribute(
        "data-loaded", "true", timeout=15_000
    )
    assert len(analytics) == 2, analytics
