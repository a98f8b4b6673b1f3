"""Alert rules check and pass their promtool unit tests; every alert is tested firing; every
metric that rules and dashboards query is one the gateway really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tools.check_deploy import (
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    grafana_problems,
    iter_panels,
    prometheus_problems,
    promtool_binary,
)

# Exported by Prometheus itself or by node-exporter, not by RelayPACS.
EXTERNAL_METRICS = {"up"}
EXTERNAL_PREFIXES = ("node_",)
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def _rules(name: str) -> list[dict[str, str]]:
    document = yaml.safe_load((PROMETHEUS_DIR / name).read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (good enough for our own expressions)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = expr.replace("$__rate_interval", "")
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()[:1]
        preceding = expr[: match.start()].rstrip()[-1:]
        word = match.group()
        if following == "(" or word.lower() in PROMQL_WORDS or preceding.isdigit():
            continue
        names.add(word)
    return names


@pytest.mark.skipif(promtool_binary() is None, reason="promtool: make system-deps")
def test_rules_are_valid_and_their_unit_tests_pass() -> None:
    assert prometheus_problems() == []


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def test_every_alert_has_a_test_where_it_fires_and_then_resolves() -> None:
    """Firing is half of it: a test must also see the alert clear once the cause is gone."""
    tests = yaml.safe_load((PROMETHEUS_DIR / "tests" / "alerts_test.yml").read_text())
    fired, resolved = set(), set()
    for case in tests["tests"]:
        checks = sorted(case.get("alert_rule_test", []), key=lambda c: _seconds(c["eval_time"]))
        firing_since: dict[str, float] = {}
        for check in checks:
            name, at = check["alertname"], _seconds(check["eval_time"])
            if check.get("exp_alerts"):
                fired.add(name)
                firing_since.setdefault(name, at)
            elif name in firing_since and at > firing_since[name]:
                resolved.add(name)
    alerts = {rule["alert"] for rule in _rules("alerts.yml")}
    assert alerts - fired == set(), "never seen firing"
    assert alerts - resolved == set(), "never seen resolving after firing"


def test_every_alert_has_a_runbook_entry() -> None:
    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text().lower()
    for rule in _rules("alerts.yml"):
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f"## {anchor}" in operations.replace("### ", "## "), anchor


def test_grafana_dashboards_are_valid() -> None:
    assert grafana_problems() == []


async def test_rules_and_dashboards_only_query_metrics_the_gateway_exports(
    client: httpx.AsyncClient,
) -> None:
    exposition = (await client.get("/metrics")).text
    exported: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
        if family.type == "counter":
            exported.add(family.name + "_total")
        if family.type == "histogram":
            exported.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    recorded = {rule["record"] for rule in _rules("rules.yml")}
    queries = [rule["expr"] for rule in _rules("rules.yml") + _rules("alerts.yml")]
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        for panel in iter_panels(json.loads(path.read_text())):
            queries.extend(target["expr"] for target in panel.get("targets") or [])
    unknown = {
        name
        for query in queries
        for name in metric_names(query)
        if name not in exported
        and name not in recorded
        and name not in EXTERNAL_METRICS
        and not name.startswith(EXTERNAL_PREFIXES)
    }
    assert unknown == set()


# Exported for people and tools, not charted: the version (a label) and a timestamp that the
# reachability gauge beside it already summarises.
NOT_CHARTED = {"relaypacs_build_info", "relaypacs_pacs_last_check_timestamp_seconds"}


async def test_every_relaypacs_metric_is_on_a_dashboard(client: httpx.AsyncClient) -> None:
    """A metric nobody can see helps no one: each one the gateway exports is charted, directly
    or through a recording rule."""
    exposition = (await client.get("/metrics")).text
    families = {
        family.name
        for family in text_string_to_metric_families(exposition)
        # prometheus_client's `_created` timestamps come back as families of their own.
        if family.name.startswith("relaypacs_") and not family.name.endswith("_created")
    }
    recording = {rule["record"]: rule["expr"] for rule in _rules("rules.yml")}
    charted: set[str] = set()
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        for panel in iter_panels(json.loads(path.read_text())):
            for target in panel.get("targets") or []:
                for name in metric_names(target["expr"]):
                    charted.add(name)
                    if name in recording:
                        charted |= metric_names(recording[name])
    # Recording rules may build on each other.
    for _ in range(len(recording)):
        for name in list(charted & recording.keys()):
            charted |= metric_names(recording[name])
    suffixes = ("_total", "_bucket", "_count", "_sum")
    charted_families = {
        next((name[: -len(s)] for s in suffixes if name.endswith(s)), name) for name in charted
    } | charted
    assert families - charted_families - NOT_CHARTED == set()
