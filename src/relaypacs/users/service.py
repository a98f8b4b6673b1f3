"""Accounts: creating users, self-service profile and preferences, administration, export.

Services never commit; the router (or the CLI) commits at its boundary.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.audit.models import AuditEvent
from relaypacs.audit.schemas import AuditEventOut
from relaypacs.audit.service import events_about_user, record_audit
from relaypacs.auth.passwords import check_password_policy, hash_password
from relaypacs.auth.repository import AuthRepository
from relaypacs.auth.revocation import end_delegated_credentials
from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.users.exceptions import (
    EmailTaken,
    LastAdmin,
    OwnAccountChange,
    RegistrationClosed,
    RoleChangeForbidden,
    RoleNotAllowed,
    UsernameTaken,
    UserNotFound,
)
from relaypacs.users.models import SELF_REGISTRATION_ROLES, Role, User
from relaypacs.users.repository import UserRepository
from relaypacs.users.schemas import (
    PersonalDataExport,
    Preferences,
    SessionOut,
    UserOut,
)

#: A section of the personal-data export, contributed by another domain (uploads, reports...).
ExportSection = Callable[[AsyncSession, User], Awaitable[Any]]
_export_sections: dict[str, ExportSection] = {}


def register_export_section(name: str, section: ExportSection) -> None:
    """Let another domain add what it holds about a user to ``GET /users/me/export``.

    Call at import time of that domain's module (configuration, like including a router).
    """
    _export_sections[name] = section


async def create_user(
    session: AsyncSession,
    settings: Settings,
    *,
    username: str,
    email: str,
    password: str,
    role: Role,
    must_change_password: bool = False,
) -> User:
    """Create an account of any role. Callers decide who may grant which role."""
    check_password_policy(password, username=username)
    users = UserRepository(session)
    username_key = username.lower()
    email = email.strip().lower()
    if await users.username_exists(username_key):
        raise UsernameTaken()
    if await users.email_exists(email):
        raise EmailTaken()
    password_hash = await hash_password(password, settings.bcrypt_rounds)
    user = User(
        username=username,
        username_key=username_key,
        email=email,
        password_hash=password_hash,
        role=role,
        must_change_password=must_change_password,
    )
    try:
        async with session.begin_nested():
            await users.add(user)
    except IntegrityError as exc:
        # Lost a race with a concurrent registration of the same name or address.
        if await users.username_exists(username_key):
            raise UsernameTaken() from exc
        raise EmailTaken() from exc
    return user


async def register(
    session: AsyncSession,
    settings: Settings,
    request: Request,
    *,
    username: str,
    email: str,
    password: str,
    role: Role,
) -> User:
    if not settings.allow_self_registration:
        raise RegistrationClosed()
    if role not in SELF_REGISTRATION_ROLES:
        raise RoleNotAllowed(
            f"Self-registration allows: {', '.join(sorted(SELF_REGISTRATION_ROLES))}"
        )
    user = await create_user(
        session, settings, username=username, email=email, password=password, role=role
    )
    await record_audit(
        session,
        "user_registered",
        request=request,
        actor_id=user.id,
        target_type="user",
        target_id=str(user.id),
        details={"role": role.value},
    )
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise UserNotFound()
    return user


async def update_profile(
    session: AsyncSession,
    request: Request,
    user: User,
    *,
    email: str | None,
    role: Role | None,
    full_name: str | None,
) -> User:
    """Apply the given changes (``None``: leave as is; ``full_name=""`` removes the name).

    Every check runs before the first change, so a refused request changes nothing.
    """
    if role is not None and role != user.role:
        await record_audit(
            session,
            "role_change_refused",
            request=request,
            actor_id=user.id,
            target_type="user",
            target_id=str(user.id),
            details={"requested_role": role.value},
        )
        raise RoleChangeForbidden()
    users = UserRepository(session)
    if email is not None:
        email = email.strip().lower()
        if email != user.email:
            if await users.email_exists(email, excluding=user.id):
                raise EmailTaken()
            user.email = email
            await users.flush()
            await record_audit(
                session,
                "email_changed",
                request=request,
                actor_id=user.id,
                target_type="user",
                target_id=str(user.id),
            )
    if full_name is not None:
        name = full_name.strip() or None
        if name != user.full_name:
            user.full_name = name
            await users.flush()
            # That it changed, never the name: audit details hold ids and outcomes only.
            await record_audit(
                session,
                "full_name_changed",
                request=request,
                actor_id=user.id,
                target_type="user",
                target_id=str(user.id),
            )
    return user


async def set_preferences(session: AsyncSession, user: User, preferences: Preferences) -> User:
    user.default_service_level = preferences.default_service_level
    user.chunk_size = preferences.chunk_size
    user.duplicate_warnings = preferences.duplicate_warnings
    await UserRepository(session).flush()
    return user


async def export_personal_data(
    session: AsyncSession, request: Request, user: User
) -> PersonalDataExport:
    auth = AuthRepository(session)
    total_codes, unused_codes = await auth.recovery_code_counts(user.id)
    # Recorded before reading the log so that the export includes its own trace.
    await record_audit(
        session,
        "personal_data_exported",
        request=request,
        actor_id=user.id,
        target_type="user",
        target_id=str(user.id),
    )
    sections = {name: await section(session, user) for name, section in _export_sections.items()}
    return PersonalDataExport(
        exported_at=utcnow(),
        user=UserOut.model_validate(user),
        preferences=Preferences.model_validate(user),
        two_factor={
            "enabled": user.totp_enabled,
            "recovery_codes_total": total_codes,
            "recovery_codes_unused": unused_codes,
        },
        sessions=[SessionOut.model_validate(s) for s in await auth.sessions_of(user.id)],
        audit_events=[_as_seen_by(user, e) for e in await events_about_user(session, user.id)],
        sections=sections,
    )


def _as_seen_by(user: User, event: AuditEvent) -> AuditEventOut:
    """An audit event in the user's own export: where someone else acted (an admin changed the
    role), who and from where is that person's data, not the user's."""
    out = AuditEventOut.model_validate(event)
    if out.actor_id == user.id:
        return out
    return out.model_copy(update={"actor_id": None, "ip_address": None, "user_agent": None})


async def list_users(
    session: AsyncSession,
    *,
    role: Role | None,
    is_active: bool | None,
    query: str | None,
    limit: int,
    offset: int,
) -> tuple[int, Sequence[User]]:
    return await UserRepository(session).list(
        role=role, is_active=is_active, query=query, limit=limit, offset=offset
    )


async def administer_user(
    session: AsyncSession,
    request: Request,
    admin: User,
    user_id: uuid.UUID,
    *,
    role: Role | None,
    is_active: bool | None,
) -> User:
    """Change a user's role or switch the account off or on; both act on the next request."""
    users = UserRepository(session)
    user = await get_user(session, user_id)
    if user.id == admin.id and (
        (role is not None and role != user.role) or (is_active is False and user.is_active)
    ):
        # An admin who locks themselves out needs another admin to undo it (the app offers no
        # such button either).
        raise OwnAccountChange()
    active_admin = user.role == Role.admin and user.is_active
    demoting_admin = role is not None and role != Role.admin and active_admin
    disabling_admin = is_active is False and active_admin
    if (demoting_admin or disabling_admin) and await users.count_active_admins(lock=True) <= 1:
        raise LastAdmin()
    now = utcnow()
    if role is not None and role != user.role:
        previous = user.role
        user.role = role
        await record_audit(
            session,
            "role_changed",
            request=request,
            actor_id=admin.id,
            target_type="user",
            target_id=str(user.id),
            details={"from": previous.value, "to": role.value},
        )
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        delegated: dict[str, int] = {}
        if not is_active:
            user.token_version += 1
            await AuthRepository(session).revoke_user_sessions(user.id, now, "account_disabled")
            # Not only refused while disabled: enabling the account again brings none back.
            delegated = await end_delegated_credentials(session, user.id, now)
        await record_audit(
            session,
            "user_enabled" if is_active else "user_disabled",
            request=request,
            actor_id=admin.id,
            target_type="user",
            target_id=str(user.id),
            details=delegated or None,
        )
    await users.flush()
    return user


