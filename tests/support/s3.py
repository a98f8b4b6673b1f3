"""A real S3 API server for tests: moto's server mode in its own process on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx

#: moto accepts any credentials; boto3 only needs some to sign requests.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """Start ``moto_server`` and yield its endpoint URL; stop it afterwards."""
    port = free_port()
    executable = Path(sys.executable).with_name("moto_server")
    log = (log_dir / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **S3_ENV},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def s3_client(endpoint: str) -> object:
    return boto3.session.Session(
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=endpoint)


def create_bucket(endpoint: str) -> str:
    name = f"relaypacs-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name
