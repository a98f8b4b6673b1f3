"""The "Cancel this upload?" dialog tells the truth about the PACS, in real Chromium against a
real gateway and a real Orthanc.

With ``RELAYPACS_FORWARD_WHILE_RECEIVING`` the gateway sends each validated instance to the PACS
while the rest of the study still arrives, and a cancel does not take those instances back: the
dialog must say how many are already there, not that the study will not reach the reading
centre. This module runs its own gateway with that setting; the package's gateway (the default,
off) checks that the dialog keeps its usual promise there.

The upload is stopped half-way by holding the chunk PUTs after the first few (each file of the
study is one chunk): those files, and only those, reach the PACS.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page, Route, expect

from tests.e2e.conftest import Api, sign_in_with_tokens
from tests.e2e.gateway import Gateway, free_port
from tests.e2e.orthanc import Orthanc
from tests.e2e.studies import write_study
from tests.e2e.test_upload import choose_folder, send

CHUNK_PUT = re.compile(r"/api/v1/uploads/[^/]+/files/[^/]+/chunks/\d+$")
NOTHING_SENT = "The study will not reach the reading centre and its copy on this device is deleted."


@pytest.fixture(scope="module")
def forwarding_gateway(
    tmp_path_factory: pytest.TempPathFactory, web_dist: Path, pacs: Orthanc | None
) -> Iterator[Gateway]:
    if pacs is None:
        pytest.skip("Orthanc is not installed (make test installs it with apt)")
    server = Gateway(
        tmp_path_factory.mktemp("forwarding-gateway"),
        free_port(),
        web_dist,
        {
            "RELAYPACS_PACS_URL": f"{pacs.url}/dicom-web",
            "RELAYPACS_PACS_KIND": "orthanc",
            "RELAYPACS_PACS_USERNAME": pacs.username,
            "RELAYPACS_PACS_PASSWORD": pacs.password,
            "RELAYPACS_FORWARD_WHILE_RECEIVING": "true",
            # The early rounds start within a fraction of a second, not the default second.
            "RELAYPACS_JOB_POLL_SECONDS": "0.2",
        },
    )
    server.start()
    yield server
    server.stop()


class ChunkGate:
    """Lets the first ``allowed`` chunks through (and their retries), holds every other one."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.passed: set[str] = set()
        self.held: list[Route] = []

    def __call__(self, route: Route) -> None:
        url = route.request.url
        if url in self.passed or len(self.passed) < self.allowed:
            self.passed.add(url)
            route.continue_()
        else:
            self.held.append(route)

    def release(self) -> None:
        """Ends the held requests (the page may have given up on them already)."""
        for route in self.held:
            with contextlib.suppress(Error):
                route.abort()
        self.held.clear()


def small_chunks_of_one_file_each(api: Api, tokens: dict[str, Any]) -> None:
    """Files of about 33 KB in 1 MiB chunks: one chunk per file."""
    preferences = api.get("/users/me/preferences", tokens)
    api.put("/users/me/preferences", tokens, {**preferences, "chunk_size": 1_048_576})


def wait_until(page: Page, check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Waits in the page, not in `time.sleep`: Playwright runs the gate's route handler only
    while the test is inside one of its calls."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        page.wait_for_timeout(250)


def stored_in_pacs(api: Api, tokens: dict[str, Any], upload_id: str) -> int:
    status = api.get(f"/uploads/{upload_id}", tokens)
    return sum(1 for i in status["instances"] if i.get("forward_status") == "stored")


def send_and_hold(
    page: Page,
    context: BrowserContext,
    api: Api,
    tokens: dict[str, Any],
    folder: Path,
    gate: ChunkGate,
) -> str:
    """The study sent from the page, its chunks past the gate's first held at the gate."""
    context.route(CHUNK_PUT, gate)
    choose_folder(page, folder)
    send(page)
    wait_until(page, lambda: gate.held, 60, "a chunk held at the gate")
    items = api.get("/uploads", tokens)["items"]
    upload_id: str = items[0]["upload_id"]
    return upload_id


def open_cancel_dialog(page: Page) -> Any:
    page.get_by_role("button", name="Cancel upload").click()
    return page.get_by_role("dialog", name="Cancel this upload?")


@pytest.fixture
def forwarding_page(browser: Browser, forwarding_gateway: Gateway) -> Iterator[Page]:
    # No service worker: the gate sees every request the app (and its upload worker) makes.
    context = browser.new_context(
        base_url=forwarding_gateway.url,
        viewport={"width": 1280, "height": 900},
        service_workers="block",
    )
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def test_cancelling_after_instances_reached_the_pacs_says_they_stay_there(
    forwarding_page: Page, forwarding_gateway: Gateway, pacs: Orthanc, study_dir: Path
) -> None:
    page = forwarding_page
    api = Api(forwarding_gateway.url)
    gate = ChunkGate(allowed=2)
    try:
        username = "e2e-early-forwarding"
        tokens = api.register(username)
        small_chunks_of_one_file_each(api, tokens)
        write_study(study_dir, instances=5, patient_id="E2E-EARLY-FWD")
        sign_in_with_tokens(page, username, tokens)
        upload_id = send_and_hold(page, page.context, api, tokens, study_dir, gate)

        # Two files arrived; the gateway stored their instances in Orthanc while it still
        # receives the rest.
        wait_until(
            page, lambda: stored_in_pacs(api, tokens, upload_id) == 2, 60, "2 instances in the PACS"
        )
        assert api.get(f"/uploads/{upload_id}", tokens)["state"] == "receiving"
        assert pacs.instance_count("E2E-EARLY-FWD") == 2

        dialog = open_cancel_dialog(page)
        expect(dialog.locator(".dialog__body")).to_have_text(
            "2 instances of this study are already in the PACS and will stay there. "
            "The rest will not be sent, and the copy on this device is deleted.",
            timeout=15_000,
        )
        # Said in a polite live region: a screen reader hears the text change when it arrives.
        expect(dialog.locator(".dialog__body [aria-live=polite]")).to_contain_text("in the PACS")

        dialog.get_by_role("button", name="Cancel upload").click()
        gate.release()
        expect(page.get_by_text("This upload was cancelled.")).to_be_visible()
        status = wait_until(
            page,
            lambda: (s := api.get(f"/uploads/{upload_id}", tokens))["state"] == "cancelled" and s,
            30,
            "the upload cancelled on the gateway",
        )
        assert status["timeline"][-1]["detail"] == (
            "2 instance(s) had already been stored in the PACS and remain there"
        )
        assert pacs.instance_count("E2E-EARLY-FWD") == 2
    finally:
        gate.release()
        api.http.close()


def test_without_early_forwarding_the_dialog_keeps_its_promise(
    page: Page,
    context: BrowserContext,
    account: tuple[str, dict[str, Any]],
    api: Api,
    study_dir: Path,
) -> None:
    username, tokens = account
    gate = ChunkGate(allowed=2)
    try:
        small_chunks_of_one_file_each(api, tokens)
        write_study(study_dir, instances=5, patient_id="E2E-NO-EARLY-FWD")
        sign_in_with_tokens(page, username, tokens)
        upload_id = send_and_hold(page, context, api, tokens, study_dir, gate)

        dialog = open_cancel_dialog(page)
        # The text the gateway's answer (nothing in the PACS) confirms.
        expect(dialog.locator(".dialog__body")).to_have_text(NOTHING_SENT, timeout=15_000)
        dialog.get_by_role("button", name="Keep sending").click()
        expect(dialog).to_be_hidden()
        assert stored_in_pacs(api, tokens, upload_id) == 0
    finally:
        gate.release()
