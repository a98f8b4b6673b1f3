"""Chunk ingest: RelayPACS vs @tus/server + @tus/file-store, same client, same machine, same run.

    .venv/bin/python -m bench.uploads.bench [--quick]      (or: make bench-uploads)

Both servers run here as real processes on loopback. One small asyncio HTTP/1.1 client (raw
sockets, keep-alive, so the client costs little CPU and the same for both) sends 1 MiB chunks:

* closed loop at 1, 10 and 100 requests in flight: throughput, P50/P95/P99 latency and the
  server's CPU time per chunk, in ``--rounds`` rounds (default 3) whose order of servers rotates
  (whoever runs later runs on a page cache the others filled); the round with the median
  throughput is reported, and the ratio is the median of the rounds' ratios;
* open loop at offered loads of 14 MiB/s (the PRD's 50 GB/h) and 140 MiB/s: P95 latency;
* one 2 GiB upload at 10 in flight: the gateway's peak RSS (VmHWM) against a baseline.

Each in-flight slot owns its own upload and sends its chunks in order (tus requires order within
one upload; RelayPACS would also take them in parallel). RelayPACS verifies every chunk's MD5 and
fsyncs file and directory before answering; tus does neither. Results go to
bench/results/uploads-<time>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
CHUNK = MIB
PASSWORD = "Vq8#relay-Pacs!"  # noqa: S105 (a throwaway benchmark account)


# --- a minimal HTTP/1.1 client --------------------------------------------------------------


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if body:
            self.writer.write(body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        response_headers = {}
        for line in header_lines:
            if ":" in line:
                key, value = line.split(":", 1)
                response_headers[key.strip().lower()] = value.strip()
        if response_headers.get("transfer-encoding") == "chunked":
            payload = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                payload += await self.reader.readexactly(size + 2)
            content = payload
        else:
            content = await self.reader.readexactly(int(response_headers.get("content-length", 0)))
        return status, response_headers, content

    def close(self) -> None:
        self.writer.close()


# --- the two servers -------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(
    port: int, process: subprocess.Popen[bytes], timeout: float = 60, host: str = "127.0.0.1"
) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited at start")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc, as `ps` reads it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def current_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    begin: Callable[[Connection, int], Awaitable[Any]]
    send: Callable[[Connection, Any, int, bytes, str], Awaitable[int]]
    #: Whether chunks of one upload may be sent in parallel, in any order.
    parallel: bool


def start_relaypacs(work: Path, database_url: str | None, workers: int = 1) -> Target:
    port = free_port()
    env = {
        **os.environ,
        "RELAYPACS_DATA_DIR": str(work / "relaypacs"),
        "RELAYPACS_LOG_LEVEL": "WARNING",
        "RELAYPACS_BCRYPT_ROUNDS": "4",
        # The per-user limits (20 starts, 2000 chunks a minute) would throttle a benchmark.
        "RELAYPACS_UPLOAD_START_RATE_LIMIT": "100000/minute",
        "RELAYPACS_CHUNK_RATE_LIMIT": "10000000/minute",
        "RELAYPACS_MAX_UPLOAD_BYTES": str(4 * 1024 * MIB),
    }
    if database_url:
        env["RELAYPACS_DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relaypacs",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=(work / "relaypacs.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_listening(port, process)
    token: dict[str, str] = {}

    async def sign_in() -> dict[str, str]:
        if not token:
            connection = await Connection.open(port)
            name = f"bench{random.randrange(10**9)}"
            body = json.dumps(
                {"username": name, "email": f"{name}@example.org", "password": PASSWORD}
            ).encode()
            json_headers = {"Content-Type": "application/json"}
            status, _, text = await connection.request(
                "POST", "/api/v1/auth/register", json_headers, body
            )
            assert status == 201, text
            body = json.dumps({"username": name, "password": PASSWORD}).encode()
            status, _, text = await connection.request(
                "POST", "/api/v1/auth/login", json_headers, body
            )
            assert status == 200, text
            token["Authorization"] = "Bearer " + json.loads(text)["access_token"]
            connection.close()
        return token

    async def begin(connection: Connection, chunks: int) -> Any:
        auth = await sign_in()
        body = json.dumps(
            {
                "study": {
                    "patient_name": f"BENCH^{random.randrange(10**12)}",
                    "study_date": "2024-05-17",
                    "modality": "CT",
                    "service_level": "routine",
                },
                "files": [{"name": "bench.bin", "size": chunks * CHUNK}],
                "chunk_size": CHUNK,
                "force_upload": True,
            }
        ).encode()
        status, _, text = await connection.request(
            "POST", "/api/v1/uploads", {**auth, "Content-Type": "application/json"}, body
        )
        assert status == 201, text
        created = json.loads(text)
        return created["upload_id"], created["files"][0]["file_id"], created["upload_token"]

    async def send(connection: Connection, upload: Any, index: int, data: bytes, md5: str) -> int:
        upload_id, file_id, upload_token = upload
        status, _, text = await connection.request(
            "PUT",
            f"/api/v1/uploads/{upload_id}/files/{file_id}/chunks/{index}",
            {"X-Upload-Token": upload_token, "Content-MD5": md5},
            data,
        )
        assert status == 201, (status, text)
        return status

    return Target("relaypacs", port, process, begin, send, parallel=True)


def start_tus(work: Path) -> Target:
    port = free_port()
    tus_dir = ROOT / "bench" / "tus"
    process = subprocess.Popen(
        ["node", str(tus_dir / "server.mjs")],
        env={**os.environ, "PORT": str(port), "TUS_DIR": str(work / "tus")},
        stdout=(work / "tus.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tus_dir,
    )
    wait_listening(port, process)
    base = {"Tus-Resumable": "1.0.0"}

    async def begin(connection: Connection, chunks: int) -> Any:
        status, headers, _ = await connection.request(
            "POST", "/files", {**base, "Upload-Length": str(chunks * CHUNK)}
        )
        assert status == 201, status
        return "/files/" + headers["location"].rsplit("/", 1)[1]

    async def send(connection: Connection, upload: Any, index: int, data: bytes, md5: str) -> int:
        status, _, text = await connection.request(
            "PATCH",
            upload,
            {
                **base,
                "Upload-Offset": str(index * CHUNK),
                "Content-Type": "application/offset+octet-stream",
            },
            data,
        )
        assert status == 204, (status, text)
        return status

    return Target("tus", port, process, begin, send, parallel=False)


def start_floor(work: Path) -> Target:
    """The floor (``bench.uploads.floor``): promise 1's durable steps on a bare ASGI app."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.uploads.floor:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env={**os.environ, "FLOOR_DIR": str(work / "floor")},
        stdout=(work / "floor.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    wait_listening(port, process)

    async def begin(connection: Connection, chunks: int) -> Any:
        return uuid.uuid4().hex

    async def send(connection: Connection, upload: Any, index: int, data: bytes, md5: str) -> int:
        status, _, text = await connection.request(
            "PUT", f"/{upload}/{index}", {"Content-MD5": md5}, data
        )
        assert status == 201, (status, text)
        return status

    return Target("floor", port, process, begin, send, parallel=True)


# --- scenarios -------------------------------------------------------------------------------


BODIES = [random.Random(n).randbytes(CHUNK) for n in range(8)]
DIGESTS = [base64.b64encode(hashlib.md5(b).digest()).decode() for b in BODIES]


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        return {
            "chunks": len(ordered),
            "mib_per_s": round(len(ordered) * CHUNK / MIB / self.seconds, 1),
            "p50_ms": round(pct(0.50), 1),
            "p95_ms": round(pct(0.95), 1),
            "p99_ms": round(pct(0.99), 1),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
        }


async def closed_loop(target: Target, in_flight: int, chunks_per_slot: int) -> Result:
    """``in_flight`` slots, each its own upload, each sending its chunks back to back."""
    setup = await Connection.open(target.port)
    uploads = [await target.begin(setup, chunks_per_slot) for _ in range(in_flight)]
    setup.close()
    # Opened after the uploads were started: 100 starts can outlast a server's keep-alive
    # timeout (uvicorn: 5 s), which would close a connection that waited for the others.
    connections = [await Connection.open(target.port) for _ in range(in_flight)]
    result = Result()

    async def slot(n: int) -> None:
        for index in range(chunks_per_slot):
            body = (n + index) % len(BODIES)
            started = time.perf_counter()
            await target.send(connections[n], uploads[n], index, BODIES[body], DIGESTS[body])
            result.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(slot(n) for n in range(in_flight)))
    result.seconds = time.perf_counter() - started
    for c in connections:
        c.close()
    return result


