"""Sign-in: tokens and their claims, failures, the per-IP limit and the per-account lockout."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import jwt
from fastapi import FastAPI
from sqlalchemy import select, update

from relaypacs.audit.models import AuditEvent
from relaypacs.db.base import utcnow
from relaypacs.users.models import User
from tests.support.accounts import (
    DEFAULT_PASSWORD,
    assert_problem,
    new_client,
    sign_in,
)

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


async def _audit_actions(app: FastAPI, user_id: uuid.UUID) -> list[str]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.target_id == str(user_id))
            .order_by(AuditEvent.occurred_at)
        )
        return list(rows)


async def test_login_returns_rs256_tokens_with_the_required_claims(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    response = await client.post(LOGIN, json={"username": user.username, "password": user.password})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_expires_in"] == 7 * 24 * 3600
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256"
    assert header["kid"]
    jwks = (await client.get("/.well-known/jwks.json")).json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        body["access_token"],
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience="relaypacs-api",
        issuer="relaypacs",
    )
    assert claims["sub"] == str(user.id)
    assert claims["role"] == "clinician"
    assert claims["exp"] - claims["iat"] == 3600
    assert len(claims["jti"]) >= 16
    me = await client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["id"] == str(user.id)


async def test_login_accepts_any_case_of_the_username_and_the_email(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    for login in (user.username.upper(), user.email.upper()):
        response = await client.post(LOGIN, json={"username": login, "password": user.password})
        assert response.status_code == 200, response.text


async def test_wrong_password_is_refused_and_audited(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    response = await client.post(
        LOGIN, json={"username": user.username, "password": DEFAULT_PASSWORD + "x"}
    )
    assert_problem(response, 401, "invalid_credentials")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "login_failed" in await _audit_actions(app, user.id)


async def test_unknown_user_gets_the_same_answer_as_a_wrong_password(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        LOGIN, json={"username": "nobody_" + uuid.uuid4().hex[:8], "password": DEFAULT_PASSWORD}
    )
    assert_problem(response, 401, "invalid_credentials")


async def test_login_is_limited_to_5_per_minute_per_ip(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    # Guesses at names that do not exist, so that no account lockout is involved.
    for _ in range(5):
        attempt = {"username": "nobody_" + uuid.uuid4().hex[:8], "password": "Wrong-pass-1"}
        assert_problem(await client.post(LOGIN, json=attempt), 401, "invalid_credentials")
    limited = await client.post(LOGIN, json={"username": user.username, "password": user.password})
    problem = assert_problem(limited, 429, "rate_limited")
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert problem["retry_after"] == retry_after
    # Another address is not affected.
    async with new_client(app) as other:
        response = await other.post(
            LOGIN, json={"username": user.username, "password": user.password}
        )
        assert response.status_code == 200


async def test_repeated_failures_lock_the_account_with_growing_backoff(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    wrong = {"username": user.username, "password": "Wrong-password-1"}
    # From many addresses, as a distributed guesser would: the per-IP limit never triggers.
    for _ in range(5):
        async with new_client(app) as guesser:
            assert_problem(await guesser.post(LOGIN, json=wrong), 401, "invalid_credentials")
    async with new_client(app) as owner:
        locked = await owner.post(
            LOGIN, json={"username": user.username, "password": user.password}
        )
    assert_problem(locked, 429, "account_locked")
    assert 25 <= int(locked.headers["retry-after"]) <= 30
    assert "account_locked" in await _audit_actions(app, user.id)

    # Let the first lockout run out; one more failure locks for twice as long.
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(User)
            .where(User.id == user.id)
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    async with new_client(app) as guesser:
        assert_problem(await guesser.post(LOGIN, json=wrong), 401, "invalid_credentials")
        relocked = await guesser.post(
            LOGIN, json={"username": user.username, "password": user.password}
        )
    assert_problem(relocked, 429, "account_locked")
    assert 55 <= int(relocked.headers["retry-after"]) <= 60


async def test_a_successful_login_resets_the_failure_count(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    wrong = {"username": user.username, "password": "Wrong-password-1"}
    right = {"username": user.username, "password": user.password}
    for _ in range(2):
        for _ in range(4):
            async with new_client(app) as guesser:
                assert_problem(await guesser.post(LOGIN, json=wrong), 401, "invalid_credentials")
        async with new_client(app) as owner:
            assert (await owner.post(LOGIN, json=right)).status_code == 200


async def test_login_success_is_audited_with_address_agent_and_request_id(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    request_id = "login-" + uuid.uuid4().hex
    response = await client.post(
        LOGIN,
        json={"username": user.username, "password": user.password},
        headers={"User-Agent": "RelayTest/1.0", "X-Request-ID": request_id},
    )
    assert response.status_code == 200
    async with app.state.sessionmaker() as session:
        event = await session.scalar(select(AuditEvent).where(AuditEvent.request_id == request_id))
    assert event is not None
    assert event.action == "login_succeeded"
    assert event.actor_id == user.id
    assert event.user_agent == "RelayTest/1.0"
    assert event.ip_address is not None
    assert event.ip_address.startswith("127.1.")
    assert user.password not in str(event.details)
