"""One JSON log line per request: time, level, request id, user id, route, status, duration."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from relaypacs.app import create_app
from tests.conftest import make_settings
from tests.support.accounts import new_client, sign_in


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


async def test_each_request_logs_one_json_line_with_its_context(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_settings(database_url, tmp_path, log_level="INFO"))
    request_id = "log-" + uuid.uuid4().hex
    async with app.router.lifespan_context(app), new_client(app) as http:
        user = await sign_in(http, app)
        me = await http.get(
            "/api/v1/users/me", headers={**user.headers, "X-Request-ID": request_id}
        )
        assert me.status_code == 200
        assert me.headers["x-request-id"] == request_id
        missing = await http.get(f"/api/v1/admin/users/{uuid.uuid4()}", headers=user.headers)
        assert missing.status_code == 403
        anonymous = await http.get(
            "/api/v1/no-such-thing", headers={"X-Request-ID": request_id + "-2"}
        )
        assert anonymous.status_code == 404
    output = capsys.readouterr().out
    requests = [line for line in _lines(output) if line.get("event") == "request"]

    (line,) = [r for r in requests if r.get("request_id") == request_id]
    assert line["level"] == "info"
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None
    assert line["user_id"] == str(user.id)
    assert line["route"] == "/api/v1/users/me"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], int | float)
    assert line["duration_ms"] >= 0

    # Routes are templates, never ids; a request without a token has no user.
    refused = [r for r in requests if r["status"] == 403]
    assert refused
    assert refused[-1]["route"] == "/api/v1/admin/users/{user_id}"
    (unknown,) = [r for r in requests if r.get("request_id") == request_id + "-2"]
    assert unknown["user_id"] is None
    assert unknown["status"] == 404

    for secret in (user.access_token, user.refresh_token, user.password):
        assert secret not in output
