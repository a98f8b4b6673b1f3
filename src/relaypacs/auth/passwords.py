"""Password policy and bcrypt hashing (always off the event loop)."""

from __future__ import annotations

import re
import string
from importlib import resources

import anyio.to_thread
import bcrypt

from relaypacs.auth.exceptions import (
    CommonPassword,
    PasswordContainsUsername,
    PasswordTooLong,
    WeakPassword,
)

MIN_LENGTH = 12
# bcrypt only reads the first 72 bytes; longer passwords are refused, never cut silently.
MAX_BYTES = 72

_EDGE_NON_LETTERS = re.compile(r"^[^a-z]+|[^a-z]+$")


def _load_common_passwords() -> frozenset[str]:
    text = resources.files("relaypacs.auth").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


# Loaded once at import (start-up), not inside a request.
COMMON_PASSWORDS = _load_common_passwords()


def is_common(password: str) -> bool:
    """Common as typed, or a common word dressed up with digits and symbols ("Dragon2024!")."""
    folded = password.lower()
    if folded in COMMON_PASSWORDS:
        return True
    core = _EDGE_NON_LETTERS.sub("", folded)
    return len(core) >= 4 and core in COMMON_PASSWORDS


def check_password_policy(password: str, *, username: str | None) -> None:
    """Raise the first rule the password breaks."""
    if len(password.encode("utf-8")) > MAX_BYTES:
        raise PasswordTooLong(f"Use at most {MAX_BYTES} bytes (UTF-8)")
    missing: list[str] = []
    if len(password) < MIN_LENGTH:
        missing.append(f"at least {MIN_LENGTH} characters")
    if not any(c.isupper() for c in password):
        missing.append("an upper-case letter")
    if not any(c.islower() for c in password):
        missing.append("a lower-case letter")
    if not any(c.isdigit() for c in password):
        missing.append("a digit")
    if not any((not c.isalnum() and not c.isspace()) or c in string.punctuation for c in password):
        missing.append("a special character")
    if missing:
        raise WeakPassword("The password needs " + ", ".join(missing))
    if username and username.lower() in password.lower():
        raise PasswordContainsUsername()
    if is_common(password):
        raise CommonPassword("Choose a password that is not on lists of common passwords")


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def _verify(password: str, password_hash: str) -> bool:
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_BYTES:
        return False
    return bcrypt.checkpw(encoded, password_hash.encode("ascii"))


async def hash_password(password: str, rounds: int) -> str:
    return await anyio.to_thread.run_sync(_hash, password, rounds)


async def verify_password(password: str, password_hash: str) -> bool:
    return await anyio.to_thread.run_sync(_verify, password, password_hash)


def hash_rounds(password_hash: str) -> int:
    """The cost factor stored in a bcrypt hash (``$2b$12$...``)."""
    return int(password_hash.split("$")[2])
