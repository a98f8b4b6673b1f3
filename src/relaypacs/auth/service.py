"""Sign-in, token refresh and revocation, the second factor and password changes.

Services never commit. Failed sign-ins still change state (failure counters, audit rows), so
the router commits before it lets those errors propagate.
"""

from __future__ import annotations

import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from relaypacs.audit.service import client_ip, record_audit
from relaypacs.auth import totp
from relaypacs.auth.exceptions import (
    AccountDisabled,
    AccountLocked,
    InvalidCredentials,
    InvalidPassword,
    InvalidRefreshToken,
    InvalidToken,
    InvalidTotp,
    RefreshTokenReused,
    TokenRevoked,
    TotpAlreadyEnabled,
    TotpCodeRejected,
    TotpNotEnabled,
    TotpNotSetUp,
    TotpRequired,
)
from relaypacs.auth.keys import Keyring
from relaypacs.auth.models import LoginSession, RefreshToken
from relaypacs.auth.passwords import check_password_policy, hash_password, verify_password
from relaypacs.auth.repository import AuthRepository
from relaypacs.auth.revocation import end_delegated_credentials
from relaypacs.auth.tokens import (
    AccessClaims,
    hash_refresh_token,
    issue_access_token,
    new_refresh_token,
    seal_token,
    unseal_token,
    verify_access_token,
)
from relaypacs.config import Settings
from relaypacs.db.base import utcnow
from relaypacs.ratelimit import RateLimiter
from relaypacs.users.models import User
from relaypacs.users.repository import UserRepository

# Domain separation of the pad that seals a refresh token's successor (auth.tokens.seal_token).
_SUCCESSOR_CONTEXT = b"relaypacs refresh successor v1"

# A hash to check against when the user does not exist, so that the answer takes as long.
_dummy_hashes: dict[int, str] = {}


async def _dummy_hash(rounds: int) -> str:
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = await hash_password(secrets.token_urlsafe(16), rounds)
    return _dummy_hashes[rounds]


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    must_change_password: bool


