"""Analytics figures against values computed here from the rows the test inserted."""

from __future__ import annotations

import csv
import io
import statistics
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from relaypacs.analytics.repository import percentile
from relaypacs.analytics.schemas import PERIOD_DAYS, Period
from relaypacs.db.base import utcnow
from relaypacs.uploads.models import UploadState
from relaypacs.users.models import Role, ServiceLevel
from tests.analytics.conftest import Dataset, Row, insert_upload
from tests.support.accounts import SignedIn, assert_problem, new_client, sign_in

API = "/api/v1"
S = UploadState
L = ServiceLevel


@dataclass
class World:
    app: FastAPI
    alice: SignedIn
    bob: SignedIn
    admin: SignedIn
    data: Dataset


def _days_ago(days: int, hour: int = 10) -> datetime:
    now = utcnow()
    return datetime(now.year, now.month, now.day, hour, tzinfo=now.tzinfo) - timedelta(days=days)


@pytest.fixture(scope="module")
async def world(analytics_app: FastAPI) -> World:
    async with new_client(analytics_app) as http:
        alice = await sign_in(http, analytics_app, username=f"-alice{uuid.uuid4().hex[:6]}")
        bob = await sign_in(http, analytics_app)
        admin = await sign_in(http, analytics_app, role=Role.admin)
    data = Dataset()
    a = (alice.id, alice.username)
    b = (bob.id, bob.username)
    spec: list[dict[str, Any]] = [
        # alice: this week
        {"owner": a, "created_at": _days_ago(0), "seconds_to_pacs": 120.0},
        {"owner": a, "created_at": _days_ago(1), "modality": "MR", "seconds_to_pacs": 600.0},
        {
            "owner": a,
            "created_at": _days_ago(2),
            "service_level": L.stat,
            "seconds_to_pacs": 60.0,
            "seconds_to_report": 1800.0,
        },
        {
            "owner": a,
            "created_at": _days_ago(2, hour=12),
            "service_level": L.stat,
            "seconds_to_pacs": 90.0,
        },
        {"owner": a, "created_at": _days_ago(3), "state": S.failed, "total_bytes": 5_000},
        {"owner": a, "created_at": _days_ago(3, hour=14), "state": S.rejected},
        {
            "owner": a,
            "created_at": _days_ago(4),
            "state": S.partially_delivered,
            "seconds_to_pacs": 300.0,
        },
        {"owner": a, "created_at": _days_ago(5), "state": S.cancelled},
        # Never completed within its session: not delivered, so not a success either.
        {"owner": a, "created_at": _days_ago(6, hour=8), "state": S.expired},
        {"owner": a, "created_at": _days_ago(6), "state": S.receiving, "modality": "=1+2"},
        # alice: earlier this month, and long ago
        {"owner": a, "created_at": _days_ago(20), "seconds_to_pacs": 3600.0},
        {
            "owner": a,
            "created_at": _days_ago(25),
            "service_level": L.stat,
            "seconds_to_pacs": 45.0,
            "seconds_to_report": 900.0,
        },
        {"owner": a, "created_at": _days_ago(120), "seconds_to_pacs": 7200.0},
        # bob
        {
            "owner": b,
            "created_at": _days_ago(1, hour=16),
            "modality": "US",
            "seconds_to_pacs": 30.0,
        },
        {
            "owner": b,
            "created_at": _days_ago(2, hour=16),
            "service_level": L.emergency,
            "seconds_to_pacs": 50.0,
        },
        {"owner": b, "created_at": _days_ago(10), "state": S.failed},
    ]
    for values in spec:
        await insert_upload(analytics_app, data, **values)
    return World(analytics_app, alice, bob, admin, data)


