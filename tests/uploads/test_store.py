"""The chunk store's own contract, on both implementations (filesystem and a real S3 server)."""

from __future__ import annotations

import uuid
from pathlib import Path

from anyio import to_thread

from relaypacs.config import Settings
from relaypacs.uploads.store import instance_key, open_chunk_store, upload_prefix


async def test_deleting_by_one_objects_key_removes_that_object_only(
    settings: Settings, tmp_path: Path
) -> None:
    # Discarding what a losing assembly run stored goes through here: on the file store a key
    # naming one object used to delete nothing, and the copies stayed until retention.
    store = await to_thread.run_sync(open_chunk_store, settings)
    try:
        upload_id = uuid.uuid4()
        first, second = (instance_key(upload_id, uuid.uuid4()) for _ in range(2))
        for key in (first, second):
            source = tmp_path / "object"
            source.write_bytes(key.encode())
            await store.put_file(key, source)

        assert await store.delete_prefix(first) == 1
        assert await store.size_of(first) is None
        assert await store.size_of(second) == len(second.encode())
        assert await store.delete_prefix(first) == 0
        assert await store.delete_prefix(upload_prefix(upload_id)) == 1
        assert await store.size_of(second) is None
    finally:
        await store.close()
