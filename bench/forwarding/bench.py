"""A study through the gateway into Orthanc, against the same files stored directly (not a test).

    .venv/bin/python -m bench.forwarding.bench                 (or: make bench-forwarding)
    .venv/bin/python -m bench.forwarding.bench --instances 200 # a smaller study
    .venv/bin/python -m bench.forwarding.bench --database-url postgresql+asyncpg://...  # + worker

One run, one Orthanc (apt `orthanc` + `orthanc-dicomweb`, started here with its own storage):

1. **direct**: the study's files stored with RelayPACS's own STOW-RS client straight into Orthanc,
   with each batching of ``--batchings``; the fastest is "best direct";
2. **gateway**: `relaypacs serve` (embedded SQLite, jobs in-process; or PostgreSQL with a
   separate `relaypacs worker`) with ``RELAYPACS_PACS_URL`` pointing at the same Orthanc and the
   best direct batching. A client uploads the same files over HTTP (one 1 MiB chunk per file,
   ``--connections`` in flight), completes the upload and waits for ``delivered``: from the
   first chunk's request to the ``delivered`` row of the upload's timeline;
3. **direct again** with the best batching, to show how much the machine drifted meanwhile.

By default everything talks over loopback, as fast as the machine allows. ``--link-mbit N``
(and ``--loss P``) put Orthanc and the gateway in a network namespace behind a veth pair whose
client→server direction a ``tbf`` qdisc shapes to N Mbit/s (and an nftables rule drops P % of
the packets each way): the reading centre across a slower link from the sender. Both clients,
the direct STOW-RS and the gateway's chunk PUTs, cross that link; the gateway reaches Orthanc
inside the namespace, as it reaches a PACS on its own LAN. (Root only. The namespace has its own
loopback: with ``--database-url``, reach PostgreSQL by its Unix socket, e.g.
``postgresql+asyncpg://postgres@/benchfwd?host=/var/run/postgresql``.)

Between runs the study is deleted from Orthanc, so every run stores the same files afresh. The
gateway's time is split with its own timeline (upload / assemble+validate / queue / forward) and
the forwarding job's log line (STOW-RS and QIDO-RS confirmation seconds); the assembly job's
log line says how many files were left to assemble after ``complete`` (each file is assembled
and validated as soon as its chunk is stored, while the rest of the study arrives). Results go to
bench/results/forwarding-<time>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydicom.uid import CTImageStorage, generate_uid
from tests.pacs.conftest import dicom_bytes
from tests.resilience.network import can_make_namespaces, lossy_link
from tests.resilience.pacs import NamespacedOrthanc
from tests.support.orthanc import OrthancServer

from bench.uploads.bench import Connection, free_port, wait_listening
from relaypacs.pacs.destination import StowInstance
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination
from relaypacs.pacs.service import BatchLimits, store_in_batches

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
CHUNK = MIB
PASSWORD = "Vq8#relay-Pacs!"  # noqa: S105 (a throwaway benchmark account)
DEFAULT_BATCHINGS = ("50x4", "20x8")
TICKS = os.sysconf("SC_CLK_TCK")


# --- CPU time: whether a ratio is possible at all on this machine's cores ----------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, all its threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class CpuMeter:
    """CPU seconds each process (and this bench client) spent between start and :meth:`read`.

    Wall time alone cannot tell a slow design from a full machine: if the CPU the processes
    need, divided by the cores, already exceeds a target, no overlap or scheduling can meet it.
    """

    def __init__(self, processes: dict[str, int]) -> None:
        self._processes = processes
        self._start = {name: cpu_seconds(pid) for name, pid in processes.items()}
        self._own = _own_cpu_seconds()

    def read(self) -> dict[str, float]:
        spent = {
            name: round(cpu_seconds(pid) - self._start[name], 2)
            for name, pid in self._processes.items()
        }
        spent["bench_client"] = round(_own_cpu_seconds() - self._own, 2)
        return spent


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def write_study(directory: Path, count: int) -> tuple[str, list[Path]]:
    """``count`` CT instances of 512x512 16-bit pixels (~512 KiB each), one study and series."""
    study_uid, series_uid, patient_id = generate_uid(), generate_uid(), f"BENCH-{os.getpid()}"
    paths = []
    for n in range(count):
        _, data = dicom_bytes(study_uid, series_uid=series_uid, pixels=512, patient_id=patient_id)
        path = directory / f"{n:05d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return study_uid, paths


class Pacer:
    """Paces what one client sends, over all its connections, to ``mib_per_s``: a stand-in for
    a link slower than the machine (no latency, no loss). ``None`` sends as fast as it can."""

    def __init__(self, mib_per_s: float | None) -> None:
        self.rate = mib_per_s * MIB if mib_per_s else None
        self.started: float | None = None
        self.sent = 0

    async def take(self, size: int) -> None:
        if self.rate is None:
            return
        now = time.perf_counter()
        if self.started is None:
            self.started = now
        # The moment these bytes may go: everything before them at the link's rate.
        due = self.started + self.sent / self.rate
        self.sent += size
        if due > now:
            await asyncio.sleep(due - now)


@dataclass(frozen=True)
class Site:
    """Where Orthanc and the gateway run: this machine's loopback, or a network namespace that
    the bench's clients reach over a shaped (and lossy) veth link at ``host``."""

    host: str = "127.0.0.1"
    namespace: str | None = None

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else list(argv)

    def orthanc(self, directory: Path) -> OrthancServer:
        if self.namespace is None:
            return OrthancServer(directory)
        return NamespacedOrthanc(directory, self.namespace, self.host)


