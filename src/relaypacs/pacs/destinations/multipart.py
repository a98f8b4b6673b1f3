"""A ``multipart/related; type="application/dicom"`` body streamed from instance streams
(PS3.18 8.6.1.2, RFC 2387), with its exact length known before the first byte is sent."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Sequence

from relaypacs.pacs.destination import StowInstance
from relaypacs.pacs.exceptions import InstanceIntegrityError


class MultipartBody:
    def __init__(self, instances: Sequence[StowInstance], boundary: str | None = None) -> None:
        self.instances = list(instances)
        # Random, so it cannot occur inside a part by chance or by an attacker's design.
        self.boundary = boundary or f"relaypacs-{secrets.token_hex(16)}"
        self._part_header = f"--{self.boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(
            "ascii"
        )
        self._closing = f"--{self.boundary}--\r\n".encode("ascii")
        # Set once the HTTP client has taken the last byte: a response that arrives before
        # then answers a request the destination never received whole.
        self.sent_whole = False

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'

    @property
    def length(self) -> int:
        per_part = len(self._part_header) + len(b"\r\n")
        return sum(per_part + instance.size for instance in self.instances) + len(self._closing)

    async def stream(self) -> AsyncIterator[bytes]:
        for instance in self.instances:
            yield self._part_header
            async for piece in _checked(instance):
                yield piece
            yield b"\r\n"
        yield self._closing
        # Reached only when the client asks for more after the closing delimiter was written.
        self.sent_whole = True


async def _checked(instance: StowInstance) -> AsyncIterator[bytes]:
    """The instance's bytes; raises before the part ends when size or SHA-256 differ.

    The part's closing boundary is then never sent, so a streaming origin server does not store
    the part (the request fails as a whole and its other instances are sent again later).
    """
    digest = hashlib.sha256() if instance.sha256 else None
    sent = 0
    async for piece in instance.open():
        sent += len(piece)
        if sent > instance.size:
            raise InstanceIntegrityError(
                instance.sop_instance_uid, "the stored instance is longer than recorded"
            )
        if digest is not None:
            # Blocks are the store's read size (256 KiB): hashing one takes well under a
            # millisecond, less than handing it to a thread would cost.
            digest.update(piece)
        yield piece
    if sent != instance.size:
        raise InstanceIntegrityError(
            instance.sop_instance_uid, "the stored instance is shorter than recorded"
        )
    if digest is not None and digest.hexdigest() != instance.sha256:
        raise InstanceIntegrityError(
            instance.sop_instance_uid, "the stored instance does not match its SHA-256"
        )
