"""Uploads over a real faulty link (network namespace, tbf, nft drops, link flaps, SIGKILL).

The short case runs in `make test`; `make resilience` sets RELAYPACS_RESILIENCE=1 to run every
scenario of issue 5 and writes the markdown table to RELAYPACS_RESILIENCE_REPORT
(default: var/resilience-report.md, which git ignores).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.resilience.network import can_make_namespaces
from tests.resilience.scenarios import Scenario, ScenarioResult, run_scenario, table

CANNOT = can_make_namespaces()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CANNOT is not None, reason=CANNOT or ""),
]

SHORT = Scenario("2 MB, 30% loss + 1 server kill", rate_kbit=None, loss_in=30,
                 kills_per_upload=1, study_mb=(2.0,), instance_mb=0.5)  # fmt: skip


def _sizes() -> tuple[float, ...]:
    raw = os.environ.get("RELAYPACS_RESILIENCE_STUDY_MB", "5,10,20")
    return tuple(float(x) for x in raw.split(","))


SIZES = _sizes()
SCENARIOS = [
    Scenario("3G (1 Mbit/s)", study_mb=SIZES),
    Scenario("3G + 20% loss both ways", loss_in=20, loss_out=20, study_mb=SIZES),
    Scenario("50% loss (data direction)", loss_in=50, study_mb=SIZES),
    Scenario("3G, link down 5 s every 20 s", flap=(5.0, 20.0), study_mb=SIZES),
    Scenario("3G, gateway SIGKILLed 3x per upload", kills_per_upload=3, study_mb=SIZES),
    Scenario("3G + 500 ms RTT", one_way_delay=0.25, study_mb=SIZES),
    Scenario("3G, PACS down for the first minute", pacs_down_s=60.0, study_mb=SIZES),
]


def test_a_study_arrives_intact_through_30_percent_loss_and_a_gateway_kill(
    tmp_path: Path,
) -> None:
    result = run_scenario(SHORT, tmp_path)

    assert result.problems == []
    assert (result.completed, result.attempted) == (1, 1)
    assert result.interruptions == 1
    # A kill loses what was in flight: at most one partial chunk per parallel request.
    assert result.resent <= SHORT.parallel * result.chunk_size


@pytest.fixture(scope="module")
def report() -> Iterator[list[ScenarioResult]]:
    results: list[ScenarioResult] = []
    yield results
    if results:
        path = Path(os.environ.get("RELAYPACS_RESILIENCE_REPORT", "var/resilience-report.md"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table(results) + "\n", encoding="utf-8")


@pytest.mark.skipif(
    not os.environ.get("RELAYPACS_RESILIENCE"), reason="long: run with `make resilience`"
)
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_upload_completes_intact(
    scenario: Scenario, tmp_path: Path, report: list[ScenarioResult]
) -> None:
    result = run_scenario(scenario, tmp_path)
    report.append(result)
    print(table([result]))

    assert result.problems == []
    assert result.completed == result.attempted