@contextmanager
def site_for(link_mbit: float | None, loss_percent: int) -> Iterator[Site]:
    """Loopback, or a namespace behind a veth link of ``link_mbit`` with ``loss_percent`` loss
    each way (removed on exit, whatever happened)."""
    if link_mbit is None and not loss_percent:
        yield Site()
        return
    with lossy_link() as link:
        if link_mbit is not None:
            link.shape(round(link_mbit * 1000))
        if loss_percent:
            link.loss(inbound=loss_percent, outbound=loss_percent)
        yield Site(link.server_ip, link.namespace)


def batching(text: str) -> BatchLimits:
    instances, parallel = (int(part) for part in text.split("x"))
    return BatchLimits(max_instances=instances, parallel=parallel)


# --- direct STOW-RS ----------------------------------------------------------------------------


def stow_instances(
    paths: list[Path], study_uid: str, pacer: Pacer | None = None
) -> list[StowInstance]:
    def opener(path: Path) -> AsyncIterator[bytes]:
        async def stream() -> AsyncIterator[bytes]:
            async with await anyio.open_file(path, "rb") as handle:
                while piece := await handle.read(256 * 1024):
                    if pacer is not None:
                        await pacer.take(len(piece))
                    yield piece

        return stream()

    return [
        StowInstance(
            sop_instance_uid=f"{study_uid}.{n}",  # only the response's bookkeeping uses it
            sop_class_uid=str(CTImageStorage),
            study_instance_uid=study_uid,
            series_instance_uid="1.2",
            size=path.stat().st_size,
            open=lambda path=path: opener(path),  # type: ignore[misc]
        )
        for n, path in enumerate(paths)
    ]


async def direct(
    orthanc: OrthancServer,
    paths: list[Path],
    study_uid: str,
    plan: str,
    link_mib_per_s: float | None = None,
) -> tuple[float, dict[str, float]]:
    destination = DicomWebDestination(
        "orthanc",
        orthanc.dicomweb_url,
        kind="orthanc",
        username=orthanc.username,
        password=orthanc.password,
        max_connections=32,
    )
    assert orthanc.process is not None
    try:
        meter = CpuMeter({"orthanc": orthanc.process.pid})
        started = time.perf_counter()
        result = await store_in_batches(
            destination,
            stow_instances(paths, study_uid, Pacer(link_mib_per_s)),
            batching(plan),
        )
        seconds = time.perf_counter() - started
        cpu = meter.read()
    finally:
        await destination.close()
    assert not result.failed, [r.reason for r in result.failed][:3]
    assert not result.refused, [r.reason for r in result.refused][:3]
    return seconds, cpu


