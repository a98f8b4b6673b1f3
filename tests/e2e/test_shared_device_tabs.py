"""One workstation, two tabs, two clinicians: a tab left open with Alice's queue must not carry on
under Bob's sign-in made in another tab.

Every tab reads the same localStorage, so Bob's tokens reach Alice's tab the moment he signs in;
her tab still holds her upload engine and its queue in memory. It has to stop that engine before
Bob's token gets to it, and reload into the session as it now is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import Api
from tests.e2e.proxy import ThrottlingProxy
from tests.e2e.studies import write_study
from tests.e2e.test_shared_device import (
    queue_offline_then_end_session_elsewhere,
    queued_studies,
    sign_in,
)


def test_a_tab_left_with_alices_queue_stops_when_bob_signs_in_in_another_tab(
    context: BrowserContext,
    page: Page,
    account: tuple[str, dict[str, Any]],
    api: Api,
    study_dir: Path,
    link: ThrottlingProxy,
) -> None:
    alice, _ = account
    bob = f"{alice}-colleague"
    bob_tokens = api.register(bob)
    write_study(study_dir, instances=2, patient_name="TABS^TERRY", patient_id="E2E-TABS")

    # Alice's study waits in her tab's engine, not yet on the gateway; her session ends without a
    # sign-out (ended from another device), and back online her tab goes to the sign-in screen
    # with her engine still holding her study.
    queue_offline_then_end_session_elsewhere(page, api, account, study_dir, "TABS^TERRY")
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.evaluate("window.queuedHere") is True

    # Bob opens a second tab on the workstation and signs in there.
    second = context.new_page()
    errors: list[str] = []
    second.on("pageerror", lambda error: errors.append(str(error)))
    since = link.mark()
    sign_in(second, bob, lands_on="New upload")

    # Alice's tab reloaded (its memory, her engine with it, is gone) into Bob's session...
    page.wait_for_function("() => window.queuedHere === undefined", timeout=10_000)
    page.wait_for_load_state()
    # ... and nothing of her study went out under his account, then or a moment later.
    page.wait_for_timeout(2_000)
    sent = [
        f"{exchange.method} {exchange.path}"
        for exchange in link.exchanges[since:]
        if exchange.method in ("POST", "PUT") and exchange.path.startswith("/api/v1/uploads")
    ]
    assert sent == []
    assert api.get("/uploads", bob_tokens)["items"] == []
    expect(page.get_by_text("TABS TERRY")).to_have_count(0)
    expect(second.get_by_text("TABS TERRY")).to_have_count(0)
    # Bob's sign-in handed the device over: Alice's study is gone from it.
    assert queued_studies(second) == []
    assert errors == []
