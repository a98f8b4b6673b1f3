"""deploy/nginx passes `nginx -t`, and a real nginx with it does not break uploads or SSE.

The real-process tests run the committed configuration (see tools.check_deploy.render_nginx:
only the upstream address, listen ports and file locations change) in front of a small
upstream on loopback that records what nginx forwards, and when.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from tools.check_deploy import NGINX_DIR, nginx_binary, nginx_problems, render_nginx

MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx: make system-deps")


def test_nginx_configuration_passes_nginx_t() -> None:
    assert nginx_problems() == []


def test_a_broken_nginx_configuration_is_refused(tmp_path: Path) -> None:
    main = render_nginx(tmp_path)
    site = main.parent / "conf.d" / "relaypacs.conf"
    site.write_text(site.read_text().replace("proxy_request_buffering off;", "proxy_buffer off;"))
    result = subprocess.run(
        [str(nginx_binary()), "-t", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "unknown directive" in result.stderr


def test_upload_settings_are_in_the_site() -> None:
    site = (NGINX_DIR / "conf.d" / "relaypacs.conf").read_text()
    for directive in (
        "proxy_request_buffering off;",
        "client_max_body_size 16m;",
        "client_body_timeout 300s;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
    ):
        assert directive in site


def test_nginx_lets_an_idle_gateway_connection_go_before_the_gateway_closes_it() -> None:
    # Otherwise a request can go out on a connection the gateway is closing: nginx answers 502
    # and resends neither a POST nor a streamed chunk.
    import inspect

    import uvicorn

    site = (NGINX_DIR / "conf.d" / "relaypacs.conf").read_text()
    upstream = site.split("upstream relaypacs_gateway {", 1)[1].split("}", 1)[0]
    nginx_idle = re.search(r"^\s*keepalive_timeout (\d+)s;", upstream, re.MULTILINE)
    assert nginx_idle is not None, "no keepalive_timeout in the upstream block"
    cli = (Path(__file__).parents[2] / "src" / "relaypacs" / "cli.py").read_text()
    assert "timeout_keep_alive" not in cli, "serve sets its own idle timeout: compare with it"
    gateway_idle = inspect.signature(uvicorn.run).parameters["timeout_keep_alive"].default
    assert int(nginx_idle[1]) < gateway_idle


# ----------------------------------------------------------------------------- real nginx


@dataclass
class Upstream:
    """Records each request nginx forwards; streams SSE events when told to."""

    port: int = 0
    requests: list[dict[str, object]] = field(default_factory=list)
    request_started: threading.Event = field(default_factory=threading.Event)
    release_second_event: threading.Event = field(default_factory=threading.Event)


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_PUT(self) -> None:
            upstream.request_started.set()
            length = int(self.headers["Content-Length"])
            digest = hashlib.md5()
            remaining = length
            while remaining:
                block = self.rfile.read(min(remaining, 256 * 1024))
                if not block:
                    break
                digest.update(block)
                remaining -= len(block)
            upstream.requests.append(
                {
                    "path": self.path,
                    "version": self.request_version,
                    "connection": self.headers.get("Connection"),
                    "request_id": self.headers.get("X-Request-ID"),
                    "forwarded_proto": self.headers.get("X-Forwarded-Proto"),
                    "received": length - remaining,
                    "md5": digest.hexdigest(),
                }
            )
            body = digest.hexdigest().encode()
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            upstream.requests.append(
                {"path": self.path, "forwarded_for": self.headers.get_all("X-Forwarded-For")}
            )
            if self.path != "/api/v1/notifications/stream":
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"id: 1\nevent: upload_complete\ndata: {}\n\n")
            upstream.release_second_event.wait(10)
            self._chunk(b"id: 2\nevent: report_ready\ndata: {}\n\n")
            self._chunk(b"")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Proxy:
    https_port: int
    upstream: Upstream


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    upstream = Upstream()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream))
    upstream.port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    https_port, http_port = _free_port(), _free_port()
    main = render_nginx(
        tmp_path,
        upstream=f"127.0.0.1:{upstream.port}",
        https_listen=f"127.0.0.1:{https_port}",
        http_listen=f"127.0.0.1:{http_port}",
    )
    text = main.read_text().replace("worker_processes auto;", "worker_processes 1;")
    main.write_text(text.replace("daemon", "#daemon"))
    process = subprocess.Popen(
        [str(nginx_binary()), "-p", str(tmp_path), "-c", str(main), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield Proxy(https_port=https_port, upstream=upstream)
    finally:
        process.kill()
        process.wait()
        server.shutdown()
        server.server_close()


def _tls_socket(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    return context.wrap_socket(raw, server_hostname="localhost")


def _read_response(sock: ssl.SSLSocket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        block = sock.recv(65536)
        if not block:
            break
        data += block
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        block = sock.recv(65536)
        if not block:
            break
        body += block
    return status, body


@pytest.mark.slow
def test_a_chunk_above_10_mib_streams_through_before_its_body_ends(proxy: Proxy) -> None:
    body = os.urandom(10 * MIB + 512 * 1024)
    path = "/api/v1/uploads/u1/files/f1/chunks/0"
    with _tls_socket(proxy.https_port) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-ID: client-req-7\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        )
        sock.sendall(body[:MIB])
        # With request buffering on, nginx would wait for the whole body before calling us.
        assert proxy.upstream.request_started.wait(10), "nginx held the body back"
        sock.sendall(body[MIB:])
        status, answer = _read_response(sock)
    assert status == 201
    assert answer.decode() == hashlib.md5(body).hexdigest()
    forwarded = proxy.upstream.requests[-1]
    assert forwarded["received"] == len(body)
    assert forwarded["version"] == "HTTP/1.1"
    assert forwarded["connection"] in (None, "")
    assert forwarded["request_id"] == "client-req-7"
    assert forwarded["forwarded_proto"] == "https"


@pytest.mark.slow
def test_a_body_above_the_limit_is_refused_by_nginx(proxy: Proxy) -> None:
    with _tls_socket(proxy.https_port) as sock:
        sock.sendall(
            b"PUT /api/v1/uploads/u1/files/f1/chunks/0 HTTP/1.1\r\nHost: localhost\r\n"
            + f"Content-Length: {17 * MIB}\r\n\r\n".encode()
        )
        status, _ = _read_response(sock)
    assert status == 413
    assert proxy.upstream.requests == []


@pytest.mark.slow
def test_sse_events_reach_the_client_one_by_one(proxy: Proxy) -> None:
    url = f"https://127.0.0.1:{proxy.https_port}/api/v1/notifications/stream"
    with (
        httpx.Client(verify=False, timeout=10) as client,  # noqa: S501 (throwaway self-signed cert)
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        first = [next(lines) for _ in range(3)]
        # The second event is only produced after the first arrived: no buffering in between.
        assert first[0] == "id: 1"
        proxy.upstream.release_second_event.set()
        rest = [line for line in lines if line]
    assert rest[:2] == ["id: 2", "event: report_ready"]


@pytest.mark.slow
def test_metrics_are_not_served_to_the_internet(proxy: Proxy) -> None:
    with httpx.Client(verify=False, timeout=10) as client:  # noqa: S501 (self-signed test cert)
        response = client.get(f"https://127.0.0.1:{proxy.https_port}/metrics")
        assert response.status_code == 404
        assert client.get(f"https://127.0.0.1:{proxy.https_port}/healthz").status_code == 200
    assert [r["path"] for r in proxy.upstream.requests] == ["/healthz"]


@pytest.mark.slow
def test_a_client_cannot_choose_the_address_the_gateway_sees(proxy: Proxy) -> None:
    """The gateway limits sign-ins per client address and audits it: a client-written
    X-Forwarded-For must not get through (uvicorn would take its leftmost entry)."""
    with httpx.Client(verify=False, timeout=10) as client:  # noqa: S501 (self-signed test cert)
        response = client.get(
            f"https://127.0.0.1:{proxy.https_port}/healthz",
            headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
        )
    assert response.status_code == 200
    assert proxy.upstream.requests[-1]["forwarded_for"] == ["127.0.0.1"]
