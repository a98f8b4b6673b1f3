"""Registration, two-step verification and sign-in, through the PWA's screens."""

from __future__ import annotations

import time

import pyotp
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD


def test_register_enable_two_step_verification_and_sign_in_with_the_code(page: Page) -> None:
    username = f"e2e-2fa-{int(time.time() * 1000) % 10**9}"
    page.goto("/register")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.org")
    password = page.get_by_label("Password", exact=True)
    password.fill("short")
    expect(page.get_by_text("Strength: Very weak")).to_be_visible()
    expect(page.locator(".rule--ok")).to_have_count(3)  # lower case, no username, ≤ 72 bytes
    password.fill(PASSWORD)
    expect(page.locator(".rule--ok")).to_have_count(7)
    page.get_by_role("button", name="Show password").click()
    expect(password).to_have_attribute("type", "text")
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="New upload").wait_for()

    page.get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Set up two-step verification").click()
    secret = page.get_by_test_id("totp-secret").text_content() or ""
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code from the app").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_test_id("recovery-codes").get_by_role("listitem")).to_have_count(10)

    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Two-step verification").wait_for()
    expect(page.get_by_label("Authentication code")).to_be_focused()
    page.get_by_label("Authentication code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    # The code of the next 30-second step: the one used to turn 2FA on cannot be used again.
    page.get_by_label("Authentication code").fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("heading", name="New upload").wait_for()
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_test_id("username")).to_have_text(username)


def test_a_wrong_password_is_refused_with_a_clear_message(page: Page) -> None:
    page.goto("/sign-in")
    page.get_by_label("Username or email").fill("nobody-here")
    page.get_by_label("Password", exact=True).fill("Wrong-Password-1!")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The username or password is wrong.")
