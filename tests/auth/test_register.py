"""Registration: the password policy, unique names, roles, and the switch that closes it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import bcrypt
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.auth.passwords import COMMON_PASSWORDS, hash_rounds
from relaypacs.config import Settings
from relaypacs.users.models import Role, User
from tests.conftest import make_settings
from tests.support.accounts import DEFAULT_PASSWORD, assert_problem, new_client, running_app

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"


def _new_name() -> str:
    return f"reg_{uuid.uuid4().hex[:10]}"


def _body(**overrides: object) -> dict[str, object]:
    username = _new_name()
    body: dict[str, object] = {
        "username": username,
        "email": f"{username}@example.org",
        "password": DEFAULT_PASSWORD,
    }
    body.update(overrides)
    return body


async def _user_exists(app: FastAPI, username: str) -> bool:
    async with app.state.sessionmaker() as session:
        found = await session.scalar(select(User.id).where(User.username_key == username.lower()))
        return found is not None


async def test_register_creates_a_clinician_without_exposing_the_hash(
    client: httpx.AsyncClient,
) -> None:
    body = _body()
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["username"] == body["username"]
    assert user["role"] == "clinician"
    assert user["is_active"] is True
    assert user["totp_enabled"] is False
    assert DEFAULT_PASSWORD not in response.text
    assert "password_hash" not in user
    assert "$2b$" not in response.text


@pytest.mark.parametrize(
    ("password", "missing"),
    [
        ("Sh0rt!pass", "at least 12 characters"),
        ("no-upper-case-42", "upper-case"),
        ("NO-LOWER-CASE-42", "lower-case"),
        ("No-Digits-Anywhere", "digit"),
        ("NoSpecials4242xyz", "special"),
    ],
)
async def test_weak_password_is_refused(
    client: httpx.AsyncClient, app: FastAPI, password: str, missing: str
) -> None:
    body = _body(password=password)
    problem = assert_problem(await client.post(REGISTER, json=body), 422, "weak_password")
    assert missing in problem["detail"]
    assert not await _user_exists(app, str(body["username"]))


@pytest.mark.parametrize("password", ["Password123!", "Sunshine2024!", "!!Iloveyou1234"])
async def test_common_password_is_refused(
    client: httpx.AsyncClient, app: FastAPI, password: str
) -> None:
    body = _body(password=password)
    assert_problem(await client.post(REGISTER, json=body), 422, "common_password")
    assert not await _user_exists(app, str(body["username"]))


def test_common_password_list_ships_at_least_10000_entries() -> None:
    assert len(COMMON_PASSWORDS) >= 10_000
    assert {"password", "123456", "qwerty", "dragon"} <= COMMON_PASSWORDS


async def test_password_over_72_bytes_is_refused_not_truncated(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # 39 characters but 74 UTF-8 bytes: bcrypt would silently ignore the tail.
    too_long = "Aa1!" + "é" * 35
    body = _body(password=too_long)
    assert_problem(await client.post(REGISTER, json=body), 422, "password_too_long")
    assert not await _user_exists(app, str(body["username"]))

    exactly_72 = "Aa1!" + "é" * 34
    assert len(exactly_72.encode()) == 72
    body = _body(password=exactly_72)
    assert (await client.post(REGISTER, json=body)).status_code == 201
    login = await client.post(LOGIN, json={"username": body["username"], "password": exactly_72})
    assert login.status_code == 200
    # A password that only shares the first 72 bytes does not sign in.
    login = await client.post(
        LOGIN, json={"username": body["username"], "password": exactly_72 + "x"}
    )
    assert_problem(login, 401, "invalid_credentials")


async def test_password_containing_the_username_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    username = _new_name()
    body = _body(username=username, password=f"X9!q{username.upper()}")
    assert_problem(await client.post(REGISTER, json=body), 422, "password_contains_username")
    assert not await _user_exists(app, username)


async def test_username_is_unique_case_insensitively(client: httpx.AsyncClient) -> None:
    first = _body(username="Case_" + uuid.uuid4().hex[:8])
    assert (await client.post(REGISTER, json=first)).status_code == 201
    again = _body(username=str(first["username"]).swapcase())
    assert_problem(await client.post(REGISTER, json=again), 409, "username_taken")


async def test_email_is_unique_case_insensitively(client: httpx.AsyncClient) -> None:
    first = _body()
    assert (await client.post(REGISTER, json=first)).status_code == 201
    again = _body(email=str(first["email"]).upper())
    assert_problem(await client.post(REGISTER, json=again), 409, "email_taken")


@pytest.mark.parametrize("username", ["ab", "has space", "semi;colon", "x" * 51, "ümlaut"])
async def test_username_outside_the_allowed_form_is_refused(
    client: httpx.AsyncClient, app: FastAPI, username: str
) -> None:
    body = _body(username=username)
    assert_problem(await client.post(REGISTER, json=body), 422, "validation_error")


async def test_malformed_email_is_refused(client: httpx.AsyncClient) -> None:
    assert_problem(
        await client.post(REGISTER, json=_body(email="not-an-address")), 422, "validation_error"
    )


@pytest.mark.parametrize("role", [Role.admin, Role.radiologist])
async def test_self_registration_never_grants_privileged_roles(
    client: httpx.AsyncClient, app: FastAPI, role: Role
) -> None:
    body = _body(role=role.value)
    assert_problem(await client.post(REGISTER, json=body), 403, "role_not_allowed")
    assert not await _user_exists(app, str(body["username"]))


async def test_registration_can_be_switched_off(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, allow_self_registration=False)
    async with running_app(settings) as closed_app, new_client(closed_app) as http:
        body = _body()
        assert_problem(await http.post(REGISTER, json=body), 403, "registration_closed")
        assert not await _user_exists(closed_app, str(body["username"]))


async def test_bcrypt_cost_comes_from_settings(client: httpx.AsyncClient, app: FastAPI) -> None:
    assert Settings.model_fields["bcrypt_rounds"].default == 12
    body = _body()
    assert (await client.post(REGISTER, json=body)).status_code == 201
    async with app.state.sessionmaker() as session:
        stored = await session.scalar(
            select(User.password_hash).where(User.username == body["username"])
        )
    assert stored is not None
    assert hash_rounds(stored) == app.state.settings.bcrypt_rounds == 4


def _on_an_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def test_bcrypt_runs_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Asked where each real bcrypt call runs, not how long the loop stalled: a wall-clock
    # measure failed on a loaded CI host although the hash was on a worker thread.
    on_loop: list[tuple[str, bool]] = []

    def watched(name: str, real: Callable[..., bytes | bool]) -> Callable[..., bytes | bool]:
        def call(*args: object) -> bytes | bool:
            on_loop.append((name, _on_an_event_loop()))
            return real(*args)

        return call

    monkeypatch.setattr(bcrypt, "hashpw", watched("hashpw", bcrypt.hashpw))
    monkeypatch.setattr(bcrypt, "checkpw", watched("checkpw", bcrypt.checkpw))
    body = _body()
    assert (await client.post(REGISTER, json=body)).status_code == 201
    credentials = {"username": body["username"], "password": body["password"]}
    assert (await client.post(LOGIN, json=credentials)).status_code == 200
    assert {name for name, _ in on_loop} == {"hashpw", "checkpw"}, on_loop
    assert all(not blocked for _, blocked in on_loop), on_loop


async def test_registration_is_limited_per_client_address(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # Each registration costs a bcrypt hash: an open endpoint must not be a CPU sink.
    for _ in range(10):
        assert (await client.post(REGISTER, json=_body())).status_code == 201
    refused = _body()
    limited = await client.post(REGISTER, json=refused)
    problem = assert_problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert problem["retry_after"] == int(limited.headers["retry-after"])
    assert not await _user_exists(app, str(refused["username"]))
    # Another address is not affected.
    async with new_client(app, "203.0.113.9") as other:
        assert (await other.post(REGISTER, json=_body())).status_code == 201
