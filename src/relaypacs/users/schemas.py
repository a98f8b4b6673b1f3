"""Request and response bodies of accounts, preferences and the data export."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from relaypacs.audit.schemas import AuditEventOut
from relaypacs.users.models import (
    MAX_CHUNK_SIZE,
    MAX_FULL_NAME_LENGTH,
    MIN_CHUNK_SIZE,
    Role,
    ServiceLevel,
)

Username = Annotated[
    str, StringConstraints(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
]
# Bounded far above the 72-byte rule so that the policy, not the parser, explains the refusal.
# Text that reaches the database or bcrypt: PostgreSQL refuses NUL in text, bcrypt refuses it
# in passwords; control characters have no place in names, codes or search terms.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
NO_NUL = r"^[^\x00]*$"
PasswordInput = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=NO_NUL)]


def _printable_text(value: object) -> object:
    # On the raw value, before trimming: a name sent with a trailing newline or tab is refused
    # like any other control character, not silently repaired. C1 controls count too, and lone
    # surrogates (a JSON "\ud800" escape) cannot be stored as UTF-8 by PostgreSQL.
    if isinstance(value, str):
        categories = {unicodedata.category(c) for c in value}
        if "Cc" in categories:
            raise PydanticCustomError("control_characters", "must not contain control characters")
        if "Cs" in categories:
            raise PydanticCustomError("invalid_text", "must not contain lone surrogates")
    return value


# The pattern tells API clients the rule (it holds for the trimmed value too); the validator
# enforces it, with its own message, before trimming.
FullNameInput = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=MAX_FULL_NAME_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]*$",
    ),
    BeforeValidator(_printable_text),
]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    totp_enabled: bool
    must_change_password: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserUpdate(BaseModel):
    """What users may change about themselves (``role`` is accepted only to refuse it clearly).

    An omitted (or null) field is left as it is.
    """

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    full_name: FullNameInput | None = Field(
        default=None,
        description=(
            f"Trimmed; at most {MAX_FULL_NAME_LENGTH} characters, no control characters. "
            "An empty string removes it"
        ),
    )
    role: Role | None = Field(default=None, description="Refused: only admins change roles")


class Preferences(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    default_service_level: ServiceLevel
    chunk_size: StrictInt = Field(
        ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE, description="Bytes, 512 KiB to 10 MiB"
    )
    duplicate_warnings: StrictBool


class UserCreate(BaseModel):
    """An account made by an administrator (any role)."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    email: EmailStr
    password: PasswordInput
    role: Role = Role.clinician
    must_change_password: StrictBool = True


class AdminUserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    is_active: StrictBool | None = None


class UserPage(BaseModel):
    total: int
    items: list[UserOut]


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    ip_address: str | None
    user_agent: str | None
    revoked_at: datetime | None
    revoked_reason: str | None


class PersonalDataExport(BaseModel):
    exported_at: datetime
    user: UserOut
    preferences: Preferences
    two_factor: dict[str, Any]
    sessions: list[SessionOut]
    audit_events: list[AuditEventOut]
    sections: dict[str, Any] = Field(
        default_factory=dict, description="Data other parts of RelayPACS hold about the user"
    )
