"""One tablet, two clinicians: what one left queued on it is never shown to or sent as the next.

The app tells them apart by the owner it records in IndexedDB, next to the queue: localStorage
loses the writes of the last seconds when the browser is killed (see test_browser_restart.py),
and a device that forgot who signed in last must not take the next person for them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD, Api, queued_jobs, wait_for_service_worker
from tests.e2e.studies import write_study
from tests.e2e.test_upload import choose_folder


def queued_studies(page: Page) -> list[str]:
    """The patients of the studies queued on this device (the app's IndexedDB queue)."""
    names: list[str] = queued_jobs(page, "jobs => jobs.map(job => job.study.patient_name)")
    return names


def queue_offline_then_end_session_elsewhere(
    page: Page,
    api: Api,
    account: tuple[str, dict[str, Any]],
    study_dir: Path,
    patient: str,
    *,
    lose_local_storage: bool = False,
) -> None:
    """The account's user queues a study while offline; the study waits on the device. Then
    their session ends without a sign-out on this device (ended from another one), and back
    online the app finds its tokens refused.

    ``lose_local_storage``: first, what a browser killed a few seconds after the sign-in leaves
    behind (localStorage without it).
    """
    username, tokens = account
    sign_in(page, username, lands_on="New upload")
    wait_for_service_worker(page)
    choose_folder(page, study_dir)
    page.context.set_offline(True)
    page.get_by_role("button", name="Send study").click()
    page.get_by_role("dialog", name="You are offline").get_by_role(
        "button", name="Keep it and send later"
    ).click()
    page.wait_for_url(re.compile(r"/uploads/[0-9a-f-]+$"))
    assert queued_studies(page) == [patient]
    # A mark in this page's memory: gone only if the page reloads.
    page.evaluate("window.queuedHere = true")
    if lose_local_storage:
        page.evaluate("localStorage.clear()")
    ended = api.http.post(
        "/auth/logout-all", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert ended.is_success, ended.text
    page.context.set_offline(False)


def sign_in(page: Page, username: str, lands_on: str) -> None:
    """Through the sign-in screen, which hands the device over; done once `lands_on` shows."""
    if not page.url.endswith("/sign-in"):
        page.goto("/sign-in")
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=lands_on, exact=True).wait_for()


def test_the_next_user_gets_an_empty_queue_after_localstorage_lost_who_signed_in(
    page: Page, account: tuple[str, dict[str, Any]], api: Api, study_dir: Path
) -> None:
    alice, _ = account
    bob = f"{alice}-colleague"
    bob_tokens = api.register(bob)
    write_study(study_dir, instances=2, patient_name="SHARED^SAM", patient_id="E2E-SHARED")

    # Alice's study waits on the device; localStorage loses her sign-in (a killed browser), then
    # her session ends elsewhere: her queue stays.
    queue_offline_then_end_session_elsewhere(
        page, api, account, study_dir, "SHARED^SAM", lose_local_storage=True
    )
    page.goto("/uploads")
    page.get_by_role("heading", name="Sign in").wait_for()

    # Bob signs in on the same device (and lands where her session ended): nothing of Alice's
    # is shown to him or sent as him.
    sign_in(page, bob, lands_on="Uploads")
    assert queued_studies(page) == []
    expect(page.get_by_text("No uploads yet.")).to_be_visible()
    expect(page.get_by_role("heading", name="On this device")).to_have_count(0)
    expect(page.get_by_text("SHARED SAM")).to_have_count(0)
    assert api.get("/uploads", bob_tokens)["items"] == []
    assert api.get("/uploads", api.login(alice))["items"] == []