def expected_summary(rows: list[Row]) -> dict[str, Any]:
    finished = [
        r
        for r in rows
        if r.state in (S.delivered, S.partially_delivered, S.failed, S.rejected, S.expired)
    ]
    delivered = [r for r in rows if r.state is S.delivered]
    times = [r.seconds_to_pacs for r in rows if r.seconds_to_pacs is not None]
    stat = [r for r in rows if r.service_level is L.stat]
    to_report = [r.seconds_to_report for r in stat if r.seconds_to_report is not None]
    modalities: dict[str, int] = {}
    for r in rows:
        modalities[r.modality] = modalities.get(r.modality, 0) + 1
    return {
        "count": len(rows),
        "bytes": sum(r.total_bytes for r in rows),
        "finished": len(finished),
        "success_rate": len(delivered) / len(finished) if finished else None,
        "modalities": modalities,
        "median": statistics.median(times) if times else None,
        "p95": percentile(times, 0.95),
        "stat_count": len(stat),
        "stat_median": statistics.median(
            [r.seconds_to_pacs for r in stat if r.seconds_to_pacs is not None]
        ),
        "stat_reports": len(to_report),
        "stat_report_median": statistics.median(to_report) if to_report else None,
    }


def check(body: dict[str, Any], rows: list[Row]) -> None:
    want = expected_summary(rows)
    assert body["uploads"]["count"] == want["count"]
    assert body["uploads"]["bytes"] == want["bytes"]
    assert body["finished"] == want["finished"]
    assert body["success_rate"] == pytest.approx(want["success_rate"])
    assert {m["modality"]: m["count"] for m in body["modalities"]} == want["modalities"]
    for state in UploadState:
        assert body["outcomes"][state.value] == sum(r.state is state for r in rows)
    assert body["time_to_pacs"]["median_seconds"] == pytest.approx(want["median"], abs=0.01)
    assert body["time_to_pacs"]["p95_seconds"] == pytest.approx(want["p95"], abs=0.01)
    stat = body["stat_turnaround"]
    assert stat["count"] == want["stat_count"]
    assert stat["time_to_pacs"]["median_seconds"] == pytest.approx(want["stat_median"], abs=0.01)
    assert stat["reports_ready"] == want["stat_reports"]
    assert stat["time_to_report"]["median_seconds"] == pytest.approx(
        want["stat_report_median"], abs=0.01
    )
    assert {level["service_level"] for level in body["service_levels"]} == {
        r.service_level.value for r in rows
    }
    for level in body["service_levels"]:
        of_level = [r for r in rows if r.service_level.value == level["service_level"]]
        assert level["count"] == len(of_level)
        assert level["delivered"] == sum(
            r.state in (S.delivered, S.partially_delivered) for r in of_level
        )
        level_times = [r.seconds_to_pacs for r in of_level if r.seconds_to_pacs is not None]
        assert level["time_to_pacs"]["count"] == len(level_times)
        _close(
            level["time_to_pacs"]["median_seconds"],
            statistics.median(level_times) if level_times else None,
        )
        _close(level["time_to_pacs"]["p95_seconds"], percentile(level_times, 0.95))


def _close(got: float | None, want: float | None) -> None:
    if want is None:
        assert got is None
    else:
        assert got == pytest.approx(want, abs=0.01)


def check_days(days: list[dict[str, Any]], rows: list[Row]) -> None:
    """Each day of the series against the rows the test inserted on that (UTC) day."""
    for day in days:
        on_day = [r for r in rows if r.created_at.date().isoformat() == day["date"]]
        assert day["uploads"] == len(on_day)
        assert day["bytes"] == sum(r.total_bytes for r in on_day)
        assert day["delivered"] == sum(
            r.state in (S.delivered, S.partially_delivered) for r in on_day
        )
        assert day["failed"] == sum(r.state in (S.failed, S.rejected) for r in on_day)
        modalities: dict[str, int] = {}
        for r in on_day:
            modalities[r.modality] = modalities.get(r.modality, 0) + 1
        assert day["modalities"] == modalities
    assert sum(d["uploads"] for d in days) == len(rows)


