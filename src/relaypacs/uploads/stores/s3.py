"""Chunk store on any S3-compatible endpoint (MinIO in production, moto's server in tests).

boto3 is blocking, so every call runs in a worker thread. Bodies are staged in a local temporary
file (never in memory), their MD5 checked by us — moto does not check ``Content-MD5`` and we do not
want to depend on the server for promise 1 — and then sent with ``Content-MD5`` (so MinIO and S3
refuse a body damaged on the way) and ``ServerSideEncryption=AES256`` (data at rest, as the PRD
asks). A single PUT is atomic in S3, so there is no temporary object in the bucket.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
from anyio import to_thread
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from relaypacs.config import MIB
from relaypacs.uploads.store import (
    READ_BLOCK_BYTES,
    StagedChunk,
    StagingArea,
    StoreUnavailable,
    stage_to_file,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

SERVER_SIDE_ENCRYPTION: Final = "AES256"
#: Multipart parts of 8 MiB, two at a time: memory stays ~ tens of MiB whatever the study size.
_TRANSFER = TransferConfig(
    multipart_threshold=16 * MIB,
    multipart_chunksize=8 * MIB,
    max_concurrency=2,
    max_io_queue=4,
)
#: Incomplete multipart uploads older than this are aborted by the start-up clean-up.
_STALE_MULTIPART_SECONDS = 24 * 3600


def _is_missing(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


class _StagedObject:
    def __init__(self, store: S3ChunkStore, path: Path, md5: bytes, size: int) -> None:
        self._store = store
        self._path: Path | None = path
        self.md5 = md5
        self.size = size

    async def commit(self, key: str) -> None:
        assert self._path is not None, "staged chunk already committed or discarded"
        path = self._path
        await to_thread.run_sync(self._store.put_verified, key, path, self.md5)
        await self.discard()

    async def discard(self) -> None:
        path, self._path = self._path, None
        if path is not None:
            await to_thread.run_sync(lambda: path.unlink(missing_ok=True))


class S3ChunkStore:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        endpoint_url: str | None,
        region: str,
        staging_dir: Path,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=64,
                s3={"addressing_style": "path"},
            ),
        )
        self.staging = StagingArea(staging_dir)

    @property
    def description(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_verified(self, key: str, path: Path, md5: bytes) -> None:
        """Blocking: one PUT with the digest we computed, so the server can verify it too."""
        try:
            with path.open("rb") as body:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.object_key(key),
                    Body=body,
                    ContentLength=path.stat().st_size,
                    ContentMD5=base64.b64encode(md5).decode(),
                    ServerSideEncryption=SERVER_SIDE_ENCRYPTION,
                )
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def commit_many(self, items: Sequence[tuple[StagedChunk, str]]) -> None:
        # One PUT per chunk (with Content-MD5), side by side.
        await asyncio.gather(*(staged.commit(key) for staged, key in items))

    async def stage(self, body: AsyncIterator[bytes], *, max_size: int) -> _StagedObject:
        path = self.staging.new_path()
        md5, size = await stage_to_file(body, path, max_size=max_size, fsync=False)
        return _StagedObject(self, path, md5, size)

    def local_path(self, key: str) -> None:
        return None

    async def read(self, key: str) -> AsyncIterator[bytes]:
        def open_body() -> Any:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
            except ClientError as exc:
                if _is_missing(exc):
                    raise FileNotFoundError(key) from exc
                raise StoreUnavailable(type(exc).__name__) from exc

        stream = await to_thread.run_sync(open_body)
        try:
            while block := await to_thread.run_sync(stream.read, READ_BLOCK_BYTES):
                yield block
        finally:
            stream.close()

    async def put_file(self, key: str, path: Path) -> None:
        def upload() -> None:
            try:
                self.client.upload_file(
                    str(path),
                    self.bucket,
                    self.object_key(key),
                    ExtraArgs={"ServerSideEncryption": SERVER_SIDE_ENCRYPTION},
                    Config=_TRANSFER,
                )
            except (BotoCoreError, ClientError) as exc:
                raise StoreUnavailable(type(exc).__name__) from exc

        await to_thread.run_sync(upload)

    async def fetch_to_file(self, key: str, path: Path) -> None:
        def download() -> None:
            try:
                self.client.download_file(
                    self.bucket, self.object_key(key), str(path), Config=_TRANSFER
                )
            except ClientError as exc:
                if _is_missing(exc):
                    raise FileNotFoundError(key) from exc
                raise StoreUnavailable(type(exc).__name__) from exc

        await to_thread.run_sync(download)

    async def size_of(self, key: str) -> int | None:
        def head() -> int | None:
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
            except ClientError as exc:
                if _is_missing(exc):
                    return None
                raise StoreUnavailable(type(exc).__name__) from exc
            return int(response["ContentLength"])

        return await to_thread.run_sync(head)

    async def delete_prefix(self, prefix: str) -> int:
        def delete() -> int:
            deleted = 0
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.object_key(prefix)):
                keys: list[ObjectIdentifierTypeDef] = [
                    {"Key": item["Key"]} for item in page.get("Contents", [])
                ]
                if keys:
                    self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                    )
                    deleted += len(keys)
            return deleted

        return await to_thread.run_sync(delete)

    async def clean_stale_temporaries(self, older_than_seconds: float) -> int:
        def clean() -> int:
            removed = self.staging.clean_stale()
            horizon = time.time() - max(older_than_seconds, _STALE_MULTIPART_SECONDS)
            response = self.client.list_multipart_uploads(
                Bucket=self.bucket, Prefix=self.object_key("")
            )
            for upload in response.get("Uploads", []):
                if upload["Initiated"].timestamp() < horizon:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
            return removed

        return await to_thread.run_sync(clean)

    async def check(self) -> None:
        await to_thread.run_sync(lambda: self.client.head_bucket(Bucket=self.bucket))

    async def close(self) -> None:
        await to_thread.run_sync(self.staging.close)
        self.client.close()
