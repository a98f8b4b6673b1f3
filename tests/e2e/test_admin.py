"""The admin area in real Chromium against a real gateway and a real Orthanc: accounts (role,
disable), deliveries that wait or failed (reason, requeue) and the audit log (filters, CSV).

This module runs its own gateway, because a delivery has to fail: it is started with a wrong
password for Orthanc (Orthanc answers 401, which the gateway retries as a misconfigured PACS), so
a study waits in the queue with the PACS's reason; restarted with a tiny maximum age, the next
attempt gives up and the upload is `failed`; restarted with the right password, the admin's
requeue delivers it. The gateway keeps its port and data directory across restarts.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.e2e.conftest import PASSWORD, Api, sign_in_with_tokens
from tests.e2e.gateway import Gateway, free_port
from tests.e2e.orthanc import Orthanc
from tests.e2e.proxy import ThrottlingProxy
from tests.e2e.studies import write_study
from tests.e2e.test_pwa import check_screen, no_horizontal_overflow

_numbers = itertools.count(1)
WRONG_PASSWORD = "not-the-orthanc-password"


def _pacs_env(pacs: Orthanc, *, password: str, max_age_hours: str | None = None) -> dict[str, str]:
    env = {
        "RELAYPACS_PACS_URL": f"{pacs.url}/dicom-web",
        "RELAYPACS_PACS_KIND": "orthanc",
        "RELAYPACS_PACS_USERNAME": pacs.username,
        "RELAYPACS_PACS_PASSWORD": password,
        # Attempts every second or two, so a waiting study moves within the test's patience.
        "RELAYPACS_JOB_RETRY_BASE_SECONDS": "1",
        "RELAYPACS_JOB_RETRY_CAP_SECONDS": "2",
        # Keep the circuit closed, so that every attempt reaches Orthanc and the reason shown
        # is the PACS's own answer, not "circuit open".
        "RELAYPACS_PACS_BREAKER_FAILURES": "1000",
    }
    if max_age_hours is not None:
        env["RELAYPACS_FORWARD_MAX_AGE_HOURS"] = max_age_hours
    return env


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, web_dist: Path, pacs: Orthanc | None
) -> Iterator[Gateway]:
    if pacs is None:
        pytest.skip("Orthanc is not installed (make test installs it with apt)")
    server = Gateway(
        tmp_path_factory.mktemp("admin-gateway"),
        free_port(),
        web_dist,
        _pacs_env(pacs, password=WRONG_PASSWORD),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(gateway: Gateway) -> Iterator[ThrottlingProxy]:
    link = ThrottlingProxy(gateway.port)
    yield link
    link.close()


@pytest.fixture(scope="module")
def api(gateway: Gateway) -> Iterator[Api]:
    client = Api(gateway.url)
    yield client
    client.http.close()


def restart(gateway: Gateway, env: dict[str, str]) -> None:
    gateway.stop()
    gateway.extra_env = env
    gateway.start()


def make_admin(gateway: Gateway, api: Api) -> tuple[str, dict[str, Any]]:
    """An administrator, made the only way there is besides another admin: the CLI."""
    username = f"e2e-admin-{next(_numbers)}"
    gateway.create_user(username, "admin", PASSWORD)
    return username, api.login(username)


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def wait_until(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.5)


def upload_study(api: Api, tokens: dict[str, Any], folder: Path, patient: str) -> str:
    """A study sent over the upload protocol the way any client does: start, chunks, complete."""
    files = sorted(folder.glob("*.dcm"))
    contents = [f.read_bytes() for f in files]
    started = api.http.post(
        "/uploads",
        json={
            "study": {
                "patient_name": patient,
                "patient_id": "E2E-0001",
                "study_date": "2026-01-02",
                "modality": "CT",
                "service_level": "stat",
                "study_description": "CT HEAD",
            },
            "files": [
                {"name": f.name, "size": len(c)} for f, c in zip(files, contents, strict=True)
            ],
        },
        headers=bearer(tokens),
    )
    assert started.status_code == 201, started.text
    body = started.json()
    token = {"X-Upload-Token": body["upload_token"]}
    size = int(body["chunk_size"])
    for described, data in zip(body["files"], contents, strict=True):
        for index in range(int(described["chunk_count"])):
            chunk = data[index * size : (index + 1) * size]
            md5 = base64.b64encode(hashlib.md5(chunk).digest()).decode()
            put = api.http.put(
                f"/uploads/{body['upload_id']}/files/{described['file_id']}/chunks/{index}",
                content=chunk,
                headers={**token, "Content-MD5": md5},
            )
            assert put.status_code == 201, put.text
    completed = api.http.post(f"/uploads/{body['upload_id']}/complete", headers=token)
    assert completed.status_code == 202, completed.text
    return str(body["upload_id"])


def upload_state(api: Api, admin: dict[str, Any], upload_id: str) -> dict[str, Any]:
    status: dict[str, Any] = api.get(f"/uploads/{upload_id}", admin)
    return status


def open_admin(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()


def user_row(page: Page, username: str) -> Locator:
    return page.get_by_test_id("users-table").locator(f'tr[data-username="{username}"]')


def filter_audit(page: Page, *, user: str = "", concerning: bool = False, action: str = "") -> None:
    page.get_by_label("User", exact=True).fill(user)
    page.get_by_label("The user is").select_option("target" if concerning else "actor")
    page.get_by_label("Action").fill(action)
    page.get_by_role("button", name="Apply filters").click()


def test_admin_changes_a_role_and_disables_an_account(
    page: Page, gateway: Gateway, api: Api, tmp_path: Path
) -> None:
    admin_name, admin = make_admin(gateway, api)
    target_name = f"e2e-member-{next(_numbers)}"
    target = api.register(target_name)
    sign_in_with_tokens(page, admin_name, admin)
    open_admin(page)

    page.get_by_label("Name or email").fill(target_name)
    page.get_by_role("button", name="Search").click()
    row = user_row(page, target_name)
    expect(row.get_by_test_id("role")).to_have_text("clinician")

    row.get_by_role("button", name=f"Change role of {target_name}").click()
    dialog = page.get_by_role("dialog", name=f"Change the role of {target_name}")
    expect(dialog).to_be_visible()
    dialog.get_by_label("New role").select_option("radiologist")
    dialog.get_by_role("button", name="Change role").click()
    expect(page.get_by_text(f"{target_name} is now a radiologist.")).to_be_visible()
    expect(row.get_by_test_id("role")).to_have_text("radiologist")
    assert api.get("/users/me", target)["role"] == "radiologist"

    # Disabling is confirmed first; cancelling changes nothing.
    row.get_by_role("button", name=f"Disable {target_name}").click()
    confirm = page.get_by_role("dialog", name=f"Disable {target_name}?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(row.get_by_test_id("status")).to_have_text("Active")
    assert api.http.get("/users/me", headers=bearer(target)).status_code == 200

    row.get_by_role("button", name=f"Disable {target_name}").click()
    confirm.get_by_role("button", name="Disable account").click()
    expect(row.get_by_test_id("status")).to_have_text("Disabled")
    # The disabled account's very next request is refused, and its refresh token is dead.
    refused = api.http.get("/users/me", headers=bearer(target))
    assert refused.status_code == 401, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    again = api.http.post("/auth/refresh", json={"refresh_token": target["refresh_token"]})
    assert again.status_code in (401, 403), again.text
    assert api.http.post(
        "/auth/login", json={"username": target_name, "password": PASSWORD}
    ).status_code in (401, 403)

    # The audit log shows both changes to the account, and exports them as CSV.
    page.get_by_role("navigation", name="Administration").get_by_role(
        "link", name="Audit log"
    ).click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    filter_audit(page, user=target_name, concerning=True)
    table = page.get_by_test_id("audit-table")
    for action in ("role_changed", "user_disabled"):
        event = table.locator(f'tr[data-action="{action}"]')
        expect(event).to_have_count(1)
        expect(event).to_contain_text(admin_name)
    expect(table.locator('tr[data-action="role_changed"]')).to_contain_text(
        "from: clinician, to: radiologist"
    )
    filter_audit(page, user=target_name, concerning=True, action="user_disabled")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"action=user_disabled"))

    filter_audit(page, user=target_name, concerning=True)
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert re.fullmatch(r"relaypacs_audit_\d{8}T\d{6}Z\.csv", saved.name)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert {"user_registered", "role_changed", "user_disabled"} <= {r["action"] for r in rows}
    target_id = user_id_of(api, admin, target_name)
    assert all(r["target_id"] == target_id for r in rows)
    expect(page.get_by_text(f"Downloaded {saved.name}")).to_be_visible()
    # The export is itself audited.
    filter_audit(page, user=admin_name, action="audit_exported")
    expect(table.locator('tr[data-action="audit_exported"]')).to_have_count(1)


def test_admin_creates_an_account_that_must_choose_its_password(
    page: Page, gateway: Gateway, api: Api
) -> None:
    admin_name, admin = make_admin(gateway, api)
    taken = f"e2e-taken-{next(_numbers)}"
    api.register(taken)
    sign_in_with_tokens(page, admin_name, admin)
    open_admin(page)

    page.get_by_role("button", name="New user").click()
    dialog = page.get_by_role("dialog", name="New user")
    # A name in use: the gateway's refusal is shown in the dialog, which stays open.
    dialog.get_by_label("Username").fill(taken)
    dialog.get_by_label("Email").fill(f"{taken}-2@example.org")
    dialog.get_by_label("Temporary password").fill(PASSWORD)
    dialog.get_by_role("button", name="Create user").click()
    expect(dialog.get_by_role("alert")).to_contain_text(re.compile("taken|in use|exists", re.I))

    created = f"e2e-made-{next(_numbers)}"
    dialog.get_by_label("Username").fill(created)
    dialog.get_by_label("Email").fill(f"{created}@example.org")
    dialog.get_by_label("Role").select_option("radiographer")
    dialog.get_by_role("button", name="Create user").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_text(f"Created {created} (radiographer).")).to_be_visible()
    page.get_by_label("Name or email").fill(created)
    page.get_by_role("button", name="Search").click()
    expect(user_row(page, created).get_by_test_id("role")).to_have_text("radiographer")
    signed_in = api.http.post("/auth/login", json={"username": created, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["must_change_password"] is True


def user_id_of(api: Api, admin: dict[str, Any], username: str) -> str:
    page = api.get(f"/admin/users?q={username}", admin)
    return str(next(u["id"] for u in page["items"] if u["username"] == username))


def test_a_failed_delivery_shows_the_pacs_reason_and_requeue_delivers_it(
    page: Page, gateway: Gateway, api: Api, pacs: Orthanc, tmp_path: Path
) -> None:
    admin_name, admin = make_admin(gateway, api)
    uploader_name = f"e2e-sender-{next(_numbers)}"
    uploader = api.register(uploader_name)
    study = write_study(tmp_path / "study", instances=2, patient_name="ADMIN^DELIVERY")
    upload_id = upload_study(api, uploader, study, "ADMIN^DELIVERY")

    # Orthanc refuses the gateway's credentials: the study waits, with the reason.
    def waiting_with_reason() -> bool:
        status = upload_state(api, admin, upload_id)
        notes = [e["detail"] or "" for e in status["timeline"]]
        return status["state"] in ("queued", "forwarding") and any(
            "credentials" in n for n in notes
        )

    wait_until(waiting_with_reason, 60, "the upload to wait for the PACS")
    sign_in_with_tokens(page, admin_name, admin)
    open_admin(page)
    page.get_by_role("navigation", name="Administration").get_by_role(
        "link", name="Deliveries"
    ).click()
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
    row = page.locator(f'tr[data-upload-id="{upload_id}"]')
    expect(row.get_by_test_id("delivery-state")).to_have_text(re.compile("Queued|Forwarding"))
    expect(row).to_contain_text(uploader_name)
    expect(row).to_contain_text("STAT")
    expect(row.get_by_role("button", name=re.compile("^Requeue"))).to_have_count(0)
    row.get_by_role("button", name=re.compile("^Details")).click()
    trace = page.get_by_test_id("delivery-trace")
    expect(trace).to_contain_text("check the destination's credentials")
    expect(row.get_by_role("button", name=re.compile("^Hide details"))).to_have_attribute(
        "aria-expanded", "true"
    )

    # A tiny maximum age: the next attempt gives up and the upload fails with the reason.
    restart(gateway, _pacs_env(pacs, password=WRONG_PASSWORD, max_age_hours="0.0003"))
    wait_until(
        lambda: upload_state(api, admin, upload_id)["state"] == "failed", 60, "the upload to fail"
    )
    page.get_by_label("Show").select_option("failed")
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page).to_have_url(re.compile(r"show=failed"))
    expect(row.get_by_test_id("delivery-state")).to_have_text("Failed")
    reason = row.get_by_test_id("delivery-reason")
    expect(reason).to_contain_text("not delivered within")
    expect(reason).to_contain_text("check the destination's credentials")

    # The PACS is fixed; the admin runs the delivery again.
    restart(gateway, _pacs_env(pacs, password=pacs.password))
    page.reload()
    requeue = row.get_by_role("button", name=re.compile("^Requeue"))
    requeue.click()
    expect(page.get_by_test_id("requeue-message")).to_contain_text("Requeued")
    expect(row.get_by_test_id("delivery-state")).to_have_text("Queued")
    expect(row.get_by_test_id("delivery-reason")).to_have_text("Requeued by you.")
    wait_until(
        lambda: upload_state(api, admin, upload_id)["state"] == "delivered",
        60,
        "the requeued upload to be delivered",
    )
    page.get_by_label("Show").select_option("all")
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(row.get_by_test_id("delivery-state")).to_have_text("Delivered")
    expect(row.get_by_test_id("delivery-reason")).to_contain_text(
        "Delivered after an earlier failure"
    )
    # Orthanc holds the study now.
    study_uid = upload_state(api, admin, upload_id)["instances"][0]["study_instance_uid"]
    found = httpx.get(
        f"{pacs.url}/dicom-web/studies",
        params={"StudyInstanceUID": study_uid},
        auth=(pacs.username, pacs.password),
        timeout=10,
    )
    assert found.status_code == 200, found.text
    assert len(found.json()) == 1, found.text

    # A second requeue of a delivered study is refused by the gateway.
    second = api.http.post(f"/admin/uploads/{upload_id}/requeue", headers=bearer(admin))
    assert second.status_code == 409, second.text

    page.get_by_role("navigation", name="Administration").get_by_role(
        "link", name="Audit log"
    ).click()
    filter_audit(page, user=admin_name, action="upload.requeued")
    event = page.get_by_test_id("audit-table").locator('tr[data-action="upload.requeued"]')
    expect(event).to_have_count(1)
    expect(event).to_contain_text(f"upload {upload_id[:8]}")


def test_non_admins_never_see_the_admin_area(page: Page, api: Api) -> None:
    username = f"e2e-clinician-{next(_numbers)}"
    tokens = api.register(username)
    sign_in_with_tokens(page, username, tokens)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Uploads")).to_be_visible()
    expect(nav.get_by_role("link", name="Admin")).to_have_count(0)
    for path in ("/admin", "/admin/users", "/admin/deliveries", "/admin/audit"):
        page.goto(path)
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_test_id("not-allowed")).to_contain_text("clinician")
        expect(page.get_by_role("table")).to_have_count(0)
    for path in ("/admin/users", "/admin/uploads", "/admin/audit", "/admin/audit/export.csv"):
        response = api.http.get(path, headers=bearer(tokens))
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "insufficient_role"


@pytest.fixture
def a11y_context(browser: Browser, link: ThrottlingProxy) -> Iterator[BrowserContext]:
    # axe is injected as a script: the app's CSP would rightly refuse it.
    ctx = browser.new_context(
        base_url=link.url, bypass_csp=True, viewport={"width": 1280, "height": 900}
    )
    yield ctx
    ctx.close()


def test_admin_screens_are_accessible_fit_320_px_and_are_photographed(
    a11y_context: BrowserContext,
    browser: Browser,
    link: ThrottlingProxy,
    gateway: Gateway,
    api: Api,
    screenshots: Path,
) -> None:
    page = a11y_context.new_page()
    admin_name, admin = make_admin(gateway, api)
    # A long full name, under the username: it wraps rather than widening the table.
    full_name = "Dr. Maria Fernanda Oyelaran-Castellanos de la Vega y Montenegro"
    named = api.http.patch("/users/me", json={"full_name": full_name}, headers=bearer(admin))
    assert named.status_code == 200, named.text
    sign_in_with_tokens(page, admin_name, admin)

    def opener(path: str, ready: str) -> Callable[[], None]:
        def open_screen() -> None:
            page.goto(path)
            page.get_by_test_id(ready).wait_for()

        return open_screen

    def dialog_open() -> None:
        page.goto("/admin/users")
        page.get_by_role("button", name="New user").click()
        page.get_by_role("dialog", name="New user").wait_for()

    screens = {
        "admin-users": opener("/admin/users", "users-table"),
        "admin-new-user": dialog_open,
        "admin-deliveries": opener("/admin/deliveries?show=all", "deliveries-table"),
        "admin-audit": opener("/admin/audit", "audit-table"),
    }
    for name, open_screen in screens.items():
        check_screen(page, name, open_screen, screenshots)
    page.goto(f"/admin/users?q={admin_name}")
    expect(user_row(page, admin_name).get_by_test_id("full-name")).to_have_text(full_name)

    # A wide table scrolls inside its own box at 320 px; the page itself never does.
    page.set_viewport_size({"width": 320, "height": 800})
    page.goto("/admin/audit")
    page.get_by_test_id("audit-table").wait_for()
    assert no_horizontal_overflow(page)
    region = page.get_by_role("region", name=re.compile("Audit events"))
    assert region.evaluate("el => el.scrollWidth > el.clientWidth")

    clinician = f"e2e-refused-{next(_numbers)}"
    tokens = api.register(clinician)
    refused = browser.new_context(
        base_url=link.url, bypass_csp=True, viewport={"width": 1280, "height": 900}
    )
    try:
        tab = refused.new_page()
        sign_in_with_tokens(tab, clinician, tokens)

        def not_allowed() -> None:
            tab.goto("/admin")
            tab.get_by_role("heading", name="Not allowed").wait_for()

        check_screen(tab, "admin-not-allowed", not_allowed, screenshots)
    finally:
        refused.close()


def test_admin_screens_are_keyboard_usable(page: Page, gateway: Gateway, api: Api) -> None:
    admin_name, admin = make_admin(gateway, api)
    target_name = f"e2e-keys-{next(_numbers)}"
    api.register(target_name)
    sign_in_with_tokens(page, admin_name, admin)

    def tab_to(locator: Locator, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if locator.evaluate("el => el === document.activeElement"):
                return
        raise AssertionError(f"{locator} cannot be reached with Tab")

    page.locator("body").focus()
    tab_to(page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()

    tab_to(page.get_by_label("Name or email"))
    page.keyboard.type(target_name)
    page.keyboard.press("Enter")
    row = user_row(page, target_name)
    expect(page.get_by_test_id("users-table").locator("tbody tr")).to_have_count(1)

    tab_to(row.get_by_role("button", name=f"Change role of {target_name}"))
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=f"Change the role of {target_name}")
    expect(dialog).to_be_visible()
    # Esc closes the dialog without a change.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(row.get_by_test_id("role")).to_have_text("clinician")

    page.get_by_role("button", name=f"Change role of {target_name}").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    dialog.get_by_label("New role").focus()
    page.keyboard.press("ArrowDown")  # clinician -> radiographer
    tab_to(dialog.get_by_role("button", name="Change role"), limit=5)
    page.keyboard.press("Enter")
    expect(row.get_by_test_id("role")).to_have_text("radiographer")

    # The section tabs and the tables' scroll boxes are reachable too.
    tab_to(
        page.get_by_role("navigation", name="Administration").get_by_role("link", name="Audit log")
    )
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    tab_to(page.get_by_role("region", name=re.compile("Audit events")))
