"""STOW-RS throughput of RelayPACS's DICOMweb client against a real Orthanc (not a test).

Writes a study of N instances x ~512 KiB to disk one file at a time, then stores it with several
batchings (each into a fresh study, same Orthanc) and prints MiB/s and the client's peak RSS.

    .venv/bin/python -m bench.pacs.stow_orthanc --instances 400
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from pydicom.uid import generate_uid
from tests.pacs.conftest import dicom_bytes
from tests.support.orthanc import OrthancServer

from relaypacs.pacs.destination import StowInstance
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination
from relaypacs.pacs.service import BatchLimits, store_in_batches

MIB = 1024 * 1024


def write_study(directory: Path, count: int, patient_id: str) -> list[tuple[str, Path]]:
    study_uid, series_uid = generate_uid(), generate_uid()
    files: list[tuple[str, Path]] = []
    for n in range(count):
        uid, data = dicom_bytes(study_uid, series_uid=series_uid, pixels=512, patient_id=patient_id)
        path = directory / f"{n:05d}.dcm"
        path.write_bytes(data)
        files.append((uid, path))
    return files


def as_instances(files: list[tuple[str, Path]], study_uid: str) -> list[StowInstance]:
    def opener(path: Path) -> AsyncIterator[bytes]:
        async def stream() -> AsyncIterator[bytes]:
            async with await anyio.open_file(path, "rb") as handle:
                while piece := await handle.read(256 * 1024):
                    yield piece

        return stream()

    return [
        StowInstance(
            sop_instance_uid=uid,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            study_instance_uid=study_uid,
            series_instance_uid="1.2",
            size=path.stat().st_size,
            open=lambda path=path: opener(path),  # type: ignore[misc]
        )
        for uid, path in files
    ]


async def run(count: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        orthanc = OrthancServer(root / "orthanc")
        orthanc.start()
        try:
            plans = [
                ("one request", BatchLimits(max_bytes=1 << 40, max_instances=10**6, parallel=1)),
                ("50 per request, 1 at a time", BatchLimits(parallel=1)),
                ("50 per request, 4 in parallel", BatchLimits(parallel=4)),
                ("20 per request, 8 in parallel", BatchLimits(max_instances=20, parallel=8)),
            ]
            for label, limits in plans:
                study_dir = root / f"study-{generate_uid()}"
                study_dir.mkdir()
                files = await asyncio.to_thread(write_study, study_dir, count, generate_uid())
                total = sum(path.stat().st_size for _, path in files)
                destination = DicomWebDestination(
                    "orthanc",
                    orthanc.dicomweb_url,
                    username=orthanc.username,
                    password=orthanc.password,
                    max_connections=16,
                )
                started = time.perf_counter()
                result = await store_in_batches(destination, as_instances(files, "x"), limits)
                seconds = time.perf_counter() - started
                await destination.close()
                assert len(result.stored) == count, [r.reason for r in result.failed][:3]
                print(
                    f"{label:32s} {total / MIB:7.1f} MiB in {seconds:6.2f} s "
                    f"= {total / MIB / seconds:6.1f} MiB/s"
                )
        finally:
            orthanc.stop()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"client peak RSS {peak_mib:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=400)
    asyncio.run(run(parser.parse_args().instances))


if __name__ == "__main__":
    main()
