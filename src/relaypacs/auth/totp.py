"""TOTP (RFC 6238) codes, provisioning QR codes and single-use recovery codes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime

import pyotp
import segno

ISSUER = "RelayPACS"
STEP_SECONDS = 30
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread
_TOTP_CODE = re.compile(r"^\d{6}$")


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_svg_data_uri(uri: str) -> str:
    data_uri: str = segno.make(uri, error="m").svg_data_uri(scale=4)
    return data_uri


def looks_like_totp(code: str) -> bool:
    return bool(_TOTP_CODE.match(code.strip().replace(" ", "")))


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code matches (one step of clock drift either way), or None."""
    code = code.strip().replace(" ", "")
    if not _TOTP_CODE.match(code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes of 60 bits each, grouped for reading aloud: ``ABCD-EFGH-JKLM``."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return codes


def hash_recovery_code(user_id: uuid.UUID, code: str) -> str:
    # Salted with the user id so that equal codes of two users never share a hash.
    normalised = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(f"{user_id}:{normalised}".encode()).hexdigest()
