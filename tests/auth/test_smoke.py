from __future__ import annotations

import httpx
from fastapi import FastAPI

from relaypacs.users.models import Role
from tests.support.accounts import sign_in


async def test_sign_in_helper_gives_working_tokens(client: httpx.AsyncClient, app: FastAPI) -> None:
    for role in Role:
        user = await sign_in(client, app, role=role)
        response = await client.get("/api/v1/auth/me", headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == role
