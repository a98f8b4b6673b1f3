"""Access-token verification: RS256 with our keys only; every bad token is a 401 problem."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from relaypacs.auth.keys import rotate_keys
from tests.conftest import make_settings
from tests.support.accounts import SignedIn, assert_problem, new_client, running_app, sign_in

ME = "/api/v1/auth/me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())


def _claims(user: SignedIn) -> dict[str, Any]:
    return dict(jwt.decode(user.access_token, options={"verify_signature": False}))


def _signing_key(app: FastAPI) -> tuple[rsa.RSAPrivateKey, str]:
    keyring = app.state.resources.keyring
    return keyring.signing_key, keyring.signing_kid


def _sign(app: FastAPI, payload: dict[str, Any]) -> str:
    key, kid = _signing_key(app)
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def _alg_none(app: FastAPI, user: SignedIn) -> str:
    _, kid = _signing_key(app)
    return _unsigned({"alg": "none", "typ": "JWT", "kid": kid}, _claims(user)) + "."


def _hs256_with_public_key(app: FastAPI, user: SignedIn) -> str:
    # The classic confusion attack: HMAC keyed with the (public) RSA key.
    key, kid = _signing_key(app)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, _claims(user))
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _tampered(app: FastAPI, user: SignedIn) -> str:
    header, _, signature = user.access_token.split(".")
    claims = _claims(user) | {"role": "admin"}
    return header + "." + _b64(json.dumps(claims).encode()) + "." + signature


def _foreign_key(kid: str | None) -> Callable[[FastAPI, SignedIn], str]:
    def forge(app: FastAPI, user: SignedIn) -> str:
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(
            _claims(user),
            stranger,
            algorithm="RS256",
            headers={"kid": kid or _signing_key(app)[1]},
        )

    return forge


def _with(**changes: Any) -> Callable[[FastAPI, SignedIn], str]:
    def forge(app: FastAPI, user: SignedIn) -> str:
        claims = _claims(user)
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return _sign(app, claims)

    return forge


BAD_TOKENS: dict[str, tuple[Callable[[FastAPI, SignedIn], str], str]] = {
    "garbage": (lambda app, user: "not-a-jwt", "invalid_token"),
    "alg_none": (_alg_none, "invalid_token"),
    "hs256_with_public_key": (_hs256_with_public_key, "invalid_token"),
    "tampered_payload": (_tampered, "invalid_token"),
    "unknown_kid": (_foreign_key("no-such-key"), "invalid_token"),
    "foreign_key_with_our_kid": (_foreign_key(None), "invalid_token"),
    "wrong_audience": (_with(aud="someone-else"), "invalid_token"),
    "wrong_issuer": (_with(iss="https://evil.example"), "invalid_token"),
    "missing_jti": (_with(jti=None), "invalid_token"),
    "unknown_user": (_with(sub=str(uuid.uuid4())), "invalid_token"),
    "expired": (
        _with(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "token_expired",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_access_token_is_401_problem(
    client: httpx.AsyncClient, app: FastAPI, case: str
) -> None:
    user = await sign_in(client, app)
    forge, code = BAD_TOKENS[case]
    token = forge(app, user)
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401, code)
    assert response.headers["www-authenticate"] == "Bearer"
    # The genuine token still works: nothing else changed.
    assert (await client.get(ME, headers=user.headers)).status_code == 200


@pytest.mark.parametrize("authorization", [None, "Basic dXNlcjpwYXNz", "Bearer"])
async def test_missing_bearer_token_is_401_not_authenticated(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get(ME, headers=headers)
    assert_problem(response, 401, "not_authenticated")


async def test_jwks_publishes_the_signing_key(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    kid = jwt.get_unverified_header(user.access_token)["kid"]
    (published,) = [k for k in keys if k["kid"] == kid]
    assert published["kty"] == "RSA"
    assert published["alg"] == "RS256"
    assert published["use"] == "sig"
    assert "d" not in published  # never the private part
    claims = jwt.decode(
        user.access_token, jwt.PyJWK(published).key, algorithms=["RS256"], audience="relaypacs-api"
    )
    assert claims["sub"] == str(user.id)


def test_generated_key_file_is_private(app: FastAPI) -> None:
    path: Path = app.state.settings.resolved_jwt_key_file
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_rotated_keys_keep_earlier_tokens_valid(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, jwt_key_reload_seconds=0)
    async with running_app(settings) as rotating_app, new_client(rotating_app) as http:
        before = await sign_in(http, rotating_app)
        old_kid = jwt.get_unverified_header(before.access_token)["kid"]
        result = await anyio.run_process(
            [sys.executable, "-m", "relaypacs", "admin", "rotate-keys"],
            env={"RELAYPACS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert old_kid in result.stdout.decode()

        after = await sign_in(http, rotating_app)
        new_kid = jwt.get_unverified_header(after.access_token)["kid"]
        assert new_kid != old_kid
        assert (await http.get(ME, headers=before.headers)).status_code == 200
        assert (await http.get(ME, headers=after.headers)).status_code == 200
        kids = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
        assert kids == {old_kid, new_kid}


def test_retired_keys_are_pruned_once_their_tokens_expired(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "jwt-signing.pem"
    first, _ = rotate_keys(key_file, keep_retired_for=timedelta(hours=1))
    assert (tmp_path / "keys" / "retired" / f"{first}.pem").exists()
    second, _ = rotate_keys(key_file, keep_retired_for=timedelta(seconds=-1))
    retired = {p.stem for p in (tmp_path / "keys" / "retired").glob("*.pem")}
    assert first not in retired
    assert second not in retired  # an expiry in the past prunes even the newest
