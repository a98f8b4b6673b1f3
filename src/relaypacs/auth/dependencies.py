"""Authentication and role checks for routes of every domain.

    @router.get("/uploads")
    async def list_uploads(user: CurrentUser, session: SessionDep): ...

    RadiologistUser = Annotated[User, Depends(require_roles(Role.radiologist, Role.admin))]

Each request re-reads the user row, the sign-in session and the access-token denylist, so
logout, disabling an account and role changes act on the very next request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from relaypacs.auth.exceptions import (
    AccountDisabled,
    InsufficientRole,
    InvalidToken,
    PasswordChangeRequired,
    TokenExpired,
    TokenRevoked,
)
from relaypacs.auth.service import AuthService
from relaypacs.auth.tokens import AccessClaims
from relaypacs.db.session import SessionDep
from relaypacs.errors import RelayError, Unauthorized
from relaypacs.resources import Resources
from relaypacs.users.models import Role, User

#: What an authenticated route can answer: ``responses=problem_responses(*AUTH_ERRORS, ...)``.
AUTH_ERRORS: tuple[type[RelayError], ...] = (
    Unauthorized,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    AccountDisabled,
    PasswordChangeRequired,
)
#: Add these for routes behind ``require_roles`` / ``AdminUser``.
ROLE_ERRORS: tuple[type[RelayError], ...] = (*AUTH_ERRORS, InsufficientRole)

_bearer = HTTPBearer(auto_error=False, description="RS256 access token from POST /auth/login")


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def get_auth_service(request: Request, session: SessionDep) -> AuthService:
    resources = get_resources(request)
    return AuthService(
        session,
        settings=resources.settings,
        keyring=resources.keyring,
        rate_limiter=resources.rate_limiter,
        request=request,
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _authenticated(
    request: Request, credentials: Credentials, service: AuthServiceDep
) -> User:
    if credentials is None:
        raise Unauthorized("Send an access token: Authorization: Bearer <token>")
    user, claims = await service.authenticate(credentials.credentials)
    request.state.user_id = str(user.id)
    request.state.access_claims = claims
    return user


async def _current_user(user: Annotated[User, Depends(_authenticated)]) -> User:
    if user.must_change_password:
        raise PasswordChangeRequired("Change the one-time password with POST /auth/password")
    return user


async def _optional_user(
    request: Request, credentials: Credentials, service: AuthServiceDep
) -> User | None:
    if credentials is None:
        return None
    return await _current_user(await _authenticated(request, credentials, service))


def get_access_claims(
    request: Request, _: Annotated[User, Depends(_authenticated)]
) -> AccessClaims:
    claims: AccessClaims = request.state.access_claims
    return claims


def require_roles(*roles: Role) -> Callable[[User], Awaitable[User]]:
    """A dependency that admits only users whose role (as stored now) is one of ``roles``."""
    allowed = frozenset(roles)

    async def check(user: Annotated[User, Depends(_current_user)]) -> User:
        if user.role not in allowed:
            raise InsufficientRole(f"Needs one of: {', '.join(sorted(allowed))}")
        return user

    return check


#: The signed-in, active user (who has no pending forced password change).
CurrentUser = Annotated[User, Depends(_current_user)]
#: Like CurrentUser, but also admits a user who must still change a one-time password.
CurrentUserPendingPasswordChange = Annotated[User, Depends(_authenticated)]
#: The signed-in user, or None when the request carries no token (an invalid token is still 401).
OptionalUser = Annotated[User | None, Depends(_optional_user)]
AdminUser = Annotated[User, Depends(require_roles(Role.admin))]
AccessClaimsDep = Annotated[AccessClaims, Depends(get_access_claims)]
