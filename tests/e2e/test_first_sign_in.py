"""A one-time password (the first administrator's, or one an administrator set) is replaced at
the first sign-in, through the PWA's own screen, and the user carries on signed in."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Api
from tests.e2e.gateway import Gateway

NEW_PASSWORD = "Chosen-At-First-2026!"


def first_admin_password(gateway: Gateway) -> str:
    """The one-time password `relaypacs serve` printed at its first start."""
    found = re.search(r"username: admin\s+password: (\S+)", gateway.log.read_text(errors="replace"))
    assert found, "the gateway did not print the first administrator's password"
    return found.group(1)


def test_the_first_admin_chooses_a_password_at_first_sign_in_and_reaches_the_dashboard(
    page: Page, gateway: Gateway, api: Api
) -> None:
    one_time = first_admin_password(gateway)
    page.goto("/sign-in")
    page.get_by_label("Username or email").fill("admin")
    page.get_by_label("Password", exact=True).fill(one_time)
    page.get_by_role("button", name="Sign in").click()

    # Asked for a new password before anything else, in plain words; no menu to wander off to.
    expect(page.get_by_role("heading", name="Choose your password")).to_be_focused()
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    expect(page.get_by_text("POST /auth/password")).to_have_count(0)

    page.get_by_label("One-time password").fill(one_time)
    new_password = page.get_by_label("New password", exact=True)
    new_password.fill("too-short")
    page.get_by_role("button", name="Save and continue").click()
    expect(page.get_by_text("The new password does not meet every rule yet.")).to_be_visible()
    expect(new_password).to_have_attribute("aria-invalid", "true")
    new_password.fill(NEW_PASSWORD)
    expect(page.locator(".rule--ok")).to_have_count(7)
    page.get_by_role("button", name="Save and continue").click()

    # Signed in again with the new password (the change ended the one-time sign-in): the app opens.
    page.get_by_role("heading", name="New upload").wait_for()
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("dashboard-figures")).to_have_attribute("data-loaded", "true")

    refused = api.http.post("/auth/login", json={"username": "admin", "password": one_time})
    assert refused.status_code == 401, refused.text
    signed_in = api.http.post("/auth/login", json={"username": "admin", "password": NEW_PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["must_change_password"] is False
