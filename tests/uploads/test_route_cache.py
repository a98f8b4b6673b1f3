"""The chunk route cache: bounded by the files it remembers, least recently used out."""

from __future__ import annotations

import uuid
from datetime import timedelta

from relaypacs.db.base import utcnow
from relaypacs.uploads.dependencies import ChunkRouteCache
from relaypacs.uploads.service import ChunkRoute


def _routes(files: int) -> list[ChunkRoute]:
    upload_id, owner_id = uuid.uuid4(), uuid.uuid4()
    expires_at = utcnow() + timedelta(hours=24)
    return [
        ChunkRoute(upload_id, owner_id, expires_at, 1024, uuid.uuid4(), 100, 1)
        for _ in range(files)
    ]


def test_the_cache_is_bounded_by_routes_not_uploads() -> None:
    cache = ChunkRouteCache(capacity=7)
    cache.put(("token-a", "a"), _routes(3), receiving=False)
    cache.put(("token-b", "b"), _routes(3), receiving=False)
    assert cache.get(("token-a", "a")) is not None  # now the most recently used
    cache.put(("token-c", "c"), _routes(3), receiving=True)
    # Nine routes do not fit in seven: the least recently used upload (b) goes, whole.
    assert cache.get(("token-b", "b")) is None
    assert cache.get(("token-a", "a")) is not None
    entry = cache.get(("token-c", "c"))
    assert entry is not None
    assert entry.receiving
    assert len(entry.routes) == 3
    assert len(cache) == 6


def test_remembering_an_upload_again_replaces_its_routes() -> None:
    cache = ChunkRouteCache(capacity=10)
    cache.put(("token", "a"), _routes(4), receiving=False)
    cache.put(("token", "a"), _routes(4), receiving=True)
    assert len(cache) == 4
