"""The resume journal: which upload session holds which local study, in ``<state dir>``.

One JSON file (mode 0600), rewritten atomically under a lock shared by all uploader processes of
the user. It keeps the upload token (valid for that one upload only, for 24 h) so a resumed run
can send chunks without asking for anything but the list of missing chunks.

It also keeps the ``Idempotency-Key`` of each study's ``POST /uploads`` from before the request
is sent until its answer is recorded: a run that crashed (or lost the 201) sends the same key
again and the gateway answers with the upload it already made, not a second one.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from relaypacs.client.files import locked, read_json, state_dir, write_json_private

KEEP_COMPLETED_S = 30 * 24 * 3600
# The gateway answers a key for 24 h; an older key would be judged as a new request anyway.
KEY_LIFETIME_S = 23 * 3600


def body_digest(body: dict[str, Any]) -> str:
    """Which request a key was made for: another body needs another key."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class JournalFile:
    file_id: str
    name: str
    size: int
    chunk_count: int
    source: str


@dataclass
class JournalEntry:
    server: str
    study_instance_uid: str
    fingerprint: str
    upload_id: str
    upload_token: str | None
    chunk_size: int
    expires_at: str | None
    files: list[JournalFile]
    completed: bool = False
    updated_at: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return entry_key(self.server, self.fingerprint)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JournalEntry:
        values = dict(data)
        values["files"] = [JournalFile(**f) for f in data.get("files", [])]
        return cls(**values)


def entry_key(server: str, fingerprint: str) -> str:
    return f"{server.rstrip('/')}|{fingerprint}"


class Journal:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or state_dir()
        self.path = self.directory / "journal.json"
        self._lock_path = self.directory / ".journal.lock"

    def _entries(self) -> dict[str, Any]:
        entries = read_json(self.path).get("uploads", {})
        return entries if isinstance(entries, dict) else {}

    def get(self, server: str, fingerprint: str) -> JournalEntry | None:
        data = self._entries().get(entry_key(server, fingerprint))
        if not isinstance(data, dict):
            return None
        try:
            return JournalEntry.from_json(data)
        except (TypeError, KeyError):
            return None

    def find_upload(self, upload_id: str, server: str | None = None) -> JournalEntry | None:
        """The entry of the session ``upload_id`` (made on ``server``, when given)."""
        for data in self._entries().values():
            if (
                isinstance(data, dict)
                and data.get("upload_id") == upload_id
                and (server is None or data.get("server") == server.rstrip("/"))
            ):
                try:
                    return JournalEntry.from_json(data)
                except (TypeError, KeyError):
                    return None
        return None

    def idempotency_key(self, server: str, fingerprint: str, body: dict[str, Any]) -> str:
        """The key for starting this study with this body: the one saved, else a new one, saved
        before it is used (so that it survives the crash it is there for)."""
        name, digest = entry_key(server, fingerprint), body_digest(body)
        with locked(self._lock_path):
            data = read_json(self.path)
            keys = data.get("idempotency_keys")
            if not isinstance(keys, dict):
                keys = data["idempotency_keys"] = {}
            now = time.time()
            for stale in [
                k
                for k, v in keys.items()
                if not isinstance(v, dict)
                or not 0 <= now - float(v.get("created", 0)) < KEY_LIFETIME_S
            ]:
                del keys[stale]
            current = keys.get(name)
            if isinstance(current, dict) and current.get("body") == digest and current.get("key"):
                return str(current["key"])
            key = str(uuid.uuid4())
            keys[name] = {"key": key, "body": digest, "created": now}
            write_json_private(self.path, data)
            return key

    def forget_idempotency_key(self, server: str, fingerprint: str) -> None:
        with locked(self._lock_path):
            data = read_json(self.path)
            keys = data.get("idempotency_keys")
            if isinstance(keys, dict) and keys.pop(entry_key(server, fingerprint), None):
                write_json_private(self.path, data)

    def save(self, entry: JournalEntry) -> None:
        entry.updated_at = time.time()
        with locked(self._lock_path):
            data = read_json(self.path)
            keys = data.get("idempotency_keys")
            if isinstance(keys, dict):
                # The answer is recorded: the next start of this study is a new request.
                keys.pop(entry.key, None)
            uploads = data.setdefault("uploads", {})
            now = time.time()
            for key in [
                k
                for k, v in uploads.items()
                if not isinstance(v, dict) or now - float(v.get("updated_at", 0)) > KEEP_COMPLETED_S
            ]:
                del uploads[key]
            uploads[entry.key] = asdict(entry)
            write_json_private(self.path, data)

    def remove(self, entry: JournalEntry) -> None:
        with locked(self._lock_path):
            data = read_json(self.path)
            data.setdefault("uploads", {}).pop(entry.key, None)
            write_json_private(self.path, data)

    def uploaded_sources(self, server: str) -> set[str]:
        """Fingerprints of local files already sent to ``server`` in a completed upload."""
        sources: set[str] = set()
        for data in self._entries().values():
            if (
                isinstance(data, dict)
                and data.get("completed")
                and data.get("server") == server.rstrip("/")
            ):
                sources.update(str(f.get("source")) for f in data.get("files", []))
        return sources
