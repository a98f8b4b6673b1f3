"""Sign-ins per server, kept in ``<config dir>/credentials.json`` (mode 0600).

The refresh token is single-use (the server rotates it, and a reused one revokes the whole
family), so every renewal is written to disk before it is used, under a file lock shared by all
uploader processes of the user.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from relaypacs.client.files import config_dir, locked_async, read_json, write_json_private

# Renew a little before the access token really expires, so no request races its expiry.
EXPIRY_MARGIN_S = 120


@dataclass(frozen=True)
class SavedSignIn:
    username: str
    refresh_token: str
    access_token: str
    access_expires_at: float

    @classmethod
    def from_tokens(cls, username: str, tokens: dict[str, Any]) -> SavedSignIn:
        expires_in = float(tokens.get("expires_in") or 300)
        return cls(
            username=username,
            refresh_token=str(tokens["refresh_token"]),
            access_token=str(tokens["access_token"]),
            access_expires_at=time.time() + expires_in,
        )

    def access_token_usable(self) -> bool:
        return time.time() < self.access_expires_at - EXPIRY_MARGIN_S


class CredentialStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / "credentials.json"

    @asynccontextmanager
    async def lock_async(self) -> AsyncIterator[None]:
        """Shared by every uploader process of the user; waiting for it does not stop the event
        loop, so this process's transfers go on while another one renews the sign-in."""
        async with locked_async(self.directory / ".credentials.lock"):
            yield

    def load(self, server: str) -> SavedSignIn | None:
        entry = read_json(self.path).get("servers", {}).get(server.rstrip("/"))
        if not isinstance(entry, dict):
            return None
        try:
            return SavedSignIn(
                username=str(entry["username"]),
                refresh_token=str(entry["refresh_token"]),
                access_token=str(entry.get("access_token", "")),
                access_expires_at=float(entry.get("access_expires_at", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, server: str, sign_in: SavedSignIn) -> None:
        data = read_json(self.path)
        data.setdefault("servers", {})[server.rstrip("/")] = asdict(sign_in)
        data["default_server"] = server.rstrip("/")
        write_json_private(self.path, data)

    def forget(self, server: str) -> None:
        data = read_json(self.path)
        data.get("servers", {}).pop(server.rstrip("/"), None)
        write_json_private(self.path, data)

    def default_server(self) -> str | None:
        value = read_json(self.path).get("default_server")
        return str(value) if value else None
