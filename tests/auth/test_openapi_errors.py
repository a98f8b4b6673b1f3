"""/openapi.json documents every error the accounts API answers, each as a Problem."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

AUTH = ("not_authenticated", "invalid_token", "token_expired", "token_revoked", "account_disabled")
ADMIN = {401: AUTH, 403: ("insufficient_role",)}
PASSWORD_POLICY = (
    "weak_password",
    "common_password",
    "password_too_long",
    "password_contains_username",
)

# The codes the tests in tests/auth, tests/users and tests/audit see each route answer.
DOCUMENTED: dict[tuple[str, str], dict[int, tuple[str, ...]]] = {
    ("post", "/api/v1/auth/register"): {
        403: ("registration_closed", "role_not_allowed"),
        409: ("username_taken", "email_taken"),
        422: (*PASSWORD_POLICY, "validation_error"),
        429: ("rate_limited",),
    },
    ("post", "/api/v1/auth/login"): {
        401: ("invalid_credentials", "totp_required", "invalid_totp", "account_disabled"),
        422: ("validation_error",),
        429: ("rate_limited", "account_locked"),
    },
    ("post", "/api/v1/auth/refresh"): {
        401: ("invalid_refresh_token", "refresh_token_reused"),
    },
    ("post", "/api/v1/auth/logout"): {401: AUTH},
    ("get", "/api/v1/auth/me"): {401: AUTH},
    ("post", "/api/v1/auth/password"): {
        401: AUTH,
        403: ("invalid_password", "password_change_required"),
        422: PASSWORD_POLICY,
        429: ("rate_limited", "account_locked"),
    },
    ("post", "/api/v1/auth/2fa/setup"): {401: AUTH, 409: ("totp_already_enabled",)},
    ("post", "/api/v1/auth/2fa/enable"): {
        400: ("invalid_totp",),
        409: ("totp_not_set_up", "totp_already_enabled"),
    },
    ("post", "/api/v1/auth/2fa/disable"): {
        400: ("invalid_totp",),
        403: ("invalid_password",),
        409: ("totp_not_enabled",),
        429: ("rate_limited", "account_locked"),
    },
    ("get", "/api/v1/users/me"): {401: AUTH, 403: ("password_change_required",)},
    ("patch", "/api/v1/users/me"): {403: ("role_change_forbidden",), 409: ("email_taken",)},
    ("put", "/api/v1/users/me/preferences"): {401: AUTH, 422: ("validation_error",)},
    ("get", "/api/v1/users/me/export"): {401: AUTH},
    ("get", "/api/v1/admin/users"): ADMIN,
    ("post", "/api/v1/admin/users"): {**ADMIN, 422: PASSWORD_POLICY},
    ("get", "/api/v1/admin/users/{user_id}"): {**ADMIN, 404: ("user_not_found",)},
    ("patch", "/api/v1/admin/users/{user_id}"): {
        **ADMIN,
        403: (*ADMIN[403], "own_account_change"),
        404: ("user_not_found",),
        409: ("last_admin",),
    },
    ("get", "/api/v1/admin/audit"): {**ADMIN, 400: ("invalid_time_range",)},
    ("get", "/api/v1/admin/audit/export.csv"): {**ADMIN, 400: ("invalid_time_range",)},
}
PREFIXES = ("/api/v1/auth/", "/api/v1/users/", "/api/v1/admin/users", "/api/v1/admin/audit")


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


@pytest.mark.parametrize(("method", "path"), sorted(DOCUMENTED))
async def test_each_error_code_is_documented_under_its_status(
    spec: dict[str, Any], method: str, path: str
) -> None:
    responses = spec["paths"][path][method]["responses"]
    for status, codes in DOCUMENTED[(method, path)].items():
        assert str(status) in responses, (method, path, status)
        description = responses[str(status)]["description"]
        for code in codes:
            assert f"`{code}`" in description, (method, path, status, code)


async def test_every_error_response_of_the_accounts_api_is_a_problem(
    spec: dict[str, Any],
) -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    checked = 0
    for path, operations in spec["paths"].items():
        if not path.startswith(PREFIXES):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            errors = {s: r for s, r in responses.items() if s == "default" or s >= "400"}
            assert "default" in errors, (method, path)
            assert "422" in errors, (method, path)
            for status, response in errors.items():
                content = response["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
                assert content["application/problem+json"]["schema"] == problem
            checked += 1
    assert checked >= len(DOCUMENTED)
    assert {"type", "title", "status", "code"} <= set(
        spec["components"]["schemas"]["Problem"]["required"]
    )
