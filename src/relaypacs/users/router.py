"""HTTP endpoints of the signed-in user's account, and of account administration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from relaypacs.auth.dependencies import (
    AUTH_ERRORS,
    ROLE_ERRORS,
    AdminUser,
    CurrentUser,
    get_resources,
)
from relaypacs.auth.exceptions import PASSWORD_POLICY_ERRORS
from relaypacs.db.session import SessionDep
from relaypacs.errors import IdPath, parse_id, problem_responses
from relaypacs.users import service
from relaypacs.users.exceptions import (
    EmailTaken,
    LastAdmin,
    OwnAccountChange,
    RoleChangeForbidden,
    UsernameTaken,
    UserNotFound,
)
from relaypacs.users.models import Role
from relaypacs.users.schemas import (
    NO_CONTROL_CHARACTERS,
    AdminUserUpdate,
    PersonalDataExport,
    Preferences,
    UserCreate,
    UserOut,
    UserPage,
    UserUpdate,
)

router = APIRouter(prefix="/users", tags=["users"])
admin_router = APIRouter(prefix="/admin/users", tags=["admin"])


@router.get("/me", response_model=UserOut, responses=problem_responses(*AUTH_ERRORS))
async def get_me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.patch(
    "/me",
    response_model=UserOut,
    summary="Change your own email address or full name (roles are given by administrators)",
    responses=problem_responses(*AUTH_ERRORS, RoleChangeForbidden, EmailTaken),
)
async def update_me(
    body: UserUpdate, user: CurrentUser, request: Request, session: SessionDep
) -> UserOut:
    try:
        updated = await service.update_profile(
            session,
            request,
            user,
            email=str(body.email) if body.email is not None else None,
            role=body.role,
            full_name=body.full_name,
        )
    except RoleChangeForbidden:
        await session.commit()  # keep the audit record of the attempt
        raise
    await session.commit()
    return UserOut.model_validate(updated)


@router.get(
    "/me/preferences", response_model=Preferences, responses=problem_responses(*AUTH_ERRORS)
)
async def get_preferences(user: CurrentUser) -> Preferences:
    return Preferences.model_validate(user)


@router.put(
    "/me/preferences",
    response_model=Preferences,
    summary="Replace your upload preferences",
    responses=problem_responses(*AUTH_ERRORS),
)
async def put_preferences(body: Preferences, user: CurrentUser, session: SessionDep) -> Preferences:
    updated = await service.set_preferences(session, user, body)
    await session.commit()
    return Preferences.model_validate(updated)


@router.get(
    "/me/export",
    response_model=PersonalDataExport,
    summary="Everything RelayPACS holds about you, as JSON (GDPR)",
    responses=problem_responses(*AUTH_ERRORS),
)
async def export_me(user: CurrentUser, request: Request, session: SessionDep) -> PersonalDataExport:
    export = await service.export_personal_data(session, request, user)
    await session.commit()
    return export


@admin_router.get("", response_model=UserPage, responses=problem_responses(*ROLE_ERRORS))
async def list_users(
    _: AdminUser,
    session: SessionDep,
    role: Role | None = None,
    is_active: bool | None = None,
    q: Annotated[
        str | None,
        Query(max_length=100, pattern=NO_CONTROL_CHARACTERS, description="Part of a name or email"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> UserPage:
    total, users = await service.list_users(
        session, role=role, is_active=is_active, query=q, limit=limit, offset=offset
    )
    return UserPage(total=total, items=[UserOut.model_validate(u) for u in users])


@admin_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    summary="Create an account with any role",
    responses=problem_responses(*ROLE_ERRORS, UsernameTaken, EmailTaken, *PASSWORD_POLICY_ERRORS),
)
async def create_user(
    body: UserCreate, admin: AdminUser, request: Request, session: SessionDep
) -> UserOut:
    user = await service.create_user_as_admin(
        session,
        get_resources(request).settings,
        request,
        actor_id=admin.id,
        username=body.username,
        email=str(body.email),
        password=body.password,
        role=body.role,
        must_change_password=body.must_change_password,
    )
    await session.commit()
    return UserOut.model_validate(user)


@admin_router.get(
    "/{user_id}", response_model=UserOut, responses=problem_responses(*ROLE_ERRORS, UserNotFound)
)
async def get_user(user_id: IdPath, _: AdminUser, session: SessionDep) -> UserOut:
    user = await service.get_user(session, parse_id(user_id, UserNotFound))
    return UserOut.model_validate(user)


@admin_router.patch(
    "/{user_id}",
    response_model=UserOut,
    summary="Change a user's role, or disable / enable the account (acts at once)",
    responses=problem_responses(*ROLE_ERRORS, UserNotFound, LastAdmin, OwnAccountChange),
)
async def administer_user(
    user_id: IdPath,
    body: AdminUserUpdate,
    admin: AdminUser,
    request: Request,
    session: SessionDep,
) -> UserOut:
    user = await service.administer_user(
        session,
        request,
        admin,
        parse_id(user_id, UserNotFound),
        role=body.role,
        is_active=body.is_active,
    )
    await session.commit()
    return UserOut.model_validate(user)