async def open_loop(target: Target, mib_per_s: float, seconds: float) -> Result:
    """Offer a fixed rate: one 1 MiB chunk every 1/rate s, whatever the answers' latency.

    A request that finds no idle connection opens a new one, as an independent client would.
    RelayPACS takes any chunk of an upload on any connection, so all requests share one upload;
    tus needs each upload's offsets in order, so each connection gets its own tus upload.
    """
    total = int(mib_per_s * seconds)
    result = Result()
    first = await Connection.open(target.port)
    shared = await target.begin(first, total)
    idle: list[list[Any]] = [[first, shared, 0]]
    next_index = iter(range(total))

    async def one(n: int) -> None:
        if idle:
            slot = idle.pop()
        else:
            connection = await Connection.open(target.port)
            upload = shared if target.parallel else await target.begin(connection, total)
            slot = [connection, upload, 0]
        if target.parallel:
            index = next(next_index)
        else:
            index = slot[2]
            slot[2] += 1
        started = time.perf_counter()
        try:
            await target.send(slot[0], slot[1], index, BODIES[n % 8], DIGESTS[n % 8])
        except (ConnectionError, asyncio.IncompleteReadError):
            # The server closed a keep-alive connection that sat idle (node: after 5 s).
            slot[0].close()
            slot[0] = await Connection.open(target.port)
            started = time.perf_counter()
            await target.send(slot[0], slot[1], index, BODIES[n % 8], DIGESTS[n % 8])
        result.latencies.append(time.perf_counter() - started)
        idle.append(slot)

    tasks = []
    begin = time.perf_counter()
    for n in range(total):
        delay = begin + n / mib_per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - begin
    for slot in idle:
        slot[0].close()
    return result


