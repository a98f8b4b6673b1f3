"""Errors of the account directory; each ``code`` is part of the API."""

from __future__ import annotations

from relaypacs.errors import Conflict, Forbidden, NotFound


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "No such user"


class UsernameTaken(Conflict):
    code = "username_taken"
    title = "The username is already taken"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "The email address is already registered"


class RegistrationClosed(Forbidden):
    code = "registration_closed"
    title = "Self-registration is switched off; ask an administrator for an account"


class RoleNotAllowed(Forbidden):
    code = "role_not_allowed"
    title = "This role can only be given by an administrator"


class RoleChangeForbidden(Forbidden):
    code = "role_change_forbidden"
    title = "Users cannot change their own role"


class OwnAccountChange(Forbidden):
    code = "own_account_change"
    title = "Administrators cannot change their own role or disable their own account"


class LastAdmin(Conflict):
    code = "last_admin"
    title = "The last active administrator cannot be demoted or disabled"
