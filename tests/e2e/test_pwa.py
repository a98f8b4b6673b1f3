"""The app as an installable, offline-capable, accessible PWA: every screen, three widths."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from tests.e2e.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    REPO,
    Api,
    sign_in_with_tokens,
    wait_for_service_worker,
    wait_until_true,
)
from tests.e2e.gateway import Gateway, free_port
from tests.e2e.proxy import ThrottlingProxy
from tests.e2e.studies import write_study
from tests.e2e.test_upload import ACCEPTED, big_study, choose_folder, send, wait_for_percent

AXE = REPO / "web" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"phone": 375, "desktop": 1280}


def run_axe(page: Page) -> list[dict[str, Any]]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        """() => axe.run(document, {
            runOnly: { type: 'tag',
                       values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
        })"""
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def no_horizontal_overflow(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


# Every target a finger may tap, measured as laid out; a checkbox or radio counts with its label.
# Exempt (WCAG 2.5.5): links inside a sentence, and what is not on screen (the skip link
# before it has focus, the hidden file inputs behind their buttons).
SMALL_TARGETS = """() => {
    const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary';
    const small = [];
    for (const el of document.querySelectorAll(selector)) {
        const style = getComputedStyle(el);
        if (el.tagName === 'A' && style.display === 'inline') continue;
        const target = ['checkbox', 'radio'].includes(el.type) && el.closest('label')
            ? el.closest('label') : el;
        const box = target.getBoundingClientRect();
        const offScreen = box.width * box.height <= 1 || box.right <= 0;
        if (offScreen || style.visibility === 'hidden') continue;
        if (box.width < 44 || box.height < 44) {
            const name = (el.getAttribute('aria-label') || el.textContent || el.name || '').trim();
            small.push(`${el.tagName.toLowerCase()} "${name.slice(0, 40)}" `
                + `${Math.round(box.width)}x${Math.round(box.height)}`);
        }
    }
    return small;
}"""


def small_touch_targets(page: Page) -> list[str]:
    small: list[str] = page.evaluate(SMALL_TARGETS)
    return small


@pytest.fixture
def a11y_context(browser: Browser, link: ThrottlingProxy) -> Iterator[BrowserContext]:
    # axe is injected as a script: the app's CSP would rightly refuse it.
    ctx = browser.new_context(
        base_url=link.url, bypass_csp=True, viewport={"width": 1280, "height": 900}
    )
    yield ctx
    ctx.close()


def test_app_shell_and_history_load_offline(
    page: Page, account: tuple[str, dict[str, Any]], study_dir: Path
) -> None:
    username, tokens = account
    write_study(study_dir, instances=2, patient_name="OFFLINE^OLGA")
    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    send(page)
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=30_000
    )
    page.get_by_role("link", name="Uploads", exact=True).click()
    expect(page.get_by_test_id("history")).to_contain_text("OFFLINE OLGA")
    wait_for_service_worker(page)

    page.context.set_offline(True)
    page.reload()
    expect(page.get_by_test_id("network-status")).to_have_text("Offline")
    expect(
        page.get_by_text("You are offline: this is the list as it was last seen.")
    ).to_be_visible()
    expect(page.get_by_test_id("history")).to_contain_text("OFFLINE OLGA")
    page.goto("/upload")
    expect(page.get_by_role("heading", name="New upload")).to_be_visible()
    page.context.set_offline(False)
    expect(page.get_by_test_id("network-status")).to_have_text("Online", timeout=15_000)


def test_manifest_and_service_worker_meet_installability(
    page: Page, account: tuple[str, dict[str, Any]]
) -> None:
    username, tokens = account
    sign_in_with_tokens(page, username, tokens)
    wait_for_service_worker(page)
    page.reload()
    page.wait_for_function("!!navigator.serviceWorker.controller", timeout=15_000)

    manifest = json.loads(page.request.get("/manifest.webmanifest").text())
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"]
    assert manifest["start_url"] == "/"
    purposes = {icon.get("purpose", "any") for icon in manifest["icons"]}
    assert {"any", "maskable"} <= purposes
    for icon in manifest["icons"]:
        assert page.request.get(icon["src"]).headers["content-type"] == "image/png"
    assert {"192x192", "512x512"} <= {icon["sizes"] for icon in manifest["icons"]}

    cdp = page.context.new_cdp_session(page)
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    # Playwright's contexts are incognito, where Chromium never offers installs; every other
    # check (manifest, icons, service worker, secure origin) must pass.
    assert [e for e in errors if e["errorId"] != "in-incognito"] == []


def enable_two_step_verification(api: Api, tokens: dict[str, Any]) -> pyotp.TOTP:
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    setup = api.http.post("/auth/2fa/setup", headers=auth)
    assert setup.status_code == 200, setup.text
    totp = pyotp.TOTP(setup.json()["secret"])
    enabled = api.http.post("/auth/2fa/enable", headers=auth, json={"code": totp.now()})
    assert enabled.status_code == 200, enabled.text
    return totp


def test_every_screen_is_accessible_fits_320_px_and_is_photographed(
    a11y_context: BrowserContext,
    account: tuple[str, dict[str, Any]],
    api: Api,
    study_dir: Path,
    tmp_path: Path,
    link: ThrottlingProxy,
    screenshots: Path,
) -> None:
    page = a11y_context.new_page()
    write_study(study_dir, instances=3, patient_name="SCREEN^SAM")
    username, tokens = account
    two_step_user = f"{username}-2fa"
    enable_two_step_verification(api, api.register(two_step_user))

    def code_step() -> None:
        page.goto("/sign-in")
        page.get_by_label("Username or email").fill(two_step_user)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Authentication code").wait_for()

    public = {
        "sign-in": lambda: page.goto("/sign-in"),
        "register": lambda: (
            page.goto("/register"),
            page.get_by_label("Password", exact=True).fill("Relay-2026"),
        ),
        "sign-in-code": code_step,
    }
    for name, open_screen in public.items():
        check_screen(page, name, open_screen, screenshots)

    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    job_url = send(page)
    expect(page.get_by_test_id("server-status")).to_have_attribute(
        "data-state", ACCEPTED, timeout=30_000
    )

    def review() -> None:
        page.goto("/upload")
        choose_folder(page, study_dir)

    # The same study again: the gateway calls it a duplicate and the page asks what to do.
    review()
    duplicate_url = send(page)
    page.get_by_role("dialog", name="This study may already have been sent").wait_for()

    # A study on its way, paused half-way: the progress screen with its controls.
    big = tmp_path / "big"
    big_study(api, tokens, big)
    link.rate = 1_500_000
    page.goto("/upload")
    choose_folder(page, big)
    sending_url = send(page)
    wait_for_percent(page, 30)
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("job-status-line")).to_have_text("Paused")
    link.rate = None

    def paused() -> None:
        page.goto(f"/uploads/{sending_url}")
        expect(page.get_by_test_id("job-status-line")).to_have_text("Paused")

    def duplicate() -> None:
        page.goto(f"/uploads/{duplicate_url}")
        page.get_by_role("dialog", name="This study may already have been sent").wait_for()

    private = {
        "upload": lambda: page.goto("/upload"),
        "upload-review": review,
        "upload-sending": paused,
        "upload-duplicate": duplicate,
        "upload-status": lambda: page.goto(f"/uploads/{job_url}"),
        "uploads": lambda: (page.goto("/uploads"), page.get_by_test_id("history").wait_for()),
        "settings": lambda: (
            page.goto("/settings"),
            page.get_by_text("Default service level").wait_for(),
        ),
    }
    for name, open_screen in private.items():
        check_screen(page, name, open_screen, screenshots)


def check_screen(page: Page, name: str, open_screen: Any, screenshots: Path) -> None:
    page.set_viewport_size({"width": 320, "height": 800})
    open_screen()
    page.wait_for_load_state("networkidle")
    assert no_horizontal_overflow(page), f"{name} overflows horizontally at 320 px"
    violations = run_axe(page)
    assert violations == [], f"{name} at 320 px: {violations}"
    assert small_touch_targets(page) == [], f"{name}: touch targets under 44 px at 320 px"
    page.set_viewport_size({"width": 2560, "height": 1440})
    open_screen()
    page.wait_for_load_state("networkidle")
    assert no_horizontal_overflow(page), f"{name} overflows horizontally at 2560 px"
    assert small_touch_targets(page) == [], f"{name}: touch targets under 44 px at 2560 px"
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900 if width > 400 else 812})
        open_screen()
        page.wait_for_load_state("networkidle")
        if label == "desktop":
            violations = run_axe(page)
            assert violations == [], f"{name} at {width} px: {violations}"
        page.screenshot(path=str(screenshots / f"{name}-{width}.png"), full_page=True)


def test_every_screen_is_reachable_and_usable_by_keyboard(
    page: Page, account: tuple[str, dict[str, Any]], study_dir: Path
) -> None:
    username, _tokens = account
    write_study(study_dir, instances=1)
    page.goto("/sign-in")
    page.get_by_role("heading", name="Sign in").wait_for()
    page.evaluate("document.activeElement?.blur()")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    # Tab order: skip link, brand, then the form.
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement?.name") == "username":
            break
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New upload")).to_be_visible()

    def tab_to(name: str | re.Pattern[str], role: str) -> None:
        target = page.get_by_role(role, name=name, exact=isinstance(name, str))  # type: ignore[arg-type]
        for _ in range(30):
            page.keyboard.press("Tab")
            if target.evaluate("el => el === document.activeElement"):
                return
        raise AssertionError(f"{role} {name!r} cannot be reached with Tab")

    with page.expect_file_chooser() as chooser:
        tab_to("Choose a folder", "button")
        page.keyboard.press("Enter")
    chooser.value.set_files(study_dir)
    page.get_by_role("button", name="Send study").wait_for()
    # A radio group is one Tab stop (the checked one); arrows choose within it.
    tab_to(re.compile("^Routine"), "radio")
    page.keyboard.press("ArrowUp")
    expect(page.get_by_role("radio", name=re.compile("Emergency"))).to_be_checked()
    tab_to("Send study", "button")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/uploads/"))

    for link, heading in (
        ("Uploads", "Uploads"),
        ("Settings", "Settings"),
        ("New upload", "New upload"),
    ):
        page.locator("body").focus()
        tab_to(link, "link")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()


def test_the_install_button_appears_when_the_browser_offers_the_app(
    playwright_driver: Playwright, link: ThrottlingProxy, tmp_path: Path
) -> None:
    # A normal (not incognito) profile, where Chromium fires beforeinstallprompt once the
    # manifest and service worker qualify; the engagement heuristic is skipped for the test.
    context = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        args=[*CHROMIUM_ARGS, "--bypass-app-banner-engagement-checks"],
        base_url=link.url,
    )
    try:
        page = context.new_page()
        page.goto("/sign-in")
        wait_for_service_worker(page)
        page.reload()
        expect(page.get_by_role("button", name="Install app")).to_be_visible(timeout=30_000)
    finally:
        context.close()


def test_a_new_version_is_offered_and_applied_only_when_asked(
    browser: Browser, web_dist: Path, tmp_path: Path
) -> None:
    # A gateway of its own, serving a copy of the app that the test can "deploy" over.
    web = tmp_path / "web"
    shutil.copytree(web_dist, web)
    server = Gateway(tmp_path, free_port(), web)
    server.start()
    context = browser.new_context(base_url=server.url)
    try:
        page = context.new_page()
        page.goto("/sign-in")
        wait_for_service_worker(page)
        page.reload()
        page.wait_for_function("!!navigator.serviceWorker.controller", timeout=15_000)
        expect(page.get_by_text("A new version of RelayPACS is ready")).to_have_count(0)

        # A deploy: the service worker script changes; the app looks for it (hourly, here now).
        sw = web / "sw.js"
        sw.write_text(sw.read_text() + "\n// next release\n")
        page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.update())")
        prompt = page.get_by_role("alert").filter(has_text="A new version of RelayPACS is ready")
        expect(prompt).to_be_visible(timeout=30_000)
        # Nothing is swapped under the user's feet until they say so.
        assert page.evaluate("navigator.serviceWorker.getRegistration().then(r => !!r.waiting)")

        with page.expect_navigation():
            prompt.get_by_role("button", name="Update now").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        wait_until_true(
            page,
            "navigator.serviceWorker.getRegistration().then(r => !r.waiting && !!r.active)",
            timeout=15,
        )
        expect(page.get_by_text("A new version of RelayPACS is ready")).to_have_count(0)
    finally:
        context.close()
        server.stop()
