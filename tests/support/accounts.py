"""Signed-in users for black-box tests of any domain.

user = await sign_in(client, app)                       # a clinician, registered over HTTP
admin = await sign_in(client, app, role=Role.admin)     # created through the users service
await client.get("/api/v1/users/me", headers=user.headers)
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from relaypacs.app import create_app
from relaypacs.config import Settings
from relaypacs.errors import PROBLEM_MEDIA_TYPE
from relaypacs.users import service as users_service
from relaypacs.users.models import SELF_REGISTRATION_ROLES, Role

DEFAULT_PASSWORD = "Vq8#relay-Pacs!"

# Sign-ins come from their own addresses so that they never use up the per-IP login limit of
# the client under test (127.1.x.x in conftest).
_sign_in_addresses = itertools.count(1)


@dataclass(frozen=True)
class SignedIn:
    id: uuid.UUID
    username: str
    email: str
    password: str
    role: Role
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def _sign_in_client(app: FastAPI) -> httpx.AsyncClient:
    n = next(_sign_in_addresses)
    return new_client(app, f"127.2.{n // 250}.{n % 250 + 1}")


async def create_account(
    app: FastAPI,
    *,
    role: Role = Role.clinician,
    username: str | None = None,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
) -> tuple[uuid.UUID, str, str]:
    """Create a user of any role directly through the users service: (id, username, email)."""
    username = username or f"user_{uuid.uuid4().hex[:10]}"
    email = email or f"{username}@example.org"
    async with app.state.sessionmaker() as session:
        user = await users_service.create_user(
            session,
            app.state.settings,
            username=username,
            email=email,
            password=password,
            role=role,
        )
        await session.commit()
        return user.id, username, email


async def sign_in(
    client: httpx.AsyncClient,
    app: FastAPI,
    *,
    role: Role = Role.clinician,
    username: str | None = None,
    password: str = DEFAULT_PASSWORD,
) -> SignedIn:
    """A new user of ``role``, signed in. Self-registration roles go through POST /register."""
    username = username or f"user_{uuid.uuid4().hex[:10]}"
    email = f"{username}@example.org"
    async with _sign_in_client(app) as http:
        if role in SELF_REGISTRATION_ROLES:
            response = await http.post(
                "/api/v1/auth/register",
                json={"username": username, "email": email, "password": password, "role": role},
            )
            assert response.status_code == 201, response.text
            user_id = uuid.UUID(response.json()["id"])
        else:
            user_id, username, email = await create_account(
                app, role=role, username=username, email=email, password=password
            )
        response = await http.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        tokens = response.json()
    return SignedIn(
        id=user_id,
        username=username,
        email=email,
        password=password,
        role=role,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 7807 problem with this status and stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"].endswith("/" + code)
    assert body["title"]
    assert body["detail"], body  # DESIGN.md: every problem has a detail
    return body


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A second app (own settings), started like the session one: another API instance."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def new_client(app: FastAPI, address: str | None = None) -> httpx.AsyncClient:
    """A client with its own (or the given) source address."""
    if address is None:
        n = next(_sign_in_addresses)
        address = f"127.3.{n // 250}.{n % 250 + 1}"
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
