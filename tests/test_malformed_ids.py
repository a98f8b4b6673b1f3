"""A malformed id in a URL path is an unknown id (404 with the resource's own code), never a 422.

DESIGN.md: unknown → 404. A client (or a person editing a link) cannot tell a typo in an id from
an id that does not exist, and needs no second error to handle. The upload protocol's routes are
tested with the uploads (tests/uploads).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from relaypacs.users.models import Role
from tests.support.accounts import assert_problem, sign_in

API = "/api/v1"
# The last: a well-formed id with one character too many.
MALFORMED = ("not-a-uuid", "123", "0f8fad5b-d9cb-469f-a165-70867728950e0")

# method, path with "{id}", JSON body that would be accepted, the not-found code.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/reports/{id}", None, "report_not_found"),
    ("GET", "/reports/{id}/pdf", None, "report_not_found"),
    ("PATCH", "/reports/{id}", {"radiologist": "Dr Who"}, "report_not_found"),
    ("POST", "/reports/{id}/sync", None, "report_not_found"),
    ("PATCH", "/notifications/{id}", {"read": True}, "notification_not_found"),
    ("GET", "/admin/users/{id}", None, "user_not_found"),
    ("PATCH", "/admin/users/{id}", {"is_active": True}, "user_not_found"),
    ("POST", "/admin/uploads/{id}/requeue", None, "upload_not_found"),
]


@pytest.mark.parametrize("malformed", MALFORMED)
@pytest.mark.parametrize(("method", "path", "body", "code"), ROUTES)
async def test_a_malformed_id_is_as_unknown_as_a_missing_one(
    client: httpx.AsyncClient,
    app: FastAPI,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    code: str,
    malformed: str,
) -> None:
    # An admin may open every one of these routes, so only the id decides the answer.
    admin = await sign_in(client, app, role=Role.admin)
    unknown = await client.request(
        method, API + path.format(id=uuid.uuid4()), json=body, headers=admin.headers
    )
    assert_problem(unknown, 404, code)
    response = await client.request(
        method, API + path.format(id=malformed), json=body, headers=admin.headers
    )
    assert_problem(response, 404, code)


async def test_every_route_with_an_id_in_its_path_is_checked_and_documents_its_404(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    found = {
        (method.upper(), re.sub(r"\{[a-z_]+\}", "{id}", path.removeprefix(API))): operation
        for path, operations in spec["paths"].items()
        if "{" in path and not path.startswith(f"{API}/uploads/")
        for method, operation in operations.items()
    }
    assert set(found) == {(method, path) for method, path, _, _ in ROUTES}
    for method, path, _, code in ROUTES:
        operation = found[(method, path)]
        assert f"`{code}`" in operation["responses"]["404"]["description"], (method, path)
        (parameter,) = operation["parameters"]
        assert parameter["schema"]["format"] == "uuid", (method, path)