@pytest.mark.parametrize(("period", "days"), [("1w", 7), ("1m", 30), ("all", None)])
async def test_a_users_summary_matches_their_own_rows(
    world: World, period: str, days: int | None
) -> None:
    async with new_client(world.app) as http:
        response = await http.get(
            f"{API}/analytics/summary", params={"period": period}, headers=world.alice.headers
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"]["user_id"] == str(world.alice.id)
    check(body, world.data.of(world.alice.id, days=days))


async def test_an_admin_sees_everyone_and_can_narrow_by_user_modality_and_level(
    world: World,
) -> None:
    async with new_client(world.app) as http:
        everyone = await http.get(
            f"{API}/analytics/summary", params={"period": "1m"}, headers=world.admin.headers
        )
        check(everyone.json(), world.data.of(days=30))
        bob = await http.get(
            f"{API}/analytics/summary",
            params={"period": "all", "user_id": str(world.bob.id)},
            headers=world.admin.headers,
        )
        assert bob.json()["uploads"]["count"] == len(world.data.of(world.bob.id))
        mr = await http.get(
            f"{API}/analytics/summary",
            params={"period": "all", "modality": "mr"},
            headers=world.admin.headers,
        )
        assert mr.json()["uploads"]["count"] == sum(r.modality == "MR" for r in world.data.rows)
        stat = await http.get(
            f"{API}/analytics/summary",
            params={"period": "all", "service_level": "stat"},
            headers=world.admin.headers,
        )
        check(stat.json(), [r for r in world.data.rows if r.service_level is L.stat])


async def test_trends_are_a_zero_filled_daily_series(world: World) -> None:
    async with new_client(world.app) as http:
        response = await http.get(
            f"{API}/analytics/trends", params={"period": "2w"}, headers=world.alice.headers
        )
    days = response.json()["days"]
    today = utcnow().date()
    assert [d["date"] for d in days] == [
        (today - timedelta(days=13 - i)).isoformat() for i in range(14)
    ]
    check_days(days, world.data.of(world.alice.id, days=14))
    assert any(d["uploads"] == 0 for d in days)

    async with new_client(world.app) as http:
        everything = await http.get(
            f"{API}/analytics/trends", params={"period": "all"}, headers=world.alice.headers
        )
    series = everything.json()["days"]
    assert (
        series[0]["date"]
        == min(r.created_at for r in world.data.of(world.alice.id)).date().isoformat()
    )
    assert sum(d["uploads"] for d in series) == len(world.data.of(world.alice.id))


@pytest.mark.parametrize("period", [p.value for p in Period])
async def test_every_period_has_its_summary_and_a_zero_filled_daily_series(
    world: World, period: str
) -> None:
    days = PERIOD_DAYS.get(Period(period))
    today = utcnow().date()
    async with new_client(world.app) as http:
        # A fresh admin per period: the 10 requests/min budget is per user.
        admin = await sign_in(http, world.app, role=Role.admin)
        for owner in (world.alice.id, None):
            params = {"period": period} | ({"user_id": str(owner)} if owner else {})
            rows = world.data.of(owner, days=days)
            summary = await http.get(
                f"{API}/analytics/summary", params=params, headers=admin.headers
            )
            assert summary.status_code == 200, summary.text
            assert summary.json()["scope"]["period"] == period
            check(summary.json(), rows)
            trends = await http.get(f"{API}/analytics/trends", params=params, headers=admin.headers)
            assert trends.status_code == 200, trends.text
            series = trends.json()["days"]
            first = (
                today - timedelta(days=days - 1)
                if days is not None
                else min(r.created_at for r in rows).date()
            )
            assert [d["date"] for d in series] == [
                (first + timedelta(days=i)).isoformat() for i in range((today - first).days + 1)
            ]
            check_days(series, rows)


async def test_an_admins_trends_and_export_follow_the_filters(world: World) -> None:
    async with new_client(world.app) as http:
        admin = await sign_in(http, world.app, role=Role.admin)
        trends = await http.get(
            f"{API}/analytics/trends",
            params={"period": "all", "user_id": str(world.alice.id), "modality": "mr"},
            headers=admin.headers,
        )
        assert trends.status_code == 200, trends.text
        mr = [r for r in world.data.of(world.alice.id) if r.modality == "MR"]
        assert mr
        check_days(trends.json()["days"], mr)
        levels = await http.get(
            f"{API}/analytics/trends",
            params={"period": "1m", "service_level": "emergency"},
            headers=admin.headers,
        )
        emergency = [r for r in world.data.of(days=30) if r.service_level is L.emergency]
        assert emergency
        check_days(levels.json()["days"], emergency)
        export = await http.get(
            f"{API}/analytics/export.csv",
            params={"period": "all", "service_level": "stat", "user_id": str(world.alice.id)},
            headers=admin.headers,
        )
    assert export.status_code == 200
    assert 'filename="relaypacs_stats_all.csv"' in export.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(export.text)))[1:]
    stat = [r for r in world.data.of(world.alice.id) if r.service_level is L.stat]
    assert sorted(datetime.fromisoformat(line[0]) for line in table) == sorted(
        r.created_at for r in stat
    )
    assert {line[3] for line in table} == {"stat"}


