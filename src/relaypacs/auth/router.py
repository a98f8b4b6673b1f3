"""HTTP endpoints of sign-in, tokens, the second factor, and the JWKS (at the root)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.audit.service import client_ip
from relaypacs.auth.dependencies import (
    AUTH_ERRORS,
    AccessClaimsDep,
    AuthServiceDep,
    CurrentUser,
    CurrentUserPendingPasswordChange,
    get_resources,
)
from relaypacs.auth.exceptions import (
    PASSWORD_POLICY_ERRORS,
    AccountDisabled,
    AccountLocked,
    InvalidCredentials,
    InvalidPassword,
    InvalidRefreshToken,
    InvalidTotp,
    RefreshTokenReused,
    TotpAlreadyEnabled,
    TotpCodeRejected,
    TotpNotEnabled,
    TotpNotSetUp,
    TotpRequired,
)
from relaypacs.auth.schemas import (
    Jwks,
    LoginRequest,
    LogoutRequest,
    PasswordChangeRequest,
    RecoveryCodesResponse,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    TotpDisableRequest,
    TotpEnableRequest,
    TotpSetupResponse,
)
from relaypacs.auth.service import TokenPair
from relaypacs.db.session import SessionDep
from relaypacs.errors import RelayError, TooManyRequests, problem_responses
from relaypacs.users import service as users_service
from relaypacs.users.exceptions import EmailTaken, RegistrationClosed, RoleNotAllowed, UsernameTaken
from relaypacs.users.schemas import UserOut

router = APIRouter(prefix="/auth", tags=["auth"])
jwks_router = APIRouter(tags=["auth"])


@asynccontextmanager
async def _keep_failure_records(session: AsyncSession) -> AsyncIterator[None]:
    # A refused sign-in still counts: its failure counter and audit row must be kept.
    try:
        yield
    except RelayError:
        await session.commit()
        raise


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        refresh_expires_in=pair.refresh_expires_in,
        must_change_password=pair.must_change_password,
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    summary="Create an account (clinician or radiographer)",
    responses=problem_responses(
        RegistrationClosed,
        RoleNotAllowed,
        UsernameTaken,
        EmailTaken,
        TooManyRequests,
        *PASSWORD_POLICY_ERRORS,
    ),
)
async def register(body: RegisterRequest, request: Request, session: SessionDep) -> UserOut:
    resources = get_resources(request)
    # Each registration costs a bcrypt hash: an open endpoint must not become a CPU sink.
    await resources.rate_limiter.hit(
        resources.settings.register_rate_limit, "register", client_ip(request) or "unknown"
    )
    user = await users_service.register(
        session,
        resources.settings,
        request,
        username=body.username,
        email=str(body.email),
        password=body.password,
        role=body.role,
    )
    await session.commit()
    return UserOut.model_validate(user)


@router.post(
    "/login",
    response_model=TokenResponse,
    summary="Sign in: an access token (60 min) and a refresh token (7 days)",
    responses=problem_responses(
        InvalidCredentials,
        TotpRequired,
        InvalidTotp,
        AccountDisabled,
        AccountLocked,
        TooManyRequests,
    ),
)
async def login(body: LoginRequest, service: AuthServiceDep, session: SessionDep) -> TokenResponse:
    async with _keep_failure_records(session):
        pair = await service.login(body.username, body.password, body.totp_code)
    await session.commit()
    return _tokens(pair)


@router.post(
    "/refresh",
    response_model=TokenResponse,
    summary="Exchange a refresh token for new tokens (the old one stops working)",
    description="Refresh tokens are single-use: presenting one again ends the whole sign-in "
    "(`refresh_token_reused`). One exception makes a lost answer safe to retry: within "
    "`RELAYPACS_REFRESH_REUSE_GRACE_SECONDS` (30 s) of the exchange, and while the new refresh "
    "token has never been used, the old one gets the same new refresh token again (with a fresh "
    "access token of the same sign-in).",
    responses=problem_responses(InvalidRefreshToken, RefreshTokenReused, AccountDisabled),
)
async def refresh(
    body: RefreshRequest, service: AuthServiceDep, session: SessionDep
) -> TokenResponse:
    async with _keep_failure_records(session):
        pair = await service.refresh(body.refresh_token)
    await session.commit()
    return _tokens(pair)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out: revoke this access token and its whole sign-in",
    responses=problem_responses(*AUTH_ERRORS),
)
async def logout(
    user: CurrentUserPendingPasswordChange,
    claims: AccessClaimsDep,
    service: AuthServiceDep,
    session: SessionDep,
    body: LogoutRequest | None = None,
) -> Response:
    await service.logout(user, claims, body.refresh_token if body else None)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out everywhere: end every sign-in of the user, on every device",
    responses=problem_responses(*AUTH_ERRORS),
)
async def logout_all(
    user: CurrentUserPendingPasswordChange,
    claims: AccessClaimsDep,
    service: AuthServiceDep,
    session: SessionDep,
) -> Response:
    await service.logout_all(user, claims)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/me",
    response_model=UserOut,
    summary="The signed-in user",
    responses=problem_responses(*AUTH_ERRORS),
)
async def me(user: CurrentUserPendingPasswordChange) -> UserOut:
    return UserOut.model_validate(user)


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change the password; every sign-in of the user ends",
    responses=problem_responses(
        *AUTH_ERRORS, InvalidPassword, AccountLocked, TooManyRequests, *PASSWORD_POLICY_ERRORS
    ),
)
async def change_password(
    body: PasswordChangeRequest,
    user: CurrentUserPendingPasswordChange,
    service: AuthServiceDep,
    session: SessionDep,
) -> Response:
    async with _keep_failure_records(session):
        await service.change_password(user, body.current_password, body.new_password)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/2fa/setup",
    response_model=TotpSetupResponse,
    summary="Start two-factor setup: a new secret, its otpauth URI and QR code",
    responses=problem_responses(*AUTH_ERRORS, TotpAlreadyEnabled),
)
async def setup_totp(
    user: CurrentUser, service: AuthServiceDep, session: SessionDep
) -> TotpSetupResponse:
    setup = await service.setup_totp(user)
    await session.commit()
    return TotpSetupResponse(
        secret=setup.secret, otpauth_uri=setup.otpauth_uri, qr_code=setup.qr_code
    )


@router.post(
    "/2fa/enable",
    response_model=RecoveryCodesResponse,
    summary="Turn two-factor on with a current code; returns 10 recovery codes, once",
    responses=problem_responses(*AUTH_ERRORS, TotpAlreadyEnabled, TotpNotSetUp, TotpCodeRejected),
)
async def enable_totp(
    body: TotpEnableRequest, user: CurrentUser, service: AuthServiceDep, session: SessionDep
) -> RecoveryCodesResponse:
    codes = await service.enable_totp(user, body.code)
    await session.commit()
    return RecoveryCodesResponse(recovery_codes=codes)


@router.post(
    "/2fa/disable",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Turn two-factor off (needs the password and a current code)",
    responses=problem_responses(
        *AUTH_ERRORS,
        TotpNotEnabled,
        InvalidPassword,
        TotpCodeRejected,
        AccountLocked,
        TooManyRequests,
    ),
)
async def disable_totp(
    body: TotpDisableRequest, user: CurrentUser, service: AuthServiceDep, session: SessionDep
) -> Response:
    async with _keep_failure_records(session):
        await service.disable_totp(user, body.password, body.code)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@jwks_router.get(
    "/.well-known/jwks.json",
    response_model=Jwks,
    summary="The RS256 public keys that verify access tokens (current and recently retired)",
)
async def jwks(request: Request) -> Jwks:
    keyring = get_resources(request).keyring
    await keyring.refresh()
    return Jwks.model_validate(keyring.jwks())
