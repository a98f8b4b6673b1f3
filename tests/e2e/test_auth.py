"""Registration, two-step verification and sign-in, through the PWA's screens."""

from __future__ import annotations

import time
from typing import Any

import pyotp
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD, Api, sign_in_with_tokens


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


def start_with_tokens(page: Page, tokens: dict[str, Any], access: str, expires_in_ms: int) -> None:
    page.goto("/sign-in")
    page.evaluate(
        """([refresh, access, ms]) => localStorage.setItem('relaypacs.tokens', JSON.stringify({
            access, refresh, expiresAt: Date.now() + ms }))""",
        [tokens["refresh_token"], access, expires_in_ms],
    )


def stored_tokens(page: Page) -> dict[str, Any]:
    stored: dict[str, Any] = page.evaluate(
        "JSON.parse(localStorage.getItem('relaypacs.tokens') ?? 'null')"
    )
    return stored


def test_an_access_token_about_to_expire_is_renewed_silently(
    page: Page, account: tuple[str, dict[str, Any]], api: Api
) -> None:
    username, tokens = account
    # The app believes the access token expires in 61 s: it renews it a minute ahead, unasked.
    start_with_tokens(page, tokens, tokens["access_token"], 61_000)
    page.goto("/settings")
    expect(page.get_by_test_id("username")).to_have_text(username)
    page.wait_for_function(
        "(old) => JSON.parse(localStorage.getItem('relaypacs.tokens') ?? '{}').refresh !== old",
        arg=tokens["refresh_token"],
        timeout=30_000,
    )
    renewed = stored_tokens(page)
    assert renewed["expiresAt"] > time.time() * 1000 + 120_000
    assert api.get("/auth/me", {"access_token": renewed["access"]})["username"] == username
    page.reload()
    expect(page.get_by_test_id("username")).to_have_text(username)


def test_a_refused_access_token_is_refreshed_and_the_request_retried(
    page: Page, account: tuple[str, dict[str, Any]]
) -> None:
    username, tokens = account
    # The gateway refuses this access token with a 401: the app refreshes and asks again.
    start_with_tokens(page, tokens, "not-a-valid-token", 3_600_000)
    page.goto("/settings")
    expect(page.get_by_test_id("username")).to_have_text(username)
    assert stored_tokens(page)["access"] != "not-a-valid-token"
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)


def test_signing_out_ends_the_session_on_the_gateway_too(
    page: Page, account: tuple[str, dict[str, Any]], api: Api
) -> None:
    username, tokens = account
    sign_in_with_tokens(page, username, tokens)
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_role("heading", name="Sign in").wait_for()
    assert stored_tokens(page) is None
    refused = api.http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refused.status_code == 401
    page.goto("/upload")
    page.get_by_role("heading", name="Sign in").wait_for()
