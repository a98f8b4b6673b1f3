"""Errors of sign-in, tokens and the second factor; each ``code`` is part of the API."""

from __future__ import annotations

from relaypacs.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Wrong username or password"


class AccountDisabled(Unauthorized):
    code = "account_disabled"
    title = "The account is disabled"


class AccountLocked(TooManyRequests):
    code = "account_locked"
    title = "Too many failed sign-ins: the account is locked for a while"


class TotpRequired(Unauthorized):
    code = "totp_required"
    title = "A code from the authenticator app is required"


class InvalidTotp(Unauthorized):
    code = "invalid_totp"
    title = "The authenticator or recovery code is wrong or already used"


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "The access token is not valid"


class TokenExpired(Unauthorized):
    code = "token_expired"
    title = "The access token has expired"


class TokenRevoked(Unauthorized):
    code = "token_revoked"
    title = "The access token has been revoked"


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    title = "The refresh token is not valid"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"
    title = "The refresh token was already used: every token of its sign-in is now revoked"


class InvalidPassword(Forbidden):
    code = "invalid_password"
    title = "The current password is wrong"


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"
    title = "The password must be changed before anything else"


class InsufficientRole(Forbidden):
    code = "insufficient_role"
    title = "Your role does not allow this"


class TotpAlreadyEnabled(Conflict):
    code = "totp_already_enabled"
    title = "Two-factor authentication is already on"


class TotpNotSetUp(Conflict):
    code = "totp_not_set_up"
    title = "Set up two-factor authentication first"


class TotpNotEnabled(Conflict):
    code = "totp_not_enabled"
    title = "Two-factor authentication is not on"


class WeakPassword(ValidationFailed):
    code = "weak_password"
    title = "The password does not meet the password policy"


class CommonPassword(ValidationFailed):
    code = "common_password"
    title = "The password is too common"


class PasswordTooLong(ValidationFailed):
    code = "password_too_long"
    title = "The password is longer than 72 bytes"


class PasswordContainsUsername(ValidationFailed):
    code = "password_contains_username"
    title = "The password must not contain the username"


class TotpCodeRejected(BadRequest):
    code = "invalid_totp"
    title = "The authenticator code is wrong or already used"


PASSWORD_POLICY_ERRORS = (WeakPassword, CommonPassword, PasswordTooLong, PasswordContainsUsername)
