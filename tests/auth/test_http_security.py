"""Browser-facing defences: HSTS only over HTTPS, the CORS allowlist, trusted Host names."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.support.accounts import assert_problem, new_client, running_app

ALLOWED = "https://app.example.org"
STRANGER = "https://evil.example"
LOGIN = "/api/v1/auth/login"


def _https_client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_hsts_is_sent_only_over_https(app: FastAPI, client: httpx.AsyncClient) -> None:
    plain = await client.get("/healthz")
    assert "strict-transport-security" not in plain.headers
    assert plain.headers["x-content-type-options"] == "nosniff"
    async with _https_client(app) as https:
        secure = await https.get("/healthz")
    hsts = secure.headers["strict-transport-security"]
    assert "max-age=" in hsts
    assert int(hsts.split("max-age=")[1].split(";")[0]) >= 365 * 24 * 3600
    assert "frame-ancestors 'none'" in secure.headers["content-security-policy"]


async def test_hsts_behind_a_tls_proxy_follows_the_public_url(
    database_url: str, tmp_path: Path
) -> None:
    # TLS ends at the proxy: the request reaching the app is plain HTTP, the public URL is not.
    settings = make_settings(database_url, tmp_path, public_url="https://relay.example.org")
    async with running_app(settings) as proxied, new_client(proxied) as http:
        response = await http.get("/healthz")
    assert "max-age=" in response.headers["strict-transport-security"]


async def test_cors_answers_only_allowlisted_origins(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, cors_origins=[ALLOWED])
    async with running_app(settings) as cors_app, new_client(cors_app) as http:
        allowed = await http.options(LOGIN, headers=_preflight(ALLOWED))
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert "POST" in allowed.headers["access-control-allow-methods"]

        refused = await http.options(LOGIN, headers=_preflight(STRANGER))
        problem = assert_problem(refused, 400, "cors_refused")
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert "origin" in problem["detail"]
        assert "access-control-allow-origin" not in refused.headers

        # A simple request from a stranger is answered, but the browser is not allowed to read it.
        simple = await http.get("/healthz", headers={"Origin": STRANGER})
        assert "access-control-allow-origin" not in simple.headers
        simple = await http.get("/healthz", headers={"Origin": ALLOWED})
        assert simple.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_no_origin_is_allowed_by_default(client: httpx.AsyncClient) -> None:
    # The PWA is same-origin: without RELAYPACS_CORS_ORIGINS no other origin may read answers.
    preflight = await client.options(LOGIN, headers=_preflight(STRANGER))
    assert "access-control-allow-origin" not in preflight.headers
    simple = await client.get("/healthz", headers={"Origin": STRANGER})
    assert "access-control-allow-origin" not in simple.headers


async def test_untrusted_host_is_refused_as_a_problem(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url, tmp_path, trusted_hosts=["relay.example.org", "*.relay.example.org"]
    )
    async with running_app(settings) as hosted, new_client(hosted) as http:
        for host in ("relay.example.org", "RELAY.example.org:8443", "api.relay.example.org"):
            response = await http.get("/api/v1/auth/me", headers={"Host": host})
            assert response.status_code == 401, (host, response.text)  # past the host check
        for host in ("evil.example", "relay.example.org.evil.example", "[::1]"):
            response = await http.get("/api/v1/auth/me", headers={"Host": host})
            assert_problem(response, 400, "invalid_host")
            assert response.headers["x-request-id"]
            assert response.headers["x-content-type-options"] == "nosniff"


async def test_health_checks_and_the_scrape_need_no_public_host_name(
    database_url: str, tmp_path: Path
) -> None:
    # The container's health check calls 127.0.0.1:8080 and Prometheus scrapes each instance
    # by its IP: refused, nginx (which waits for a healthy gateway) would never start.
    settings = make_settings(database_url, tmp_path, trusted_hosts=["relay.example.org"])
    async with running_app(settings) as hosted, new_client(hosted) as http:
        for host in ("127.0.0.1:8080", "172.18.0.5:8080"):
            for path in ("/healthz", "/readyz", "/metrics"):
                response = await http.get(path, headers={"Host": host})
                assert response.status_code == 200, (host, path, response.text)
            assert_problem(
                await http.get("/api/v1/auth/me", headers={"Host": host}), 400, "invalid_host"
            )
            assert_problem(await http.get("/docs", headers={"Host": host}), 400, "invalid_host")
