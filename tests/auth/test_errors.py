"""Errors never leak internals: a crash is a bare 500 problem, without a stack trace."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from relaypacs.app import create_app
from relaypacs.config import Settings
from relaypacs.users.models import Role
from tests.support.accounts import assert_problem, new_client, sign_in


async def test_a_500_never_shows_a_stack_trace(settings: Settings) -> None:
    crashing: FastAPI = create_app(settings)

    async def explode() -> None:
        raise RuntimeError("database password is hunter2 at /srv/relaypacs/secret.py line 42")

    crashing.add_api_route("/explode", explode)
    async with new_client(crashing) as http:
        response = await http.get("/explode", headers={"X-Request-ID": "crash-1"})
    body = assert_problem(response, 500, "internal_error")
    assert response.headers["x-request-id"] == "crash-1"
    for leak in ("Traceback", "RuntimeError", "hunter2", "secret.py", "line 42"):
        assert leak not in response.text
    assert set(body) <= {"type", "title", "status", "code", "detail", "instance"}


async def test_malformed_json_is_a_validation_problem(settings: Settings) -> None:
    app = create_app(settings)
    async with new_client(app) as http:
        response = await http.post(
            "/api/v1/auth/login",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
    assert_problem(response, 422, "validation_error")


async def test_nul_characters_are_refused_before_reaching_the_database(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # PostgreSQL cannot store NUL in text and bcrypt refuses it: found by schemathesis as a 500.
    admin = await sign_in(client, app, role=Role.admin)
    for response in (
        await client.post("/api/v1/auth/login", json={"username": "a\x00b", "password": "x"}),
        await client.post("/api/v1/auth/login", json={"username": "someone", "password": "\x00"}),
        await client.post(
            "/api/v1/auth/register",
            json={
                "username": "nul_user",
                "email": "nul@example.org",
                "password": "Aa1!\x00bcdefghij",
            },
        ),
        await client.get("/api/v1/admin/audit", params={"action": "a\x00"}, headers=admin.headers),
        await client.get("/api/v1/admin/users", params={"q": "\x00"}, headers=admin.headers),
    ):
        assert_problem(response, 422, "validation_error")
