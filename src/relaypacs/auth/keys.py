"""The RS256 signing keyring: one active private key, and retired public keys kept for verifying.

Layout (beside ``RELAYPACS_JWT_PRIVATE_KEY_FILE``, default ``DATA_DIR/keys/jwt-signing.pem``)::

    keys/jwt-signing.pem          active private key, mode 0600
    keys/retired/<kid>.pem        public keys of earlier signing keys

``relaypacs admin rotate-keys`` retires the active key and writes a new one; access tokens signed
with a retired key stay valid until they expire, after which the retired key is pruned. Running
servers notice a rotation by the key file's modification time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = structlog.get_logger(__name__)

RSA_KEY_BITS = 2048
ALGORITHM = "RS256"


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "e": _b64url_uint(numbers.e), "n": _b64url_uint(numbers.n)}


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 JWK thumbprint: stable, and the same on every instance sharing the key."""
    canonical = json.dumps(public_jwk(public_key), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _write_private_key(path: Path, key: rsa.RSAPrivateKey, *, replace: bool) -> bool:
    """Write atomically with mode 0600; with ``replace=False`` keep a key another process wrote."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _load_private_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


def ensure_private_key(path: Path) -> bool:
    """Generate the signing key when absent. Returns True when a key was generated."""
    if path.exists():
        # Group-readable is the documented Docker setup (0640, group 10001: docs/deploy.md);
        # only a key that every local user can read is worth a warning.
        if path.stat().st_mode & 0o004:
            log.warning("jwt_key_file_readable_by_others", path=str(path))
        return False
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    created = _write_private_key(path, key, replace=False)
    if created:
        log.info("jwt_key_generated", path=str(path))
    return created


def retired_dir(path: Path) -> Path:
    return path.parent / "retired"


def rotate_keys(path: Path, keep_retired_for: timedelta) -> tuple[str, str]:
    """Retire the active key and make a new one. Returns (old kid, new kid). Blocking."""
    ensure_private_key(path)
    old = _load_private_key(path)
    old_kid = key_id(old.public_key())
    retired = retired_dir(path)
    retired.mkdir(parents=True, exist_ok=True, mode=0o700)
    (retired / f"{old_kid}.pem").write_bytes(
        old.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    new = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    _write_private_key(path, new, replace=True)
    _prune_retired(retired, keep_retired_for)
    return old_kid, key_id(new.public_key())


def _prune_retired(retired: Path, keep_for: timedelta) -> None:
    # A retired key can only verify tokens issued before its retirement; once the longest
    # token lifetime has passed since then, nothing it signed is still valid.
    horizon = time.time() - keep_for.total_seconds()
    for public in retired.glob("*.pem"):
        if public.stat().st_mtime < horizon:
            public.unlink(missing_ok=True)


@dataclass
class _Snapshot:
    signing_key: rsa.RSAPrivateKey
    signing_kid: str
    verification_keys: dict[str, rsa.RSAPublicKey]
    fingerprint: tuple[float, ...]


def _fingerprint(path: Path) -> tuple[float, ...]:
    retired = retired_dir(path)
    stamps = [path.stat().st_mtime]
    if retired.is_dir():
        stamps.append(retired.stat().st_mtime)
        stamps.extend(sorted(p.stat().st_mtime for p in retired.glob("*.pem")))
    return tuple(stamps)


def _load_snapshot(path: Path) -> _Snapshot:
    signing = _load_private_key(path)
    kid = key_id(signing.public_key())
    verification: dict[str, rsa.RSAPublicKey] = {kid: signing.public_key()}
    retired = retired_dir(path)
    if retired.is_dir():
        for public_file in sorted(retired.glob("*.pem")):
            public = serialization.load_pem_public_key(public_file.read_bytes())
            if isinstance(public, rsa.RSAPublicKey):
                verification.setdefault(key_id(public), public)
    return _Snapshot(signing, kid, verification, _fingerprint(path))


@dataclass
class Keyring:
    path: Path
    reload_seconds: float = 5.0
    _snapshot: _Snapshot = field(init=False)
    _checked_at: float = field(init=False, default=0.0)

    @classmethod
    def open(
        cls, path: Path, *, allow_generate: bool = True, reload_seconds: float = 5.0
    ) -> Keyring:
        """Blocking: load the keyring (generating the key first when allowed)."""
        if allow_generate:
            ensure_private_key(path)
        keyring = cls(path, reload_seconds)
        keyring._snapshot = _load_snapshot(path)
        keyring._checked_at = time.monotonic()
        return keyring

    async def refresh(self, *, force: bool = False) -> None:
        """Pick up a rotation done by the CLI or another instance (checked every few seconds)."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.reload_seconds:
            return
        self._checked_at = now
        try:
            fingerprint = await anyio.to_thread.run_sync(_fingerprint, self.path)
            if fingerprint != self._snapshot.fingerprint:
                self._snapshot = await anyio.to_thread.run_sync(_load_snapshot, self.path)
                log.info("jwt_keyring_reloaded", kid=self._snapshot.signing_kid)
        except (OSError, ValueError) as exc:
            # Keep signing with the keys we have rather than failing every request.
            log.error("jwt_keyring_reload_failed", error=type(exc).__name__)

    @property
    def signing_key(self) -> rsa.RSAPrivateKey:
        return self._snapshot.signing_key

    @property
    def signing_kid(self) -> str:
        return self._snapshot.signing_kid

    def verification_key(self, kid: str) -> rsa.RSAPublicKey | None:
        return self._snapshot.verification_keys.get(kid)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "keys": [
                {**public_jwk(public), "kid": kid, "use": "sig", "alg": ALGORITHM}
                for kid, public in self._snapshot.verification_keys.items()
            ]
        }
