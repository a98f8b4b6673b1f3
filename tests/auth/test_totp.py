"""Two-factor sign-in: setup, enable, codes once per time step, recovery codes once, disable."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import pyotp
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.audit.models import AuditEvent
from tests.support.accounts import SignedIn, assert_problem, new_client, sign_in

SETUP = "/api/v1/auth/2fa/setup"
ENABLE = "/api/v1/auth/2fa/enable"
DISABLE = "/api/v1/auth/2fa/disable"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


def _code(secret: str, steps_ahead: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.at(int(time.time()) + 30 * steps_ahead)


async def _enable(client: httpx.AsyncClient, user: SignedIn) -> tuple[str, list[str]]:
    setup = (await client.post(SETUP, headers=user.headers)).json()
    response = await client.post(
        ENABLE, json={"code": _code(setup["secret"])}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return setup["secret"], response.json()["recovery_codes"]


async def _login(app: FastAPI, user: SignedIn, code: str | None) -> httpx.Response:
    # Each attempt from its own address, so the per-IP limit stays out of the way.
    async with new_client(app) as http:
        body = {"username": user.username, "password": user.password}
        if code is not None:
            body["totp_code"] = code
        return await http.post(LOGIN, json=body)


async def _actions(app: FastAPI, user_id: uuid.UUID) -> list[str]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.actor_id == user_id)
        )
        return list(rows)


async def test_setup_returns_secret_otpauth_uri_and_qr_code(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    response = await client.post(SETUP, headers=user.headers)
    assert response.status_code == 200
    setup = response.json()
    uri = urlparse(setup["otpauth_uri"])
    assert uri.scheme == "otpauth"
    assert uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [setup["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["RelayPACS"]
    assert setup["qr_code"].startswith("data:image/svg+xml")
    assert "<svg" in unquote(setup["qr_code"])
    # Not on until a code proves the authenticator has the secret.
    assert (await client.get(ME, headers=user.headers)).json()["totp_enabled"] is False
    assert (await _login(app, user, None)).status_code == 200


async def test_enable_needs_a_valid_code(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    assert_problem(
        await client.post(ENABLE, json={"code": "123456"}, headers=user.headers),
        409,
        "totp_not_set_up",
    )
    setup = (await client.post(SETUP, headers=user.headers)).json()
    wrong = str((int(_code(setup["secret"])) + 1) % 1_000_000).zfill(6)
    assert_problem(
        await client.post(ENABLE, json={"code": wrong}, headers=user.headers), 400, "invalid_totp"
    )
    assert (await client.get(ME, headers=user.headers)).json()["totp_enabled"] is False


async def test_enable_returns_ten_single_use_recovery_codes_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    _, codes = await _enable(client, user)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert (await client.get(ME, headers=user.headers)).json()["totp_enabled"] is True
    assert_problem(await client.post(SETUP, headers=user.headers), 409, "totp_already_enabled")
    assert "totp_enabled" in await _actions(app, user.id)
    export = (await client.get("/api/v1/users/me/export", headers=user.headers)).text
    assert not any(code in export for code in codes)


async def test_login_without_a_code_is_totp_required(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    await _enable(client, user)
    assert_problem(await _login(app, user, None), 401, "totp_required")


async def test_login_with_a_wrong_code_is_invalid_totp(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    secret, _ = await _enable(client, user)
    wrong = str((int(_code(secret, 1)) + 1) % 1_000_000).zfill(6)
    assert_problem(await _login(app, user, wrong), 401, "invalid_totp")
    # The password alone was right, but without the second factor nothing is issued.
    assert "login_failed" in await _audit_targets(app, user.id)


async def _audit_targets(app: FastAPI, user_id: uuid.UUID) -> list[str]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.target_id == str(user_id))
        )
        return list(rows)


async def test_a_code_is_accepted_once_per_time_step(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    secret, _ = await _enable(client, user)
    # The code that just enabled 2FA was spent on that: it cannot sign in.
    assert_problem(await _login(app, user, _code(secret)), 401, "invalid_totp")
    next_step = _code(secret, 1)  # accepted: one step of clock drift is allowed
    assert (await _login(app, user, next_step)).status_code == 200
    assert_problem(await _login(app, user, next_step), 401, "invalid_totp")


async def test_recovery_code_works_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    _, codes = await _enable(client, user)
    assert (await _login(app, user, codes[0])).status_code == 200
    assert_problem(await _login(app, user, codes[0]), 401, "invalid_totp")
    # Typed loosely (lower case, no dashes) it still counts.
    assert (await _login(app, user, codes[1].replace("-", "").lower())).status_code == 200
    assert "recovery_code_used" in await _actions(app, user.id)


async def test_disable_needs_the_password_and_a_current_code(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    secret, _ = await _enable(client, user)
    fresh = _code(secret, 1)
    wrong_password = await client.post(
        DISABLE, json={"password": "Not-the-password-9", "code": fresh}, headers=user.headers
    )
    assert_problem(wrong_password, 403, "invalid_password")
    wrong_code = await client.post(
        DISABLE,
        json={"password": user.password, "code": str((int(fresh) + 1) % 1_000_000).zfill(6)},
        headers=user.headers,
    )
    assert_problem(wrong_code, 400, "invalid_totp")
    assert (await client.get(ME, headers=user.headers)).json()["totp_enabled"] is True

    done = await client.post(
        DISABLE, json={"password": user.password, "code": fresh}, headers=user.headers
    )
    assert done.status_code == 204
    assert (await client.get(ME, headers=user.headers)).json()["totp_enabled"] is False
    assert (await _login(app, user, None)).status_code == 200
    assert "totp_disabled" in await _actions(app, user.id)


async def test_disable_when_not_enabled_is_a_conflict(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    response = await client.post(
        DISABLE, json={"password": user.password, "code": "123456"}, headers=user.headers
    )
    assert_problem(response, 409, "totp_not_enabled")
