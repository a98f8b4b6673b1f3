"""RS256 access tokens and opaque refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from relaypacs.auth.exceptions import InvalidToken, TokenExpired
from relaypacs.auth.keys import ALGORITHM, Keyring
from relaypacs.config import Settings
from relaypacs.users.models import Role

# Clock skew tolerated between API instances.
LEEWAY = timedelta(seconds=10)
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti", "role", "sid", "ver"]


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    role: Role
    token_version: int
    expires_at: datetime


def issue_access_token(
    keyring: Keyring,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    role: Role,
    token_version: int,
    session_id: uuid.UUID,
    now: datetime,
) -> tuple[str, AccessClaims]:
    expires_at = now + timedelta(minutes=settings.access_token_minutes)
    claims = AccessClaims(
        user_id=user_id,
        session_id=session_id,
        jti=uuid.uuid4().hex,
        role=role,
        token_version=token_version,
        expires_at=expires_at,
    )
    payload = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": claims.jti,
        "role": role.value,
        "sid": str(session_id),
        "ver": token_version,
    }
    token = jwt.encode(
        payload, keyring.signing_key, algorithm=ALGORITHM, headers={"kid": keyring.signing_kid}
    )
    return token, claims


async def verify_access_token(keyring: Keyring, settings: Settings, token: str) -> AccessClaims:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("The token is malformed") from exc
    # Only RS256 with one of our keys: no "none", no HMAC keyed with our public key.
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("Only RS256 tokens are accepted")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("The token names no key")
    key = keyring.verification_key(kid)
    if key is None:
        await keyring.refresh(force=False)
        key = keyring.verification_key(kid)
    if key is None:
        raise InvalidToken("The token was signed with an unknown key")
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired() from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken() from exc
    try:
        return AccessClaims(
            user_id=uuid.UUID(payload["sub"]),
            session_id=uuid.UUID(payload["sid"]),
            jti=str(payload["jti"]),
            role=Role(payload["role"]),
            token_version=int(payload["ver"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=UTC),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidToken() from exc


def new_refresh_token() -> tuple[str, str]:
    """A fresh refresh token and the hash that is stored (the token itself never is)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _pad(key: str, context: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), context, hashlib.sha256).digest()


def seal_token(token: str, *, key: str, context: bytes) -> str:
    """``token`` (32 random bytes, base64url) sealed with a pad only ``key`` can produce.

    Used to answer a retried request again with the same token without storing a usable copy:
    the stored value is the token XOR HMAC-SHA256(key, context), and ``key`` (the predecessor
    refresh token, an Idempotency-Key) is itself stored only as a plain SHA-256 digest.
    """
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    if len(raw) != 32:
        raise ValueError("only 32-byte tokens can be sealed")
    return bytes(a ^ b for a, b in zip(raw, _pad(key, context), strict=True)).hex()


def unseal_token(sealed: str, *, key: str, context: bytes) -> str:
    raw = bytes(a ^ b for a, b in zip(bytes.fromhex(sealed), _pad(key, context), strict=True))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