def forget_study(orthanc: OrthancServer, study_uid: str, expected: int) -> None:
    """Check Orthanc holds the whole study, then delete it so the next run stores it afresh."""
    assert orthanc.study_instance_count(study_uid) == expected
    found = httpx.post(
        f"{orthanc.url}/tools/find",
        auth=orthanc.auth,
        json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}},
        timeout=60,
    ).json()
    for study in found:
        httpx.delete(f"{orthanc.url}/studies/{study}", auth=orthanc.auth, timeout=600)
    assert orthanc.study_instance_count(study_uid) == 0


# --- through the gateway -----------------------------------------------------------------------


def start_gateway(
    work: Path,
    site: Site,
    orthanc: OrthancServer,
    plan: str,
    database_url: str | None,
    *,
    forward_while_receiving: bool = False,
) -> tuple[int, list[subprocess.Popen[bytes]], Path]:
    instances, parallel = plan.split("x")
    port = free_port()
    log_path = work / "gateway.log"
    env = {
        **os.environ,
        # This tree's package, even where another checkout's is installed in the venv.
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "RELAYPACS_DATA_DIR": str(work / "gateway"),
        # INFO: the forwarding job's `upload_forwarded` line carries the STOW/QIDO split.
        "RELAYPACS_LOG_LEVEL": "INFO",
        "RELAYPACS_BCRYPT_ROUNDS": "4",
        "RELAYPACS_UPLOAD_START_RATE_LIMIT": "100000/minute",
        "RELAYPACS_CHUNK_RATE_LIMIT": "10000000/minute",
        "RELAYPACS_PACS_URL": orthanc.url,
        "RELAYPACS_PACS_KIND": "orthanc",
        "RELAYPACS_PACS_USERNAME": orthanc.username,
        "RELAYPACS_PACS_PASSWORD": orthanc.password,
        "RELAYPACS_STOW_MAX_BATCH_INSTANCES": instances,
        "RELAYPACS_STOW_PARALLEL_REQUESTS": parallel,
    }
    if database_url:
        env["RELAYPACS_DATABASE_URL"] = database_url
    if forward_while_receiving:
        env["RELAYPACS_FORWARD_WHILE_RECEIVING"] = "true"
    log = log_path.open("wb")
    processes = [
        subprocess.Popen(
            site.argv(
                sys.executable, "-m", "relaypacs", "serve", "--host", site.host, "--port", str(port)
            ),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    wait_listening(port, processes[0], host=site.host)
    if database_url:
        # PostgreSQL: `serve` runs no jobs; a worker process does, as in production.
        processes.append(
            subprocess.Popen(
                site.argv(sys.executable, "-m", "relaypacs", "worker"),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    log.close()
    return port, processes, log_path


async def sign_in(host: str, port: int) -> dict[str, str]:
    connection = await Connection.open(port, host)
    name = f"bench{random.randrange(10**9)}"
    headers = {"Content-Type": "application/json"}
    body = json.dumps({"username": name, "email": f"{name}@example.org", "password": PASSWORD})
    status, _, text = await connection.request(
        "POST", "/api/v1/auth/register", headers, body.encode()
    )
    assert status == 201, text
    body = json.dumps({"username": name, "password": PASSWORD})
    status, _, text = await connection.request("POST", "/api/v1/auth/login", headers, body.encode())
    assert status == 200, text
    connection.close()
    return {"Authorization": "Bearer " + json.loads(text)["access_token"]}


async def control_request(
    host: str, port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, str]:
    """One request on a fresh connection (a control connection idle through the upload would
    meet the server's keep-alive timeout)."""
    connection = await Connection.open(port, host)
    try:
        status, _, content = await connection.request(method, path, headers, body)
    finally:
        connection.close()
    return status, content.decode()


async def through_gateway(
    host: str,
    port: int,
    paths: list[Path],
    connections: int,
    at_uploaded: Callable[[], None] = lambda: None,
    link_mib_per_s: float | None = None,
) -> dict[str, Any]:
    pacer = Pacer(link_mib_per_s)
    auth = await sign_in(host, port)
    body = json.dumps(
        {
            "study": {
                "patient_name": f"BENCH^{random.randrange(10**12)}",
                "study_date": "2024-05-17",
                "modality": "CT",
                "service_level": "routine",
            },
            "files": [{"name": path.name, "size": path.stat().st_size} for path in paths],
            "chunk_size": CHUNK,
            "force_upload": True,
        }
    ).encode()
    status, text = await control_request(
        host, port, "POST", "/api/v1/uploads", {**auth, "Content-Type": "application/json"}, body
    )
    assert status == 201, text
    created = json.loads(text)
    upload_id, token = created["upload_id"], created["upload_token"]
    files = created["files"]
    assert all(f["chunk_count"] == 1 for f in files)
    queue: asyncio.Queue[tuple[str, Path]] = asyncio.Queue()
    for entry, path in zip(files, paths, strict=True):
        queue.put_nowait((entry["file_id"], path))

    async def sender() -> None:
        connection = await Connection.open(port, host)
        try:
            while not queue.empty():
                file_id, path = queue.get_nowait()
                data = await asyncio.to_thread(path.read_bytes)
                md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
                await pacer.take(len(data))
                status, _, text = await connection.request(
                    "PUT",
                    f"/api/v1/uploads/{upload_id}/files/{file_id}/chunks/0",
                    {"X-Upload-Token": token, "Content-MD5": md5},
                    data,
                )
                assert status == 201, (status, text)
        finally:
            connection.close()

    first_chunk_at = time.time()
    await asyncio.gather(*(sender() for _ in range(connections)))
    uploaded_at = time.time()
    at_uploaded()
    status, text = await control_request(
        host, port, "POST", f"/api/v1/uploads/{upload_id}/complete", {"X-Upload-Token": token}
    )
    assert status == 202, text
    # The light list view (not the 1,000-instance status) while the gateway works.
    while True:
        status, text = await control_request(
            host, port, "GET", "/api/v1/uploads?limit=1", {**auth, "Accept": "application/json"}
        )
        assert status == 200, text
        state = json.loads(text)["items"][0]["state"]
        if state in {"delivered", "partially_delivered", "failed", "rejected"}:
            break
        # Only to know when to stop: the times come from the gateway's own timeline. A client
        # polls every 2 s (the CLI) or listens to the live stream (the PWA); polling much faster
        # would load the gateway with requests no client sends.
        await asyncio.sleep(0.5)
    seen_at = time.time()
    status, text = await control_request(
        host, port, "GET", f"/api/v1/uploads/{upload_id}", {"X-Upload-Token": token}
    )
    upload = json.loads(text)
    assert upload["state"] == "delivered", (upload["state"], upload["failure_reason"])
    at = {e["state"]: datetime.fromisoformat(e["at"]).timestamp() for e in upload["timeline"]}
    return {
        "upload_id": upload_id,
        "first_chunk_at": first_chunk_at,
        "uploaded_at": uploaded_at,
        "seen_delivered_at": seen_at,
        "timeline": at,
    }


def log_record(log_path: Path, event: str, upload_id: str) -> dict[str, Any]:
    for line in log_path.read_text(errors="replace").splitlines():
        if f'"{event}"' in line and upload_id in line:
            record: dict[str, Any] = json.loads(line)
            return record
    return {}


def forwarded_line(log_path: Path, upload_id: str) -> dict[str, Any]:
    return log_record(log_path, "upload_forwarded", upload_id)


# --- the run -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-forwarding-") as scratch,
        site_for(args.link_mbit, args.loss) as site,
    ):
        work = Path(scratch)
        study_dir = work / "study"
        study_dir.mkdir()
        study_uid, paths = await asyncio.to_thread(write_study, study_dir, args.instances)
        total = sum(path.stat().st_size for path in paths)
        orthanc = site.orthanc(work / "orthanc")
        await asyncio.to_thread(orthanc.start)
        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "load_average_at_start": list(os.getloadavg()),
            },
            "study": {"instances": len(paths), "bytes": total, "mib": round(total / MIB, 1)},
            "database": args.database_url or "sqlite (embedded default)",
            # Both clients paced to this (a slower link), or None: as fast as they can.
            "link_mib_per_s": args.link_mib_per_s,
            # Or both cross a veth link shaped by tbf (Mbit/s) and dropping this % each way.
            "link_mbit": args.link_mbit,
            "loss_percent": args.loss,
            "direct": {},
            "cpu_seconds": {"direct": {}},
        }
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for plan in args.batchings:
                seconds, cpu = await direct(orthanc, paths, study_uid, plan, args.link_mib_per_s)
                results["direct"][plan] = round(seconds, 2)
                results["cpu_seconds"]["direct"][plan] = cpu
                print(f"direct {plan:>6}: {seconds:6.2f} s  {total / MIB / seconds:6.1f} MiB/s")
                await asyncio.to_thread(forget_study, orthanc, study_uid, len(paths))
            best = min(results["direct"], key=results["direct"].get)

            port, processes, log_path = start_gateway(
                work,
                site,
                orthanc,
                best,
                args.database_url,
                forward_while_receiving=args.forward_while_receiving,
            )
            assert orthanc.process is not None
            meter = CpuMeter(
                {
                    "orthanc": orthanc.process.pid,
                    **{f"gateway_{n}": p.pid for n, p in enumerate(processes)},
                }
            )
            cpu_at_uploaded: dict[str, float] = {}
            samples: list[tuple[float, float]] = []
            sampler = asyncio.create_task(sample_cpu(meter, samples))
            try:
                outcome = await through_gateway(
                    site.host,
                    port,
                    paths,
                    args.connections,
                    lambda: cpu_at_uploaded.update(meter.read()),
                    args.link_mib_per_s,
                )
            finally:
                sampler.cancel()
            gateway_cpu = meter.read()
            at = outcome["timeline"]
            forwarded = forwarded_line(log_path, outcome["upload_id"])
            gateway_seconds = at["delivered"] - outcome["first_chunk_at"]
            split = {
                "upload": outcome["uploaded_at"] - outcome["first_chunk_at"],
                "complete_request": at["assembling"] - outcome["uploaded_at"],
                "assemble_validate": at["validated"] - at["assembling"],
                "queue": at["forwarding"] - at["validated"],
                "forward_stow": forwarded.get("stow_seconds"),
                "confirm_qido": forwarded.get("confirm_seconds"),
                "forward_total": at["delivered"] - at["forwarding"],
            }
            assembled = log_record(log_path, "upload_assembled", outcome["upload_id"])
            # The forwarding job after `complete` sends what early forwarding had not stored.
            sent_after_complete = forwarded.get("sent")
            results["gateway"] = {
                "batching": best,
                "connections": args.connections,
                "forward_while_receiving": args.forward_while_receiving,
                "instances_sent_after_complete": sent_after_complete,
                "seconds": round(gateway_seconds, 2),
                # Files left to assemble after `complete` (the others were done while uploading).
                "files_assembled_after_complete": assembled.get("assembled_now"),
                "split_seconds": {
                    k: (round(v, 2) if v is not None else None) for k, v in split.items()
                },
            }
            print(f"gateway ({best}, {args.connections} connections): {gateway_seconds:6.2f} s")
            print(f"    files assembled after complete: {assembled.get('assembled_now')}")
            print(f"    instances sent after complete:  {sent_after_complete}")
            for name, value in results["gateway"]["split_seconds"].items():
                print(f"    {name:18s} {value}")
            for process in processes:
                process.terminate()
                process.wait(30)
            processes = []
            await asyncio.to_thread(forget_study, orthanc, study_uid, len(paths))

            again, _ = await direct(orthanc, paths, study_uid, best, args.link_mib_per_s)
            results["direct_again"] = {best: round(again, 2)}
            print(f"direct {best:>6} again: {again:6.2f} s")
            best_direct = min(results["direct"][best], again)
            results["ratio_gateway_to_best_direct"] = round(gateway_seconds / best_direct, 2)
            print(f"gateway / best direct = {results['ratio_gateway_to_best_direct']}")
            results["cpu_seconds"]["gateway"] = gateway_cpu
            results["cpu_seconds"]["gateway_until_uploaded"] = cpu_at_uploaded
            by_phase = cpu_by_phase(samples, outcome)
            results["cpu_seconds"]["gateway_by_phase"] = by_phase
            print(f"    CPU seconds until the last chunk: {cpu_at_uploaded}")
            print(f"    gateway CPU seconds by phase:     {by_phase}")
            print(f"    CPU seconds until delivered:      {gateway_cpu}")
            results["cpu_bound"] = cpu_bound(
                gateway_cpu, results["cpu_seconds"]["direct"][best], best_direct, len(paths)
            )
            for name, value in results["cpu_bound"].items():
                print(f"    {name:40s} {value}")
        finally:
            for process in processes:
                process.kill()
            await asyncio.to_thread(orthanc.stop)
        results["machine"]["load_average_at_end"] = list(os.getloadavg())
        results["client_peak_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
        return results


async def sample_cpu(meter: CpuMeter, into: list[tuple[float, float]]) -> None:
    """(time, the gateway processes' CPU seconds) every 20 ms, from /proc only."""
    while True:
        reading = meter.read()
        into.append((time.time(), sum(v for k, v in reading.items() if k.startswith("gateway_"))))
        await asyncio.sleep(0.02)


def cpu_by_phase(samples: list[tuple[float, float]], outcome: dict[str, Any]) -> dict[str, float]:
    """The gateway processes' CPU seconds in each phase, cut at the gateway's own timeline: the
    upload (first chunk to last chunk answered), then each state until the next one."""
    marks = [("upload", outcome["first_chunk_at"]), ("complete", outcome["uploaded_at"])]
    marks += sorted(
        ((state, at) for state, at in outcome["timeline"].items() if at > outcome["uploaded_at"]),
        key=lambda mark: mark[1],
    )

    def cpu_at(moment: float) -> float:
        before = [cpu for at, cpu in samples if at <= moment]
        return before[-1] if before else 0.0

    return {
        name: round(cpu_at(end) - cpu_at(start), 2)
        for (name, start), (_, end) in itertools.pairwise(marks)
    }


def cpu_bound(
    gateway: dict[str, float], direct: dict[str, float], best_direct: float, instances: int
) -> dict[str, float]:
    """What the CPU alone allows: the gateway run cannot take less than its CPU / the cores."""
    cores = os.cpu_count() or 1
    gateway_total = sum(gateway.values())
    gateway_own = sum(v for k, v in gateway.items() if k.startswith("gateway_"))
    return {
        "cores": cores,
        "direct_cpu_seconds_all_processes": round(sum(direct.values()), 2),
        "gateway_run_cpu_seconds_all_processes": round(gateway_total, 2),
        "gateway_processes_cpu_ms_per_instance": round(1000 * gateway_own / instances, 2),
        # Even with every process overlapped perfectly on every core.
        "shortest_possible_gateway_seconds": round(gateway_total / cores, 2),
        "shortest_possible_ratio": round(gateway_total / cores / best_direct, 2),
        # The gateway processes' CPU that would fit the 1.25x target, all else unchanged.
        "gateway_cpu_seconds_allowed_at_1_25x": round(
            max(0.0, 1.25 * best_direct * cores - (gateway_total - gateway_own)), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=1000, help="512 KiB instances")
    parser.add_argument(
        "--batchings",
        nargs="+",
        default=list(DEFAULT_BATCHINGS),
        help="direct STOW-RS batchings to try, as INSTANCESxPARALLEL",
    )
    parser.add_argument("--connections", type=int, default=8, help="chunk PUTs in flight")
    parser.add_argument("--database-url", default=None, help="PostgreSQL (adds a worker process)")
    parser.add_argument(
        "--link-mib-per-s",
        type=float,
        default=None,
        help="pace both the direct and the gateway's client to this rate (a slower link)",
    )
    parser.add_argument(
        "--forward-while-receiving",
        action="store_true",
        help="RELAYPACS_FORWARD_WHILE_RECEIVING=true: instances go to the PACS as they arrive",
    )
    parser.add_argument(
        "--link-mbit",
        type=float,
        default=None,
        help="Orthanc and the gateway behind a veth link shaped to this rate (root)",
    )
    parser.add_argument(
        "--loss",
        type=int,
        default=0,
        help="on that link, drop this percentage of the packets each way (nftables)",
    )
    args = parser.parse_args()
    if args.link_mbit is not None or args.loss:
        if why := can_make_namespaces():
            parser.error(f"--link-mbit/--loss: this machine cannot: {why}")
        if args.database_url and "host=/" not in args.database_url:
            parser.error(
                "--link-mbit/--loss: the gateway runs in a network namespace, which has its own "
                "loopback; reach PostgreSQL by its Unix socket (...?host=/var/run/postgresql)"
            )
        if args.link_mib_per_s:
            parser.error("--link-mbit and --link-mib-per-s are two ways to slow the link: pick one")
    results = asyncio.run(run(args))
    out = ROOT / "bench" / "results" / f"forwarding-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