async def create_user_as_admin(
    session: AsyncSession,
    settings: Settings,
    request: Request | None,
    *,
    actor_id: uuid.UUID | None,
    username: str,
    email: str,
    password: str,
    role: Role,
    must_change_password: bool,
) -> User:
    user = await create_user(
        session,
        settings,
        username=username,
        email=email,
        password=password,
        role=role,
        must_change_password=must_change_password,
    )
    await record_audit(
        session,
        "user_created",
        request=request,
        actor_id=actor_id,
        target_type="user",
        target_id=str(user.id),
        details={"role": role.value, "via": "api" if request is not None else "cli"},
    )
    return user


def generate_password() -> str:
    """A random password that satisfies the policy (for the first admin and the CLI)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        core = "".join(secrets.choice(alphabet) for _ in range(16))
        candidate = f"{core[:8]}-{core[8:]}"
        if (
            any(c.isupper() for c in candidate)
            and any(c.islower() for c in candidate)
            and any(c.isdigit() for c in candidate)
        ):
            return candidate


async def ensure_first_admin(
    session: AsyncSession, settings: Settings, *, username: str = "admin"
) -> tuple[User, str] | None:
    """With no admin at all, create one with a one-time password the caller shows once."""
    users = UserRepository(session)
    if await users.any_admin():
        return None
    if await users.username_exists(username.lower()):
        # The name went to someone else first: the admin gets a variant of it.
        username = f"{username}_{secrets.token_hex(3)}"
    password = generate_password()
    try:
        user = await create_user_as_admin(
            session,
            settings,
            None,
            actor_id=None,
            username=username,
            email=f"{username}@relaypacs.invalid",
            password=password,
            role=Role.admin,
            must_change_password=True,
        )
    except (UsernameTaken, EmailTaken):
        # Another instance starting at the same moment made the first admin.
        return None
    return user, password
