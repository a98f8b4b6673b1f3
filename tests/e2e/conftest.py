"""Browser tests: real Chromium (Debian's package) driven by Playwright, against a real
`relaypacs serve` process and the built PWA, through a loopback proxy the tests control."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.gateway import REPO, Gateway, free_port
from tests.e2e.orthanc import Orthanc
from tests.e2e.orthanc import available as orthanc_available
from tests.e2e.proxy import ThrottlingProxy

CHROMIUM = Path("/usr/bin/chromium")
WEB_DIST = REPO / "web" / "dist"
SCREENSHOTS = REPO / "docs" / "screenshots"
PASSWORD = "Relay-Test-2026!x"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="package")
def web_dist() -> Path:
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail("the PWA is not built: run `make web` first")
    return WEB_DIST


@pytest.fixture(scope="package")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc | None]:
    """Orthanc when Debian's package is installed (make test installs it), else None."""
    if not orthanc_available():
        yield None
        return
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, web_dist: Path, pacs: Orthanc | None
) -> Iterator[Gateway]:
    extra = {}
    if pacs is not None:
        extra = {
            "RELAYPACS_PACS_URL": f"{pacs.url}/dicom-web",
            "RELAYPACS_PACS_KIND": "orthanc",
            "RELAYPACS_PACS_USERNAME": pacs.username,
            "RELAYPACS_PACS_PASSWORD": pacs.password,
        }
    server = Gateway(tmp_path_factory.mktemp("gateway"), free_port(), web_dist, extra)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def proxy(gateway: Gateway) -> Iterator[ThrottlingProxy]:
    link = ThrottlingProxy(gateway.port)
    yield link
    link.close()


@pytest.fixture
def link(proxy: ThrottlingProxy) -> Iterator[ThrottlingProxy]:
    """The proxy, reset to an unthrottled open link after each test."""
    yield proxy
    proxy.rate = None
    proxy.thaw()


@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (make test installs it with apt)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    chromium = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


class Api:
    """The gateway's HTTP API, for setting up accounts and checking what arrived."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=f"{base}/api/v1", timeout=30)

    def register(self, username: str) -> dict[str, Any]:
        response = self.http.post(
            "/auth/register",
            json={"username": username, "email": f"{username}@example.org", "password": PASSWORD},
        )
        assert response.status_code == 201, response.text
        return self.login(username)

    def login(self, username: str, totp_code: str | None = None) -> dict[str, Any]:
        body = {"username": username, "password": PASSWORD}
        if totp_code:
            body["totp_code"] = totp_code
        response = self.http.post("/auth/login", json=body)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    def get(self, path: str, tokens: dict[str, Any]) -> Any:
        response = self.http.get(
            path, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def put(self, path: str, tokens: dict[str, Any], body: dict[str, Any]) -> Any:
        response = self.http.put(
            path, json=body, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="package")
def api(gateway: Gateway) -> Iterator[Api]:
    client = Api(gateway.url)
    yield client
    client.http.close()


_users = iter(range(1, 10_000))


@pytest.fixture
def account(api: Api) -> tuple[str, dict[str, Any]]:
    username = f"e2e-user-{next(_users)}"
    return username, api.register(username)


@pytest.fixture
def context(browser: Browser, link: ThrottlingProxy) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=link.url, viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


def wait_until_true(page: Page, promise: str, timeout: float = 30) -> None:
    """Poll a page expression that gives a promise until it resolves to true.

    ``page.wait_for_function`` does not await a promise: it takes the promise object itself as
    truthy and returns at once. Each look is cut off after a second, so a promise that never
    settles (no service worker registered) fails the test instead of hanging it.
    """
    deadline = time.monotonic() + timeout
    race = f"Promise.race([Promise.resolve({promise}), new Promise(r => setTimeout(r, 1000))])"
    while page.evaluate(race) is not True:
        assert time.monotonic() < deadline, f"not true within {timeout} s: {promise}"
        page.wait_for_timeout(200)


def queued_jobs(page: Page, mapping: str) -> Any:
    """``mapping`` (a JavaScript function of the job list) over the app's IndexedDB queue.

    What is on the device, read straight from its store rather than from what the app shows.
    (Composed here, not built in the page: the app's CSP forbids eval there.)
    """
    return page.evaluate(
        """() => new Promise((resolve, reject) => {
            const open = indexedDB.open('relaypacs');
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
                const db = open.result;
                const request = db.transaction('jobs').objectStore('jobs').getAll();
                request.onsuccess = () => {
                    db.close();
                    resolve((MAPPING)(request.result));
                };
                request.onerror = () => reject(request.error);
            };
        })""".replace("MAPPING", mapping)
    )


def wait_for_service_worker(page: Page) -> None:
    """The service worker is active and controls this page: it holds the app shell and answers
    the page's next navigation even with the network gone (it claims open pages when it
    activates, a moment after ``ready``)."""
    controlled = "!!navigator.serviceWorker.controller"
    wait_until_true(page, f"navigator.serviceWorker.ready.then(r => !!r.active && {controlled})")


def store_tokens(page: Page, tokens: dict[str, Any]) -> None:
    """Put a session's tokens in localStorage, the way the app keeps them (no user remembered:
    the app asks the gateway who it is)."""
    page.goto("/sign-in")
    page.evaluate(
        """([tokens]) => localStorage.setItem('relaypacs.tokens', JSON.stringify({
            access: tokens.access_token, refresh: tokens.refresh_token,
            expiresAt: Date.now() + tokens.expires_in * 1000 }))""",
        [tokens],
    )


def sign_in_with_tokens(page: Page, username: str, tokens: dict[str, Any]) -> None:
    """Start signed in, the way the app keeps a session: tokens in localStorage."""
    store_tokens(page, tokens)
    page.goto("/upload")
    page.get_by_role("heading", name="New upload").wait_for()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(
    context: BrowserContext,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Page]:
    tab = context.new_page()
    errors: list[str] = []
    console: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    tab.on(
        "response",
        lambda response: console.append(
            f"{response.request.method} {response.url.split('/', 3)[-1]} {response.status}"
        ),
    )
    yield tab
    if request.node.stash.get(_FAILED, False) and not tab.is_closed():
        # What the page showed when the test failed, for the person reading the report.
        shot = tmp_path_factory.mktemp("failure") / f"{request.node.name}.png"
        tab.screenshot(path=str(shot), full_page=True)
        print(f"\nfailure screenshot: {shot}\nurl: {tab.url}\nlog: {console[-40:]}")
        print(tab.locator("body").inner_text()[:3000])
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="package")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    return tmp_path / "study"


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
