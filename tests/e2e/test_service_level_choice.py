"""The service level the clinician chose is the one sent, in real Chromium against the real
gateway, even when their default (the preferences) arrives after they chose: a STAT study
must never leave as the default level because the network was slow."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import Api, sign_in_with_tokens
from tests.e2e.studies import write_study
from tests.e2e.test_upload import choose_folder

# Not the gateway's default (1 MiB): seen in the upload's start, it shows the preferences had
# been applied by the page before the study was sent.
CHUNK_SIZE = 2 * 1024 * 1024


def test_a_level_chosen_before_the_preferences_arrive_is_kept_and_sent(
    page: Page, account: tuple[str, dict[str, Any]], api: Api, study_dir: Path
) -> None:
    username, tokens = account
    write_study(study_dir, instances=1, patient_id="E2E-LEVEL-RACE")
    api.put(
        "/users/me/preferences",
        tokens,
        {
            "default_service_level": "emergency",
            "chunk_size": CHUNK_SIZE,
            "duplicate_warnings": True,
        },
    )

    # The preferences are held (a slow network) until the clinician has chosen the level.
    held: list[Route] = []
    page.route("**/api/v1/users/me/preferences", lambda route: held.append(route))
    sign_in_with_tokens(page, username, tokens)
    choose_folder(page, study_dir)
    page.wait_for_function("() => true")  # let the route handler run
    assert held, "the upload page did not ask for the preferences"
    stat = page.get_by_role("radio", name=re.compile("^STAT"))
    page.get_by_text("STAT", exact=True).click()
    expect(stat).to_be_checked()

    # Their default (Emergency) arrives now: the choice stays.
    with page.expect_response("**/api/v1/users/me/preferences") as reply:
        for route in held:
            route.continue_()
    assert reply.value.json()["default_service_level"] == "emergency"
    page.unroute("**/api/v1/users/me/preferences")
    # The reply is handled in the same task as the chunk size it carries (sent below): give the
    # page a moment to run it before looking.
    page.wait_for_timeout(300)
    expect(stat).to_be_checked()
    expect(page.get_by_role("radio", name=re.compile("^Emergency"))).not_to_be_checked()

    with page.expect_request(
        lambda r: r.method == "POST" and r.url.split("?")[0].endswith("/api/v1/uploads"),
        timeout=30_000,
    ) as started:
        page.get_by_role("button", name="Send study").click()
    body = json.loads(started.value.post_data or "{}")
    # The preferences were in effect when the study was sent (their chunk size), and the level
    # is the clinician's.
    assert body.get("chunk_size") == CHUNK_SIZE, body
    assert body["study"]["service_level"] == "stat", body
    created = started.value.response()
    assert created is not None
    assert created.status == 201, created.text()
    upload = api.get(f"/uploads/{created.json()['upload_id']}", tokens)
    assert upload["study"]["service_level"] == "stat"
