"""Liveness, readiness, metrics, request ids, security headers, problem+json errors."""

from __future__ import annotations

import httpx


async def test_healthz_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database_and_shows_the_queue(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"] == "ok"
    queue = body["queue"]
    assert set(queue) == {
        "jobs_queued",
        "jobs_running",
        "oldest_due_job_age_seconds",
        "studies_awaiting_delivery",
    }
    assert queue["studies_awaiting_delivery"] == 0


async def test_metrics_are_prometheus_text_labelled_by_route_template(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/healthz")
    await client.get("/no/such/path/with-an-id-1234")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'route="/healthz"' in response.text
    assert "with-an-id-1234" not in response.text


async def test_request_id_is_echoed_when_supplied(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_request_id_is_generated_when_missing_or_unsafe(client: httpx.AsyncClient) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers  # plain HTTP in development


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["status"] == 404
    assert body["type"].endswith("/not_found")


async def test_wrong_method_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "Problem" in schema["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/redoc")).status_code == 200