async def big_upload_rss(target: Target, total_chunks: int, in_flight: int) -> dict[str, float]:
    baseline = current_rss_mib(target.process.pid)
    connections = [await Connection.open(target.port) for _ in range(in_flight)]
    upload = await target.begin(connections[0], total_chunks)
    started = time.perf_counter()
    samples: list[float] = []
    if not target.parallel:
        # tus needs offsets in order: one connection, back to back.
        for index in range(total_chunks):
            await target.send(connections[0], upload, index, BODIES[index % 8], DIGESTS[index % 8])
            if index % 64 == 0:
                samples.append(current_rss_mib(target.process.pid))
    else:
        queue = list(range(total_chunks))

        async def slot(n: int) -> None:
            while queue:
                index = queue.pop(0)
                body = index % 8
                await target.send(connections[n], upload, index, BODIES[body], DIGESTS[body])
                if index % 64 == 0:
                    samples.append(current_rss_mib(target.process.pid))

        await asyncio.gather(*(slot(n) for n in range(in_flight)))
    seconds = time.perf_counter() - started
    for c in connections:
        c.close()
    return {
        "gib": total_chunks * CHUNK / 1024 / MIB,
        "seconds": round(seconds, 1),
        "rss_before_mib": round(baseline, 1),
        "rss_at_quarter_mib": round(samples[len(samples) // 4], 1) if samples else 0,
        "rss_at_end_mib": round(samples[-1], 1) if samples else 0,
        "peak_rss_mib": round(peak_rss_mib(target.process.pid), 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="relaypacs-bench-", dir=args.work_dir))
    targets = [start_relaypacs(work, args.database_url, args.workers), start_tus(work)]
    if not args.no_floor:
        targets.append(start_floor(work))
    scale = 0.2 if args.quick else 1.0
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            # Other work on the machine skews every number: record how busy it was.
            "load_average_at_start": os.getloadavg(),
        },
        "relaypacs_workers": args.workers,
        "database": args.database_url or "sqlite (embedded default)",
        "chunk_bytes": CHUNK,
        "rounds": args.rounds,
        "closed_loop": {},
        "closed_loop_ratios": {},
        "open_loop": {},
        "big_upload": {},
    }
    try:
        for in_flight, per_slot in ((1, 300), (10, 60), (100, 8)):
            chunks_per_slot = max(2, int(per_slot * scale))
            rounds: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
            for n in range(args.rounds):
                for target in targets[n % len(targets) :] + targets[: n % len(targets)]:
                    settle()
                    cpu_before = cpu_seconds(target.process.pid)
                    summary = (await closed_loop(target, in_flight, chunks_per_slot)).summary()
                    used = cpu_seconds(target.process.pid) - cpu_before
                    summary["cpu_ms_per_chunk"] = round(used * 1000 / summary["chunks"], 2)
                    rounds[target.name].append(summary)
                    print(target.name, in_flight, f"round {n + 1}", summary, flush=True)
            report["closed_loop"][str(in_flight)] = {
                name: median_round(results) for name, results in rounds.items()
            }
            report["closed_loop_ratios"][str(in_flight)] = round_ratios(rounds)
        for rate in (14, 140):
            for target in targets:
                settle()
                result = await open_loop(target, rate, 15 * scale)
                report["open_loop"].setdefault(str(rate), {})[target.name] = result.summary()
                print(target.name, f"{rate} MiB/s", result.summary(), flush=True)
        if not args.skip_big:
            # Fresh processes: the peak must belong to the big upload, not to the overload above.
            # (The floor keeps whole chunks in memory: its peak would say nothing.)
            for target in targets:
                _stop(target)
            # A fresh data directory too: a restarted gateway's start-up jobs would otherwise
            # work through the thousands of uploads the runs above left in its database.
            fresh = work / "big"
            fresh.mkdir()
            targets[:] = [
                start_relaypacs(fresh, args.database_url, args.workers),
                start_tus(fresh),
            ]
            chunks = int(args.big_gib * 1024)
            for target in targets:
                report["big_upload"][target.name] = await big_upload_rss(target, chunks, 10)
                print(target.name, "big", report["big_upload"][target.name], flush=True)
        report["machine"]["load_average_at_end"] = os.getloadavg()
    except BaseException:
        for log in ("relaypacs.log", "tus.log", "floor.log"):
            lines = (work / log).read_text(errors="replace").splitlines()[-20:]
            print(f"--- {log} (last lines)", *lines, sep="\n", file=sys.stderr)
        raise
    finally:
        for target in targets:
            _stop(target)
        shutil.rmtree(work, ignore_errors=True)
    return report


