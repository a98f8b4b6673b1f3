"""The dashboard and the settings screen in real Chromium against the real gateway (and Orthanc
when installed): figures that match what the test uploaded, the admin's filters and CSV, settings
that persist, "sign out everywhere" that really ends another device's sign-in, axe and keyboard."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.conftest import PASSWORD, Api, sign_in_with_tokens
from tests.e2e.gateway import Gateway
from tests.e2e.proxy import ThrottlingProxy
from tests.e2e.studies import write_study
from tests.e2e.test_pwa import WIDTHS, no_horizontal_overflow, run_axe
from tests.e2e.test_upload import ACCEPTED, choose_folder, send

FINAL = re.compile(r"^(delivered|partially_delivered|failed|rejected)$")


@pytest.fixture
def context(browser: Browser, link: ThrottlingProxy) -> Iterator[BrowserContext]:
    # axe is injected as a script: the app's CSP would rightly refuse it. Downloads are kept.
    ctx = browser.new_context(
        base_url=link.url,
        bypass_csp=True,
        accept_downloads=True,
        viewport={"width": 1280, "height": 900},
    )
    yield ctx
    ctx.close()


def format_seconds(seconds: float | None) -> str:
    """What the dashboard shows for a duration (features/dashboard/lib/figures.ts)."""
    if seconds is None:
        return "—"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min {s % 60} s" if s % 60 else f"{m} min"
    h = m // 60
    return f"{h} h {m % 60} min" if m % 60 else f"{h} h"


def with_modality(folder: Path, modality: str) -> Path:
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.Modality = modality
        ds.save_as(path, enforce_file_format=True)
    return folder


def dicom_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("*.dcm"))


def upload_and_wait(page: Page, folder: Path, *, pacs: Any, level: str = "Routine") -> None:
    page.goto("/upload")
    choose_folder(page, folder)
    page.get_by_text(level, exact=True).click()
    send(page)
    final = FINAL if pacs is not None else ACCEPTED
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", final, timeout=90_000
    )


def open_dashboard(page: Page, query: str = "") -> None:
    page.goto(f"/dashboard{query}")
    expect(page.get_by_test_id("dashboard-figures")).to_have_attribute(
        "data-loaded", "true", timeout=30_000
    )


def photograph(page: Page, name: str, screenshots: Path) -> None:
    """axe-clean and no sideways scrolling at 320 px and 1280 px; screenshots at 375 and 1280.
    The screen is not reloaded between widths (it is responsive, and every reload of the
    dashboard counts against the per-user analytics rate limit)."""
    for width in (320, *WIDTHS.values()):
        page.set_viewport_size({"width": width, "height": 900 if width > 400 else 812})
        # The charts follow the new width once their ResizeObserver has fired.
        with contextlib.suppress(PlaywrightTimeoutError):
            page.wait_for_function(
                "document.documentElement.scrollWidth <= window.innerWidth", timeout=5_000
            )
        assert no_horizontal_overflow(page), (
            f"{name} overflows horizontally at {width} px: {wider_than_the_window(page)}"
        )
        if width in (320, 1280):
            violations = run_axe(page)
            assert violations == [], f"{name} at {width} px: {violations}"
        if width in WIDTHS.values():
            page.screenshot(path=str(screenshots / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def wider_than_the_window(page: Page) -> list[str]:
    """What sticks out of the window (outside scroll boxes), for the failure message."""
    found: list[str] = page.evaluate(
        """() => {
            const name = el =>
                `${el.tagName.toLowerCase()}.${el.className?.baseVal ?? el.className}`;
            const clipped = el => {
                for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
                    if (getComputedStyle(up).overflowX !== 'visible') return true;
                }
                return false;
            };
            const out = [...document.querySelectorAll('body *')]
                .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
                .filter(el => !clipped(el))
                .slice(0, 8)
                .map(el => `${name(el)} ${Math.round(el.getBoundingClientRect().right)}`);
            const wide = [...document.querySelectorAll('main *')]
                .filter(el => el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
                .slice(0, 6)
                .map(el => `scrolls ${name(el)} ${el.scrollWidth}/${el.clientWidth}`);
            return [...out, ...wide, `document ${document.documentElement.scrollWidth}`];
        }"""
    )
    return found


def chart_table(page: Page, test_id: str) -> list[list[str]]:
    rows = page.get_by_test_id(test_id).locator("table tbody tr")
    return [
        [cell.strip() for cell in row.locator("th, td").all_text_contents()] for row in rows.all()
    ]


def create_admin(gateway: Gateway, username: str) -> None:
    gateway.create_user(username, "admin", PASSWORD)


def test_the_dashboard_shows_what_the_user_uploaded(
    page: Page,
    account: tuple[str, dict[str, Any]],
    api: Api,
    tmp_path: Path,
    pacs: Any,
    screenshots: Path,
) -> None:
    username, tokens = account
    ct = write_study(tmp_path / "ct", instances=3, patient_id="E2E-DASH-CT")
    mr = with_modality(write_study(tmp_path / "mr", instances=2, patient_id="E2E-DASH-MR"), "MR")
    sign_in_with_tokens(page, username, tokens)
    upload_and_wait(page, ct, pacs=pacs, level="STAT")
    upload_and_wait(page, mr, pacs=pacs)

    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_test_id("dashboard-figures")).to_have_attribute(
        "data-loaded", "true", timeout=30_000
    )
    # The cards: what this test sent, counted by the browser and by the gateway alike.
    expect(page.get_by_test_id("card-uploads")).to_have_text("2")
    expect(page.get_by_test_id("stat-cards")).to_contain_text(
        f"{dicom_bytes(ct) + dicom_bytes(mr):,} bytes"
    )
    expect(page.get_by_test_id("card-volume")).to_have_text("< 0.01 GB")
    summary = api.get("/analytics/summary?period=1m", tokens)
    assert summary["uploads"]["count"] == 2
    assert summary["uploads"]["bytes"] == dicom_bytes(ct) + dicom_bytes(mr)
    if pacs is not None:
        assert summary["outcomes"].get("delivered") == 2, summary["outcomes"]
        expect(page.get_by_test_id("card-success")).to_have_text("100 %")
        expect(page.get_by_test_id("stat-cards")).to_contain_text("2 of 2 delivered")
        ttp = summary["time_to_pacs"]
        assert ttp["count"] == 2
        assert ttp["median_seconds"] is not None
        expect(page.get_by_test_id("card-ttp-median")).to_have_text(
            format_seconds(ttp["median_seconds"])
        )
        expect(page.get_by_test_id("card-ttp-p95")).to_have_text(format_seconds(ttp["p95_seconds"]))
    else:
        expect(page.get_by_test_id("card-success")).to_have_text("—")
        expect(page.get_by_test_id("card-ttp-median")).to_have_text("—")

    # The charts' text equivalents hold the same figures.
    assert sorted(chart_table(page, "chart-modalities")) == [
        ["CT", "1", "< 0.01 GB"],
        ["MR", "1", "< 0.01 GB"],
    ]
    assert sorted(chart_table(page, "chart-service-levels")) == (
        [["Routine", "1", "1"], ["STAT", "1", "1"]]
        if pacs is not None
        else [["Routine", "1", "0"], ["STAT", "1", "0"]]
    )
    today = summary["scope"]["until"][:10]
    assert chart_table(page, "chart-daily-volume") == [
        [today, "2", str(round((dicom_bytes(ct) + dicom_bytes(mr)) / 1e6, 2))]
    ]
    assert chart_table(page, "chart-modality-trend")[0][0] == today
    expect(page.get_by_test_id("chart-outcomes")).to_be_visible()
    for figure in ("chart-modalities", "chart-daily-volume", "chart-outcomes"):
        expect(page.get_by_test_id(figure).locator("svg.recharts-surface").first).to_be_visible()

    # Not an admin: no filters, no CSV button, and the gateway refuses the CSV all the same.
    expect(page.get_by_role("button", name="Download CSV")).to_have_count(0)
    expect(page.get_by_label("User", exact=True)).to_have_count(0)
    refused = api.http.get(
        "/analytics/export.csv?period=1m",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "insufficient_role"

    photograph(page, "dashboard", screenshots)

    # The period filter by keyboard: one Tab stop, arrows choose, the address remembers it.
    page.get_by_role("radio", name=re.compile("^1M")).focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("radio", name=re.compile("^1W"))).to_be_checked()
    expect(page).to_have_url(re.compile(r"/dashboard\?period=1w$"))
    expect(page.get_by_test_id("dashboard-figures")).to_have_attribute(
        "data-loaded", "true", timeout=30_000
    )
    expect(page.get_by_test_id("card-uploads")).to_have_text("2")


def test_an_admin_filters_the_figures_and_downloads_the_csv(
    browser: Browser,
    link: ThrottlingProxy,
    gateway: Gateway,
    account: tuple[str, dict[str, Any]],
    api: Api,
    tmp_path: Path,
    pacs: Any,
    screenshots: Path,
) -> None:
    username, tokens = account
    ctx = browser.new_context(
        base_url=link.url,
        bypass_csp=True,
        accept_downloads=True,
        viewport={"width": 1280, "height": 900},
    )
    try:
        page = ctx.new_page()
        study = write_study(tmp_path / "study", instances=1, patient_id="E2E-DASH-CSV")
        sign_in_with_tokens(page, username, tokens)
        upload_and_wait(page, study, pacs=pacs)
        page.close()

        admin_name = f"e2e-admin-{int(time.time() * 1000) % 10**8}"
        create_admin(gateway, admin_name)
        admin_tokens = api.login(admin_name)
        me = api.get("/auth/me", tokens)
        page = ctx.new_page()
        sign_in_with_tokens(page, admin_name, admin_tokens)
        open_dashboard(page)
        expect(page.get_by_text("Uploads of every user")).to_be_visible()
        expect(page.get_by_role("button", name="Download CSV")).to_be_visible()

        # One user's figures: exactly the one study the clinician sent.
        expect(
            page.get_by_label("User", exact=True).locator(f"option[value='{me['id']}']")
        ).to_have_count(1)
        page.get_by_label("User", exact=True).select_option(me["id"])
        expect(page).to_have_url(re.compile(rf"user_id={me['id']}"))
        expect(page.get_by_test_id("dashboard-figures")).to_have_attribute(
            "data-loaded", "true", timeout=30_000
        )
        expect(page.get_by_test_id("card-uploads")).to_have_text("1")
        expect(page.get_by_test_id("stat-cards")).to_contain_text(f"{dicom_bytes(study):,} bytes")

        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download CSV").click()
        download = download_info.value
        assert download.suggested_filename == "relaypacs_stats_1m.csv"
        rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text("utf-8-sig"))))
        assert len(rows) == 1, rows
        assert rows[0]["user"] == username
        assert rows[0]["modality"] == "CT"
        assert int(rows[0]["bytes"]) == dicom_bytes(study)

        photograph(page, "dashboard-admin", screenshots)

        # A modality the user never sent: nothing.
        page.get_by_label("Modality", exact=True).select_option("MR")
        expect(page).to_have_url(re.compile(r"modality=MR"))
        expect(page.get_by_test_id("dashboard-figures")).to_have_attribute(
            "data-loaded", "true", timeout=30_000
        )
        expect(page.get_by_test_id("card-uploads")).to_have_text("0")
        expect(page.get_by_test_id("chart-modalities")).to_contain_text("No uploads")
    finally:
        ctx.close()


def test_settings_persist_and_sign_out_everywhere_ends_other_sessions(
    page: Page, account: tuple[str, dict[str, Any]], api: Api, screenshots: Path
) -> None:
    username, tokens = account
    other_device = api.login(username)
    sign_in_with_tokens(page, username, tokens)

    # Keyboard: the nav link, then the email field and Enter.
    page.locator("body").focus()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement?.textContent") == "Settings":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Settings", level=1)).to_be_visible()
    expect(page.get_by_text("Default service level")).to_be_visible()
    photograph(page, "settings", screenshots)

    # The full name: refused with a tab in it, saved trimmed, then shown as who is signed in.
    full_name = page.get_by_label("Full name")
    full_name.fill("Zoë\tMüller")
    full_name.press("Enter")
    expect(page.get_by_text("One line, without tabs or other control characters.")).to_be_visible()
    expect(full_name).to_have_attribute("aria-invalid", "true")
    full_name.fill("  Zoë Müller-Okafor  ")
    full_name.press("Enter")
    expect(page.get_by_text("Full name saved.")).to_be_visible()
    expect(full_name).to_have_value("Zoë Müller-Okafor")
    expect(page.get_by_test_id("signed-in-as")).to_have_text(
        f"Signed in as Zoë Müller-Okafor ({username})."
    )

    email = page.get_by_label("Email")
    email.fill(f"{username}.new@example.org")
    email.press("Enter")
    expect(page.get_by_text("Email address saved.")).to_be_visible()

    page.get_by_label("Default service level").select_option("emergency")
    page.get_by_label("Chunk size (advanced)").select_option(str(1024 * 1024))
    page.get_by_label("Warn me before sending a study I sent recently").uncheck()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Preferences saved.")).to_be_visible()

    page.reload()
    expect(page.get_by_label("Full name")).to_have_value("Zoë Müller-Okafor")
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("Zoë Müller-Okafor")
    expect(page.get_by_label("Email")).to_have_value(f"{username}.new@example.org")
    expect(page.get_by_label("Default service level")).to_have_value("emergency")
    expect(page.get_by_label("Chunk size (advanced)")).to_have_value(str(1024 * 1024))
    expect(page.get_by_label("Warn me before sending a study I sent recently")).not_to_be_checked()
    assert api.get("/users/me", tokens)["full_name"] == "Zoë Müller-Okafor"
    assert api.get("/users/me/preferences", tokens) == {
        "default_service_level": "emergency",
        "chunk_size": 1024 * 1024,
        "duplicate_warnings": False,
    }

    # Download my data: the JSON file holds what was just saved.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download my data").click()
    download = download_info.value
    assert re.fullmatch(
        rf"relaypacs_my_data_{re.escape(username)}_\d{{4}}-\d{{2}}-\d{{2}}\.json",
        download.suggested_filename,
    )
    exported = json.loads(Path(download.path()).read_text())
    assert exported["user"]["email"] == f"{username}.new@example.org"
    assert exported["user"]["full_name"] == "Zoë Müller-Okafor"
    assert exported["preferences"]["default_service_level"] == "emergency"

    # Two-step verification on (QR code, recovery codes) and off again.
    page.get_by_role("button", name="Set up two-step verification").click()
    expect(page.get_by_role("img", name="QR code for the authenticator app")).to_be_visible()
    totp = pyotp.TOTP(page.get_by_test_id("totp-secret").text_content() or "")
    page.get_by_label("Code from the app").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_test_id("recovery-codes").get_by_role("listitem")).to_have_count(10)
    assert api.get("/auth/me", tokens)["totp_enabled"] is True
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    # The code used to turn it on cannot be used again: the next 30-second step's code.
    page.get_by_label("Authentication code").fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Turn off two-step verification").click()
    expect(page.get_by_role("button", name="Set up two-step verification")).to_be_visible()
    assert api.get("/auth/me", tokens)["totp_enabled"] is False

    # Sign out everywhere, by keyboard: the other device's tokens stop working at once.
    assert api.http.get(
        "/auth/me", headers={"Authorization": f"Bearer {other_device['access_token']}"}
    ).is_success
    page.get_by_role("button", name="Sign out everywhere").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Sign out on every device?")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Sign out everywhere").click()
    dialog.get_by_role("button", name="Sign out on every device").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("localStorage.getItem('relaypacs.tokens')") is None

    refreshed = api.http.post(
        "/auth/refresh", json={"refresh_token": other_device["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert refreshed.json()["code"] == "invalid_refresh_token"
    me = api.http.get(
        "/auth/me", headers={"Authorization": f"Bearer {other_device['access_token']}"}
    )
    assert me.status_code == 401
    assert me.json()["code"] == "token_revoked"
    assert (
        api.http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code
        == 401
    )
