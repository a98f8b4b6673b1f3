"""Request and response bodies of sign-in, tokens and the second factor."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from relaypacs.users.models import Role
from relaypacs.users.schemas import NO_CONTROL_CHARACTERS, PasswordInput, Username

TotpCode = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=NO_CONTROL_CHARACTERS)
]
OpaqueToken = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)
]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    email: EmailStr
    password: PasswordInput
    role: Role = Field(
        default=Role.clinician,
        description="clinician or radiographer; other roles are given by an administrator",
    )


class LoginRequest(BaseModel):
    username: Annotated[
        str, StringConstraints(min_length=1, max_length=320, pattern=NO_CONTROL_CHARACTERS)
    ] = Field(description="Username (any case) or email address")
    password: PasswordInput
    totp_code: TotpCode | None = Field(
        default=None, description="Authenticator code, or one of the recovery codes"
    )


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the scheme name, not a secret)
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires")
    must_change_password: bool = False


class RefreshRequest(BaseModel):
    refresh_token: OpaqueToken


class LogoutRequest(BaseModel):
    refresh_token: OpaqueToken | None = None


class TotpSetupResponse(BaseModel):
    secret: str = Field(description="Base32 secret, for entering by hand")
    otpauth_uri: str
    qr_code: str = Field(description="The otpauth URI as an SVG QR code (data: URI)")


class TotpEnableRequest(BaseModel):
    code: TotpCode


class RecoveryCodesResponse(BaseModel):
    recovery_codes: list[str] = Field(description="Shown once; each works once instead of a code")


class TotpDisableRequest(BaseModel):
    password: PasswordInput
    code: TotpCode


class PasswordChangeRequest(BaseModel):
    current_password: PasswordInput
    new_password: PasswordInput


class Jwk(BaseModel):
    kty: Literal["RSA"]
    kid: str
    use: Literal["sig"]
    alg: Literal["RS256"]
    n: str
    e: str


class Jwks(BaseModel):
    keys: list[Jwk]