def settle() -> None:
    """Write back what earlier runs left dirty in the page cache, before the next run starts.

    Each run writes hundreds of MiB; the kernel writes them back later, in the middle of
    whichever run comes next (tus, which never fsyncs, leaves the most). Measured without this,
    the same server's throughput swung by a third from one run to the next.
    """
    os.sync()


def median_round(results: list[dict[str, float]]) -> dict[str, Any]:
    """The round with the median throughput, with every round's throughput beside it."""
    ordered = sorted(results, key=lambda r: r["mib_per_s"])
    return {**ordered[len(ordered) // 2], "rounds_mib_per_s": [r["mib_per_s"] for r in results]}


def round_ratios(rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per round (servers measured minutes apart at most), each server's throughput over tus'."""
    ratios: dict[str, Any] = {}
    for name, results in rounds.items():
        if name == "tus":
            continue
        each = [
            round(ours["mib_per_s"] / theirs["mib_per_s"], 2)
            for ours, theirs in zip(results, rounds["tus"], strict=True)
        ]
        ratios[f"{name}/tus"] = {"rounds": each, "median": statistics.median(each)}
    return ratios


def _stop(target: Target) -> None:
    if target.process.poll() is not None:
        return
    target.process.send_signal(signal.SIGTERM)
    try:
        target.process.wait(20)
    except subprocess.TimeoutExpired:
        target.process.kill()
        target.process.wait()


def _ratio_to_tus(report: dict[str, Any], in_flight: str, name: str) -> str:
    # The median of the rounds' own ratios (older reports had one round: the plain ratio).
    rounds = report.get("closed_loop_ratios", {}).get(in_flight, {})
    if f"{name}/tus" in rounds:
        return f"{rounds[f'{name}/tus']['median']:.2f}x"
    pair = report["closed_loop"][in_flight]
    return f"{pair[name]['mib_per_s'] / pair['tus']['mib_per_s']:.2f}x"


def table(report: dict[str, Any]) -> str:
    floor = any("floor" in pair for pair in report["closed_loop"].values())
    head = "| scenario | RelayPACS | @tus/server | ratio |"
    rule = "|---|---|---|---|"
    if floor:
        head += " floor | floor / tus | RelayPACS / floor |"
        rule += "---|---|---|"
    lines = [head, rule]
    for in_flight, pair in report["closed_loop"].items():
        ours, tus = pair["relaypacs"], pair["tus"]
        line = (
            f"| {in_flight} in flight: MiB/s | {ours['mib_per_s']} | {tus['mib_per_s']} | "
            f"{_ratio_to_tus(report, in_flight, 'relaypacs')} |"
        )
        if "floor" in pair:
            low = pair["floor"]["mib_per_s"]
            line += (
                f" {low} | {_ratio_to_tus(report, in_flight, 'floor')} |"
                f" {ours['mib_per_s'] / low:.2f}x |"
            )
        lines.append(line)
        if "cpu_ms_per_chunk" in ours:
            lines.append(
                f"| {in_flight} in flight: server CPU ms per chunk | {ours['cpu_ms_per_chunk']} | "
                f"{tus['cpu_ms_per_chunk']} | |"
                + (f" {pair['floor']['cpu_ms_per_chunk']} | | |" if floor else "")
            )
        lines.append(
            f"| {in_flight} in flight: P50/P95/P99 ms | {ours['p50_ms']}/{ours['p95_ms']}/"
            f"{ours['p99_ms']} | {tus['p50_ms']}/{tus['p95_ms']}/{tus['p99_ms']} | |"
            + (" | | |" if floor else "")
        )
    for rate, pair in report["open_loop"].items():
        ours, tus = pair["relaypacs"], pair["tus"]
        line = (
            f"| offered {rate} MiB/s: P95 ms (achieved MiB/s) | {ours['p95_ms']} "
            f"({ours['mib_per_s']}) | {tus['p95_ms']} ({tus['mib_per_s']}) | |"
        )
        if "floor" in pair:
            line += f" {pair['floor']['p95_ms']} ({pair['floor']['mib_per_s']}) | | |"
        lines.append(line)
    for name, big in report["big_upload"].items():
        lines.append(
            f"| {big['gib']:.0f} GiB upload, {name}: peak RSS MiB (before / 1/4 / end) | "
            f"{big['peak_rss_mib']} ({big['rss_before_mib']} / {big['rss_at_quarter_mib']} / "
            f"{big['rss_at_end_mib']}) | | {big['seconds']} s |" + (" | | |" if floor else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the requests")
    parser.add_argument("--skip-big", action="store_true", help="skip the 2 GiB upload")
    parser.add_argument("--big-gib", type=float, default=2.0)
    parser.add_argument(
        "--rounds", type=int, default=3, help="closed-loop rounds, the servers' order rotating"
    )
    parser.add_argument("--database-url", default=None, help="default: embedded SQLite")
    parser.add_argument("--work-dir", default=None, help="where the servers store (a disk)")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (PostgreSQL)")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor (bench/uploads/floor.py)"
    )
    args = parser.parse_args()
    report = asyncio.run(run(args))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (results / f"uploads-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