async def test_the_personal_data_export_holds_the_users_uploads_only(world: World) -> None:
    async with new_client(world.app) as http:
        response = await http.get(f"{API}/users/me/export", headers=world.bob.headers)
    assert response.status_code == 200, response.text
    export = response.json()
    uploads = export["sections"]["uploads"]
    mine = world.data.of(world.bob.id)
    assert sorted(u["upload_id"] for u in uploads) == sorted(str(r.upload_id) for r in mine)
    by_id = {str(r.upload_id): r for r in mine}
    for item in uploads:
        row = by_id[item["upload_id"]]
        assert (item["state"], item["modality"], item["total_bytes"]) == (
            row.state.value,
            row.modality,
            row.total_bytes,
        )
        assert item["patient_name"] == "TEST^ANALYTICS"
    assert "personal_data_exported" in {e["action"] for e in export["audit_events"]}


async def test_users_cannot_see_others_figures_nor_export(world: World) -> None:
    async with new_client(world.app) as http:
        response = await http.get(
            f"{API}/analytics/summary",
            params={"user_id": str(world.bob.id)},
            headers=world.alice.headers,
        )
        assert_problem(response, 403, "insufficient_role")
        response = await http.get(f"{API}/analytics/export.csv", headers=world.alice.headers)
        assert_problem(response, 403, "insufficient_role")
        response = await http.get(f"{API}/admin/uploads", headers=world.alice.headers)
        assert_problem(response, 403, "insufficient_role")
        response = await http.post(
            f"{API}/admin/uploads/{uuid.uuid4()}/requeue", headers=world.alice.headers
        )
        assert_problem(response, 403, "insufficient_role")
        response = await http.get(
            f"{API}/analytics/summary", params={"period": "5y"}, headers=world.alice.headers
        )
        assert_problem(response, 422, "validation_error")
        response = await http.get(f"{API}/analytics/summary")
        assert_problem(response, 401, "not_authenticated")


async def test_the_csv_export_has_one_safe_row_per_upload(world: World) -> None:
    async with new_client(world.app) as http:
        response = await http.get(
            f"{API}/analytics/export.csv", params={"period": "1m"}, headers=world.admin.headers
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="relaypacs_stats_1m.csv"' in response.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0] == [
        "date",
        "user",
        "modality",
        "service_level",
        "files",
        "bytes",
        "outcome",
        "time_to_pacs_seconds",
    ]
    rows = world.data.of(days=30)
    assert len(table) - 1 == len(rows)
    by_date = {r.created_at: r for r in rows}
    assert len(by_date) == len(rows)
    for line in table[1:]:
        row = by_date[datetime.fromisoformat(line[0])]
        # Cells a spreadsheet would run as formulas start with a quote.
        assert line[1] == (f"'{row.username}" if row.username.startswith("-") else row.username)
        assert line[2] == (f"'{row.modality}" if row.modality.startswith("=") else row.modality)
        assert line[3:7] == [
            row.service_level.value,
            str(row.file_count),
            str(row.total_bytes),
            row.state.value,
        ]
        if row.seconds_to_pacs is None:
            assert line[7] == ""
        else:
            assert float(line[7]) == pytest.approx(row.seconds_to_pacs, abs=0.1)
    assert any(line[2] == "'=1+2" for line in table[1:])
    assert any(line[1].startswith("'-alice") for line in table[1:])


async def test_analytics_allow_ten_requests_a_minute_per_user(world: World) -> None:
    async with new_client(world.app) as http:
        user = await sign_in(http, world.app)
        for _ in range(10):
            response = await http.get(f"{API}/analytics/trends", headers=user.headers)
            assert response.status_code == 200
        response = await http.get(f"{API}/analytics/summary", headers=user.headers)
        body = assert_problem(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) >= 1
        assert body["retry_after"] >= 1
        # Another user has a budget of their own.
        other = await sign_in(http, world.app)
        assert (
            await http.get(f"{API}/analytics/summary", headers=other.headers)
        ).status_code == 200
