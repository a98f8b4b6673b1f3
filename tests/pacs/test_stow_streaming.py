"""A STOW-RS request streams its instances: the client never holds the batch in memory.

The receiving end is a real socket server that reads the body in small pieces and throws them
away (Orthanc would keep a copy in its own process, which says nothing about ours). The
instances are files read in 1 MiB pieces, as the chunk store serves them; Python's own
allocation tracer measures the client's peak while 64 MiB go out in one request.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx

from relaypacs.pacs.destination import StowInstance
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination
from tests.pacs.faulty_server import DrainingServer

MIB = 1024 * 1024
INSTANCES = 8
INSTANCE_BYTES = 8 * MIB


def _instance(path: Path, n: int) -> StowInstance:
    async def stream() -> AsyncIterator[bytes]:
        async with await anyio.open_file(path, "rb") as handle:
            while piece := await handle.read(MIB):
                yield piece

    return StowInstance(
        sop_instance_uid=f"1.2.826.0.1.3680043.10.1.{n}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        study_instance_uid="1.2.826.0.1.3680043.10.1",
        series_instance_uid="1.2.826.0.1.3680043.10.2",
        size=INSTANCE_BYTES,
        open=stream,
    )


async def test_a_64_mib_stow_rs_request_holds_a_few_mib_at_most(tmp_path: Path) -> None:
    paths = []
    for n in range(INSTANCES):
        path = tmp_path / f"{n}.dcm"
        path.write_bytes(os.urandom(INSTANCE_BYTES))
        paths.append(path)
    instances = [_instance(path, n) for n, path in enumerate(paths)]
    async with DrainingServer() as pacs:
        destination = DicomWebDestination(
            "sink", pacs.url, kind="generic", timeout=httpx.Timeout(60.0)
        )
        tracemalloc.start()
        try:
            await destination.store_instances(instances)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await destination.close()
    body = INSTANCES * INSTANCE_BYTES
    assert pacs.received > body  # the whole multipart body went out, in one request
    # A client that gathered the batch, or even two instances, before sending would peak at
    # 16 MiB or more; a streaming one holds a piece or two.
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB for a {body // MIB} MiB request"
