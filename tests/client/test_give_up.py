"""`--give-up-after` counts time without a request succeeding, not time without bytes moving: a
proxy that takes every chunk's body and answers 503 is given up on (exit 7), not retried forever.

The real CLI and a real gateway, behind a proxy on real sockets that reads each chunk request
whole, passes it on, and answers 503 in place of the gateway's answer.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from relaypacs.client.exit_codes import ExitCode
from tests.client.dicom_files import write_study
from tests.client.lost_answers import Lose, lost_answers_proxy
from tests.resilience.gateway import CliUser, Gateway

pytestmark = pytest.mark.slow

UNAVAILABLE = {"type": "about:blank", "status": 503, "title": "Service Unavailable"}
GIVE_UP_S = 3
# The give-up, plus the longest backoff the last retry may have slept (10 s), plus slack.
BOUND_S = 45


def test_chunks_always_answered_503_end_the_run_with_gave_up(
    gateway: Gateway, cli: CliUser, tmp_path: Path
) -> None:
    write_study(tmp_path / "in", instances=1, pixel_bytes=600_000)
    every_chunk = Lose("PUT", "/api/v1/uploads/", times=10**6, answer=(503, UNAVAILABLE))
    with lost_answers_proxy(("127.0.0.1", gateway.port), [every_chunk]) as proxy:
        server = f"http://127.0.0.1:{proxy.port}"
        started = time.monotonic()
        try:
            result = cli.alias(server).run(
                "upload", str(tmp_path / "in"), "--server", server,
                "--give-up-after", str(GIVE_UP_S), timeout=BOUND_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"still retrying after {BOUND_S} s with --give-up-after {GIVE_UP_S}")
        took = time.monotonic() - started

    assert result.returncode == ExitCode.GAVE_UP, result.stderr
    assert "no progress" in result.stderr
    assert took >= GIVE_UP_S
    chunks = [e for e in proxy.exchanges if e.method == "PUT"]
    # Each body went out whole (the gateway stored it, or had it already) and was answered 503:
    # bytes kept moving, nothing succeeded.
    assert len(chunks) >= 2
    assert all(c.lost and c.status in (200, 201) for c in chunks)
