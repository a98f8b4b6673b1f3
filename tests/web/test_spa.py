"""The PWA is served at / without ever standing in for the gateway's own paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from relaypacs.app import create_app
from tests.conftest import client_for, make_settings

INDEX = "<!doctype html><title>RelayPACS</title><div id=root></div>"


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    (root / "index.html").write_text(INDEX)
    (root / "sw.js").write_text("self.addEventListener('fetch', () => {});")
    (root / "manifest.webmanifest").write_text('{"name": "RelayPACS"}')
    (root / "assets").mkdir()
    (root / "assets" / "index-abc123.js").write_text("console.log('app');")
    (root / "icons").mkdir()
    (root / "icons" / "icon-192.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root.parent / "secret.txt").write_text("outside the build")
    return root


@pytest.fixture(scope="module")
async def web_app(database_url: str, data_dir: Path, web_dir: Path) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(database_url, data_dir, web_dir=web_dir))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def web(web_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(web_app) as http:
        yield http


async def test_root_serves_the_app_shell_and_it_is_revalidated(web: httpx.AsyncClient) -> None:
    response = await web.get("/")
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/upload", "/uploads/0b8a8f4e-1", "/account", "/sign-in"])
async def test_client_routes_fall_back_to_the_app_shell(web: httpx.AsyncClient, path: str) -> None:
    response = await web.get(path)
    assert response.status_code == 200
    assert response.text == INDEX


async def test_hashed_assets_are_cached_for_good(web: httpx.AsyncClient) -> None:
    response = await web.get("/assets/index-abc123.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_service_worker_and_manifest_are_revalidated(web: httpx.AsyncClient) -> None:
    worker = await web.get("/sw.js")
    assert worker.headers["cache-control"] == "no-cache"
    manifest = await web.get("/manifest.webmanifest")
    assert manifest.headers["cache-control"] == "no-cache"
    assert manifest.headers["content-type"].startswith("application/manifest+json")


async def test_a_missing_asset_is_a_404_not_the_app_shell(web: httpx.AsyncClient) -> None:
    for path in ("/assets/index-gone.js", "/icons/missing.png"):
        response = await web.get(path)
        assert response.status_code == 404
        assert response.text != INDEX


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v2", "/.well-known/nothing"])
async def test_unknown_server_paths_stay_problem_json(web: httpx.AsyncClient, path: str) -> None:
    response = await web.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_server_paths_are_never_shadowed(web: httpx.AsyncClient) -> None:
    assert (await web.get("/healthz")).json() == {"status": "ok"}
    assert (await web.get("/openapi.json")).json()["info"]["title"] == "RelayPACS"
    assert (await web.get("/.well-known/jwks.json")).json()["keys"]
    assert "text/html" in (await web.get("/docs")).headers["content-type"]
    assert (await web.get("/metrics")).status_code == 200


async def test_wrong_method_on_an_api_route_is_still_405(web: httpx.AsyncClient) -> None:
    response = await web.post("/healthz")
    assert response.status_code == 405


async def test_only_get_and_head_reach_the_app(web: httpx.AsyncClient) -> None:
    response = await web.post("/upload")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert (await web.head("/upload")).status_code == 200


@pytest.mark.parametrize(
    "path", ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"]
)
async def test_no_file_outside_the_build_is_served(web: httpx.AsyncClient, path: str) -> None:
    response = await web.get(path)
    assert "outside the build" not in response.text


async def test_without_a_build_the_root_is_a_plain_404(
    database_url: str, data_dir: Path, tmp_path: Path
) -> None:
    application = create_app(make_settings(database_url, data_dir, web_dir=tmp_path))
    async with application.router.lifespan_context(application), client_for(application) as http:
        response = await http.get("/upload")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