@dataclass(frozen=True)
class TotpSetup:
    secret: str
    otpauth_uri: str
    qr_code: str


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: Settings,
        keyring: Keyring,
        rate_limiter: RateLimiter,
        request: Request | None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.keyring = keyring
        self.rate_limiter = rate_limiter
        self.request = request
        self.users = UserRepository(session)
        self.auth = AuthRepository(session)

    async def _audit(
        self,
        action: str,
        *,
        actor: User | None,
        target: User | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        subject = target or actor
        await record_audit(
            self.session,
            action,
            request=self.request,
            actor_id=actor.id if actor else None,
            target_type="user" if subject else None,
            target_id=str(subject.id) if subject else None,
            details=dict(details or {}),
        )

    # --- sign-in -------------------------------------------------------------------------

    async def login(self, login: str, password: str, totp_code: str | None) -> TokenPair:
        await self.rate_limiter.hit(
            self.settings.login_rate_limit, "login", client_ip(self.request) or "unknown"
        )
        now = utcnow()
        user = await self.users.get_by_login(login)
        if user is not None and user.locked_until is not None and user.locked_until > now:
            await self._audit("login_refused_locked", actor=None, target=user)
            raise AccountLocked(math.ceil((user.locked_until - now).total_seconds()))
        stored_hash = user.password_hash if user else await _dummy_hash(self.settings.bcrypt_rounds)
        password_ok = await verify_password(password, stored_hash)
        if user is None or not password_ok:
            if user is not None:
                await self._count_failure(user, now)
            await self._audit(
                "login_failed", actor=None, target=user, details={"reason": "password"}
            )
            raise InvalidCredentials()
        if not user.is_active:
            await self._audit(
                "login_failed", actor=None, target=user, details={"reason": "disabled"}
            )
            raise AccountDisabled()
        second_factor: str | None = None
        if user.totp_enabled:
            if not totp_code:
                raise TotpRequired()
            second_factor = await self._check_second_factor(user, totp_code, now)
            if second_factor is None:
                await self._count_failure(user, now)
                await self._audit(
                    "login_failed", actor=None, target=user, details={"reason": "totp"}
                )
                raise InvalidTotp()
        user.failed_login_count = 0
        user.locked_until = None
        user.last_login_at = now
        # Housekeeping at a moment the user is here anyway: rows never grow without bound.
        await self.auth.delete_expired_refresh_tokens(user.id, now)
        pair, login_session = await self._start_session(user, now)
        await self._audit(
            "login_succeeded",
            actor=user,
            details={"session_id": str(login_session.id), "second_factor": second_factor},
        )
        return pair

    async def _count_failure(self, user: User, now: datetime) -> None:
        failures = await self.users.count_failed_login(user.id)
        threshold = self.settings.login_lockout_threshold
        if failures < threshold:
            return
        # Backoff: the first lockout is short, each further failure doubles it up to a cap.
        exponent = min(failures - threshold, 20)
        seconds = min(
            self.settings.login_lockout_seconds * 2**exponent,
            self.settings.login_lockout_max_seconds,
        )
        await self.users.lock(user.id, now + timedelta(seconds=seconds))
        await self._audit("account_locked", actor=None, target=user, details={"seconds": seconds})

    async def _check_second_factor(self, user: User, code: str, now: datetime) -> str | None:
        """Returns "totp" or "recovery_code" when the code is accepted, else None."""
        if user.totp_secret is None:
            return None
        if totp.looks_like_totp(code):
            step = totp.matching_step(user.totp_secret, code, now)
            if step is not None and await self.users.claim_totp_step(user.id, step):
                return "totp"
            return None
        code_hash = totp.hash_recovery_code(user.id, code)
        if await self.auth.use_recovery_code(user.id, code_hash, now):
            await self._audit("recovery_code_used", actor=user)
            return "recovery_code"
        return None

    async def _start_session(self, user: User, now: datetime) -> tuple[TokenPair, LoginSession]:
        agent = self.request.headers.get("user-agent") if self.request else None
        login_session = await self.auth.add_session(
            LoginSession(
                user_id=user.id,
                ip_address=client_ip(self.request),
                user_agent=agent[:300] if agent else None,
            )
        )
        return await self._issue(user, login_session, now), login_session

    async def _issue(
        self,
        user: User,
        login_session: LoginSession,
        now: datetime,
        *,
        predecessor: tuple[RefreshToken, str] | None = None,
    ) -> TokenPair:
        refresh_token, refresh_hash = new_refresh_token()
        refresh_lifetime = timedelta(days=self.settings.refresh_token_days)
        successor = RefreshToken(
            session_id=login_session.id,
            token_hash=refresh_hash,
            expires_at=now + refresh_lifetime,
        )
        await self.auth.add_refresh_token(successor)
        if predecessor is not None:
            # Remember the answer, sealed under the token it answers, in case it gets lost.
            old, old_token = predecessor
            await self.auth.link_successor(
                old.id,
                successor.id,
                seal_token(refresh_token, key=old_token, context=_SUCCESSOR_CONTEXT),
            )
        return await self._pair(user, login_session, now, refresh_token, refresh_lifetime)

    async def _pair(
        self,
        user: User,
        login_session: LoginSession,
        now: datetime,
        refresh_token: str,
        refresh_lifetime: timedelta,
    ) -> TokenPair:
        await self.keyring.refresh()
        access_token, _ = issue_access_token(
            self.keyring,
            self.settings,
            user_id=user.id,
            role=user.role,
            token_version=user.token_version,
            session_id=login_session.id,
            now=now,
        )
        return TokenPair(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=self.settings.access_token_minutes * 60,
            refresh_expires_in=int(refresh_lifetime.total_seconds()),
            must_change_password=user.must_change_password,
        )

    # --- refresh and revocation ----------------------------------------------------------

    async def refresh(self, refresh_token: str) -> TokenPair:
        now = utcnow()
        found = await self.auth.find_refresh_token(hash_refresh_token(refresh_token))
        if found is None:
            raise InvalidRefreshToken()
        stored, login_session = found
        if login_session.revoked_at is not None:
            raise InvalidRefreshToken("The sign-in has ended; sign in again")
        if stored.expires_at <= now:
            raise InvalidRefreshToken("The refresh token has expired; sign in again")
        if stored.used_at is None and await self.auth.mark_refresh_token_used(stored.id, now):
            user = await self._live_user(login_session, now)
            return await self._issue(user, login_session, now, predecessor=(stored, refresh_token))
        # Exchanged already, perhaps a moment ago by a request racing this one.
        replayed = await self._replay_exchange(refresh_token, stored.id, login_session, now)
        if replayed is not None:
            return replayed
        # Someone holds a copy of a token that was already exchanged: end the whole sign-in.
        await self.auth.revoke_session(login_session.id, now, "refresh_token_reused")
        await record_audit(
            self.session,
            "refresh_token_reused",
            request=self.request,
            actor_id=None,
            target_type="user",
            target_id=str(login_session.user_id),
            details={"session_id": str(login_session.id)},
        )
        raise RefreshTokenReused()

    async def _live_user(self, login_session: LoginSession, now: datetime) -> User:
        user = await self.users.get(login_session.user_id)
        if user is None or not user.is_active:
            await self.auth.revoke_session(login_session.id, now, "account_disabled")
            raise AccountDisabled()
        return user

    async def _replay_exchange(
        self,
        refresh_token: str,
        token_id: uuid.UUID,
        login_session: LoginSession,
        now: datetime,
    ) -> TokenPair | None:
        """The same successor again, when this exchange's answer was evidently lost.

        Only within the grace window after the exchange, only for the immediate predecessor of
        a successor that has never been used (once the client used its new token, the old one
        showing up again is reuse), and always the same successor: no second branch of the
        family is ever minted. None: this is reuse.
        """
        grace = self.settings.refresh_reuse_grace_seconds
        if grace <= 0:
            return None
        # Read again: a racing exchange may have committed since this request first looked.
        stored = await self.auth.get_refresh_token(token_id)
        if (
            stored is None
            or stored.used_at is None
            or stored.successor_id is None
            or stored.successor_sealed is None
        ):
            return None
        since = (now - stored.used_at).total_seconds()
        if since > grace:
            return None
        successor = await self.auth.get_refresh_token(stored.successor_id)
        if successor is None or successor.used_at is not None or successor.expires_at <= now:
            return None
        token = unseal_token(stored.successor_sealed, key=refresh_token, context=_SUCCESSOR_CONTEXT)
        if hash_refresh_token(token) != successor.token_hash:
            return None
        user = await self._live_user(login_session, now)
        await self._audit(
            "refresh_token_replayed",
            actor=user,
            details={"session_id": str(login_session.id), "seconds_after": round(since, 3)},
        )
        return await self._pair(user, login_session, now, token, successor.expires_at - now)

    async def authenticate(self, token: str) -> tuple[User, AccessClaims]:
        claims = await verify_access_token(self.keyring, self.settings, token)
        principal = await self.auth.load_principal(claims.user_id, claims.session_id, claims.jti)
        if principal is None:
            raise InvalidToken("The token's user does not exist")
        if not principal.user.is_active:
            raise AccountDisabled()
        if principal.token_denied or not principal.session_live:
            raise TokenRevoked()
        if principal.user.token_version != claims.token_version:
            raise TokenRevoked("The password changed or the account was disabled since")
        return principal.user, claims

    async def logout(self, user: User, claims: AccessClaims, refresh_token: str | None) -> None:
        now = utcnow()
        await self.auth.deny_access_token(claims.jti, claims.expires_at, now)
        await self.auth.revoke_session(claims.session_id, now, "logout")
        if refresh_token:
            found = await self.auth.find_refresh_token(hash_refresh_token(refresh_token))
            if found is not None and found[1].user_id == user.id:
                await self.auth.revoke_session(found[1].id, now, "logout")
        await self._audit("logout", actor=user, details={"session_id": str(claims.session_id)})

    async def logout_all(self, user: User, claims: AccessClaims) -> int:
        """Sign out everywhere: every sign-in of the user ends (its refresh family and access
        tokens), this access token included, and so does every token other domains handed out
        for the user (upload tokens). Returns how many sign-ins were still live."""
        now = utcnow()
        await self.auth.deny_access_token(claims.jti, claims.expires_at, now)
        ended = await self.auth.revoke_user_sessions(user.id, now, "logout_all")
        delegated = await end_delegated_credentials(self.session, user.id, now)
        await self._audit("logout_all", actor=user, details={"sessions_ended": ended, **delegated})
        return ended

    # --- second factor -------------------------------------------------------------------

    async def setup_totp(self, user: User) -> TotpSetup:
        if user.totp_enabled:
            raise TotpAlreadyEnabled()
        secret = totp.new_secret()
        user.totp_secret = secret
        user.totp_last_step = None
        await self.users.flush()
        await self._audit("totp_setup_started", actor=user)
        uri = totp.provisioning_uri(secret, user.username)
        return TotpSetup(secret=secret, otpauth_uri=uri, qr_code=totp.qr_svg_data_uri(uri))

    async def enable_totp(self, user: User, code: str) -> list[str]:
        if user.totp_enabled:
            raise TotpAlreadyEnabled()
        if user.totp_secret is None:
            raise TotpNotSetUp()
        now = utcnow()
        step = totp.matching_step(user.totp_secret, code, now)
        if step is None:
            raise TotpCodeRejected()
        codes = totp.new_recovery_codes()
        user.totp_enabled = True
        user.totp_last_step = step
        await self.users.flush()
        await self.auth.replace_recovery_codes(
            user.id, [totp.hash_recovery_code(user.id, c) for c in codes]
        )
        await self._audit("totp_enabled", actor=user)
        return codes

    async def disable_totp(self, user: User, password: str, code: str) -> None:
        if not user.totp_enabled or user.totp_secret is None:
            raise TotpNotEnabled()
        await self._confirm_password(user, password, "totp_disable_refused")
        step = totp.matching_step(user.totp_secret, code, utcnow())
        if step is None or not await self.users.claim_totp_step(user.id, step):
            await self._audit("totp_disable_refused", actor=user, details={"reason": "code"})
            raise TotpCodeRejected()
        user.totp_enabled = False
        user.totp_secret = None
        user.totp_last_step = None
        await self.users.flush()
        await self.auth.delete_recovery_codes(user.id)
        await self._audit("totp_disabled", actor=user)

    # --- password ------------------------------------------------------------------------

    async def _confirm_password(self, user: User, password: str, refused: str) -> None:
        """The signed-in user's password, asked again before a sensitive change.

        Guessed like a sign-in, limited like one: a stolen access token must not become an
        unlimited password oracle. Wrong guesses count towards the account's lockout.
        """
        await self.rate_limiter.hit(
            self.settings.login_rate_limit, "password_confirmation", str(user.id)
        )
        now = utcnow()
        if user.locked_until is not None and user.locked_until > now:
            await self._audit(refused, actor=user, details={"reason": "locked"})
            raise AccountLocked(math.ceil((user.locked_until - now).total_seconds()))
        if not await verify_password(password, user.password_hash):
            await self._count_failure(user, now)
            await self._audit(refused, actor=user, details={"reason": "password"})
            raise InvalidPassword()

    async def change_password(self, user: User, current: str, new: str) -> None:
        await self._confirm_password(user, current, "password_change_refused")
        check_password_policy(new, username=user.username)
        user.password_hash = await hash_password(new, self.settings.bcrypt_rounds)
        user.must_change_password = False
        # Every token issued under the old password ends now, on every device.
        user.token_version += 1
        await self.users.flush()
        now = utcnow()
        await self.auth.revoke_user_sessions(user.id, now, "password_changed")
        delegated = await end_delegated_credentials(self.session, user.id, now)
        await self._audit("password_changed", actor=user, details={**delegated})
