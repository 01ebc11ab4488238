"""Account use cases: registration, login with MFA, token rotation, email and password flows."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import pyotp
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts import lockout
from boxoffice.accounts.exceptions import (
    EmailTaken,
    InvalidAccountToken,
    InvalidOtp,
    InvalidRefreshToken,
    LoginFailed,
    MfaRequired,
    OtpFailed,
    OtpRequired,
    RefreshTokenReused,
    UnknownRole,
    WeakPassword,
)
from boxoffice.accounts.models import AccountToken, RefreshToken, User
from boxoffice.accounts.passwords import password_problem
from boxoffice.accounts.permissions import Role
from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.db import RowLoad, sqlite_time
from boxoffice.core.errors import Conflict, Forbidden, NotAuthenticated, NotFound
from boxoffice.core.mail import Mailer
from boxoffice.core.security import (
    AccessClaims,
    create_access_token,
    hash_password,
    hash_token,
    new_token,
    verify_dummy_password,
    verify_password,
)
from boxoffice.notifications import service as notifications

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
TOTP_ISSUER = "boxoffice"
TOTP_PERIOD = 30


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class AuthContext:
    """What token issuing and mail need from the app, passed in by the router."""

    settings: Settings
    signing_key: str
    mailer: Mailer


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_password(password: str, email: str | None) -> None:
    problem = password_problem(password, email)
    if problem:
        raise WeakPassword(problem)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    full_name: str,
    role: str = Role.CUSTOMER,
    phone: str | None = None,
    verified: bool = False,
) -> User:
    if role not in Role.__members__.values():
        raise UnknownRole(f"Unknown role {role!r}; use one of {', '.join(Role)}.")
    email = normalize_email(email)
    check_password(password, email)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken("An account with this email already exists.")
    user = User(
        email=email,
        password_hash=await hash_password(password),
        full_name=full_name.strip(),
        phone=phone,
        role=role,
        email_verified_at=utcnow() if verified else None,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent registration of the same address won
        raise EmailTaken("An account with this email already exists.") from exc
    return user


async def register(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    email: str,
    password: str,
    full_name: str,
    phone: str | None,
    user_agent: str | None = None,
    ip: str | None = None,
) -> tuple[User, TokenPair]:
    user = await create_user(
        session, email=email, password=password, full_name=full_name, phone=phone
    )
    await send_verification_email(session, ctx, user)
    return user, await issue_tokens(session, ctx, user, user_agent=user_agent, ip=ip)


async def issue_tokens(
    session: AsyncSession,
    ctx: AuthContext,
    user: User,
    *,
    family_id: uuid.UUID | None = None,
    user_agent: str | None = None,
    ip: str | None = None,
    mfa: bool = False,
) -> TokenPair:
    """A refresh token of the session `family_id` (a new session without one) and an access
    token naming that session (`sid`) and whether it was signed in with a one-time code."""
    refresh = new_token()
    family_id = family_id or uuid.uuid4()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=hash_token(refresh),
            expires_at=utcnow() + dt.timedelta(seconds=ctx.settings.refresh_token_ttl),
            user_agent=(user_agent or "")[:300] or None,
            ip=(ip or "")[:64] or None,
            mfa=mfa,
        )
    )
    await session.flush()
    ttl = ctx.settings.access_token_ttl
    return TokenPair(
        access_token=create_access_token(
            ctx.signing_key, user.id, user.role, ttl, session_id=family_id, mfa=mfa
        ),
        refresh_token=refresh,
        expires_in=ttl,
    )


async def login(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    email: str,
    password: str,
    otp: str | None,
    user_agent: str | None = None,
    ip: str = "unknown",
) -> tuple[User, TokenPair]:
    """Sign in. Failed attempts are counted per (account, IP), account and IP (see
    `lockout`); while a lock lasts the answer is 429 `login_locked`, right password or not.
    Unknown addresses go through the same steps, at the same cost."""
    email = normalize_email(email)
    subject = lockout.LoginSubject.of(email, ip)
    await lockout.check(session, ctx.settings, subject)
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        await verify_dummy_password(password)  # same time as a wrong password
        await lockout.record_failure(session, ctx.settings, subject, user_id=None)
        raise LoginFailed("Invalid email or password.")
    matches, rehashed = await verify_password(password, user.password_hash)
    if not matches or not user.is_active:
        await lockout.record_failure(session, ctx.settings, subject, user_id=user.id)
        raise LoginFailed("Invalid email or password.")
    if rehashed:
        user.password_hash = rehashed
    if user.mfa_enabled:
        if not otp:
            raise OtpRequired("This account uses two-factor sign-in: send `otp`.")
        try:
            await consume_totp(session, user, otp)
        except InvalidOtp as exc:  # guessing codes counts like guessing passwords
            await lockout.record_failure(session, ctx.settings, subject, user_id=user.id)
            raise OtpFailed(exc.detail) from exc
    await lockout.record_success(session, ctx.settings, subject)
    return user, await issue_tokens(
        session, ctx, user, user_agent=user_agent, ip=ip, mfa=user.mfa_enabled
    )


async def refresh_tokens(
    session: AsyncSession,
    ctx: AuthContext,
    refresh_token: str,
    user_agent: str | None = None,
    ip: str | None = None,
) -> TokenPair:
    """Rotate: spend the presented token and hand out a new one of the same family.

    The spend is one conditional UPDATE, so two concurrent refreshes with one token cannot
    both succeed; the loser is treated as a reuse and revokes the family. The UPDATE goes by
    primary key: through the unique token index MariaDB takes a next-key lock that deadlocks
    with the winner's insert of the new token.
    """
    now = utcnow()
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))
    )
    if row is None:
        raise InvalidRefreshToken("Unknown refresh token.")
    spent = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == row.id,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        # A locking read sees a concurrent winner's committed spend (a plain one may not).
        await session.refresh(row, with_for_update=True)
        if row.used_at is None and row.revoked_at is not None:
            raise InvalidRefreshToken("This session was signed out; sign in again.")
        if row.used_at is not None or row.revoked_at is not None:
            await revoke_family(session, row.family_id)
            raise RefreshTokenReused(
                "This refresh token was already used; every session it belongs to is now "
                "signed out."
            )
        raise InvalidRefreshToken("The refresh token has expired.")
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise InvalidRefreshToken("The account is not active.")
    return await issue_tokens(
        session,
        ctx,
        user,
        family_id=row.family_id,
        user_agent=user_agent,
        ip=ip,
        mfa=row.mfa and user.mfa_enabled,
    )


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def revoke_all_sessions(
    session: AsyncSession, user_id: uuid.UUID, *, keep: uuid.UUID | None = None
) -> int:
    """Revoke the user's refresh tokens (but those of the session `keep`): the number of
    sessions that were still live."""
    live = await _live_tokens(session, user_id)
    query = update(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
    )
    if keep is not None:
        query = query.where(RefreshToken.family_id != keep)
    await session.execute(
        query.values(revoked_at=utcnow()).execution_options(synchronize_session=False)
    )
    return sum(1 for row in live if row.family_id != keep)


# --- sessions (refresh-token families) ------------------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    id: uuid.UUID  # the family id
    created_at: dt.datetime  # the sign-in
    last_used_at: dt.datetime  # the last sign-in or refresh
    user_agent: str | None
    ip: str | None
    mfa: bool


async def _live_tokens(session: AsyncSession, user_id: uuid.UUID) -> list[RefreshToken]:
    """The unspent, unrevoked, unexpired tokens: one per live session, its newest."""
    rows = await session.scalars(
        select(RefreshToken).where(
            RefreshToken.user_id == user_id,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > utcnow(),
        )
    )
    return list(rows)


async def list_sessions(session: AsyncSession, user_id: uuid.UUID) -> list[SessionInfo]:
    """The user's live sessions, most recently used first."""
    live = await _live_tokens(session, user_id)
    if not live:
        return []
    rows = await session.execute(
        select(RefreshToken.family_id, func.min(RefreshToken.created_at))
        .where(
            RefreshToken.user_id == user_id,
            RefreshToken.family_id.in_([row.family_id for row in live]),
        )
        .group_by(RefreshToken.family_id)
    )
    started: dict[uuid.UUID, dt.datetime] = {row[0]: row[1] for row in rows}
    sessions = [
        SessionInfo(
            id=row.family_id,
            created_at=started.get(row.family_id) or row.created_at,
            last_used_at=row.created_at,
            user_agent=row.user_agent,
            ip=row.ip,
            mfa=row.mfa,
        )
        for row in live
    ]
    return sorted(sessions, key=lambda s: s.last_used_at, reverse=True)


async def revoke_session(session: AsyncSession, user: User, session_id: uuid.UUID) -> None:
    """Sign one of the user's sessions out (404 unless it is theirs and live). Its access
    tokens run out within `access_token_ttl`; it can no longer refresh."""
    if not any(row.family_id == session_id for row in await _live_tokens(session, user.id)):
        raise NotFound("No such session.", code="session_not_found")
    await revoke_family(session, session_id)
    _audit_self(session, user, "auth.session_revoked", {"sessionId": str(session_id)})


async def revoke_other_sessions(
    session: AsyncSession, user: User, *, current: uuid.UUID | None, keep_current: bool
) -> int:
    """Sign out everywhere. Without `keep_current`, every access token issued so far is
    refused too (the caller signs in again); with it, the caller's session stays."""
    keep = current if keep_current else None
    count = await revoke_all_sessions(session, user.id, keep=keep)
    if keep is None:
        user.sessions_revoked_at = utcnow()
    _audit_self(
        session, user, "auth.sessions_revoked", {"count": count, "keepCurrent": keep is not None}
    )
    return count


def _audit_self(
    session: AsyncSession, user: User, action: str, data: Mapping[str, object] | None = None
) -> None:
    """An account's own security action (the user is the actor and the entity)."""
    audit.record(
        session,
        action,
        entity_type="user",
        entity_id=user.id,
        actor_kind=ActorKind.CUSTOMER,
        actor_id=user.id,
        data=data,
    )


def token_is_current(user: User, claims: AccessClaims) -> bool:
    """False for an access token issued before the password changed or the user signed out
    everywhere (tokens without an issue time are let through: they cannot be placed)."""
    if claims.issued_at is None:
        return True
    cutoffs = [t for t in (user.password_changed_at, user.sessions_revoked_at) if t is not None]
    return not cutoffs or claims.issued_at >= max(cutoffs)


def token_is_current_sql(issued_at: str, users: str = "users") -> str:
    """`token_is_current` as a PostgreSQL condition on a `users` row, for the statements that
    check the caller themselves (`users`: the table's name or alias there; `issued_at`: the
    token's issue time, NULL for none, which is let through; GREATEST skips NULL cutoffs)."""
    return (
        f"coalesce(greatest({users}.password_changed_at, {users}.sessions_revoked_at)"
        f" <= {issued_at}, true)"
    )


# `token_is_current` in SQLite's dialect, for the statements on the plain sqlite3 connection
# (booking.holds_sqlite, the seat map) on a `users` row: one `?`, the token's issue time as
# the columns' text (`sqlite_issued_at`), NULL for a token without one.
TOKEN_IS_CURRENT_SQLITE = (
    "coalesce(max(coalesce(password_changed_at, ''), coalesce(sessions_revoked_at, '')) <= ?, 1)"
)


def sqlite_issued_at(issued_at: dt.datetime | None) -> str | None:
    """The parameter of `TOKEN_IS_CURRENT_SQLITE`."""
    return None if issued_at is None else sqlite_time(issued_at)


async def logout(session: AsyncSession, refresh_token: str) -> None:
    """End the session the token belongs to (its whole family). Unknown tokens are ignored."""
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))
    )
    if row is not None:
        await revoke_family(session, row.family_id)


# --- single-use mailed tokens -------------------------------------------------------------


async def _new_account_token(
    session: AsyncSession, user: User, purpose: str, ttl_seconds: int
) -> str:
    token = new_token()
    session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=hash_token(token),
            email=user.email,
            expires_at=utcnow() + dt.timedelta(seconds=ttl_seconds),
        )
    )
    await session.flush()
    return token


async def _consume_account_token(session: AsyncSession, token: str, purpose: str) -> AccountToken:
    """Spend a mailed token exactly once (conditional UPDATE), or refuse it."""
    now = utcnow()
    token_hash = hash_token(token)
    result = await session.execute(
        update(AccountToken)
        .where(
            AccountToken.token_hash == token_hash,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidAccountToken("The token is invalid, expired or already used.")
    row = await session.scalar(select(AccountToken).where(AccountToken.token_hash == token_hash))
    assert row is not None
    return row


async def _peek_account_token(session: AsyncSession, token: str, purpose: str) -> AccountToken:
    row = await session.scalar(
        select(AccountToken).where(
            AccountToken.token_hash == hash_token(token),
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > utcnow(),
        )
    )
    if row is None:
        raise InvalidAccountToken("The token is invalid, expired or already used.")
    return row


async def send_verification_email(session: AsyncSession, ctx: AuthContext, user: User) -> None:
    if user.email_verified_at is not None:
        return
    token = await _new_account_token(session, user, VERIFY_EMAIL, ctx.settings.email_token_ttl)
    link = f"{ctx.settings.public_base_url}/verify-email?token={token}"
    # Rendered now and sent after the commit: the token is never stored in a job queue.
    await notifications.send_account_mail(
        session,
        ctx.mailer,
        user,
        "email_verification",
        link=link,
        token=token,
        hours=ctx.settings.email_token_ttl // 3600,
    )


async def verify_email(session: AsyncSession, token: str) -> None:
    row = await _consume_account_token(session, token, VERIFY_EMAIL)
    user = await get_user(session, row.user_id)
    if user.email != row.email:
        raise InvalidAccountToken("The token was sent to an address this account no longer uses.")
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()


async def request_password_reset(session: AsyncSession, ctx: AuthContext, email: str) -> None:
    """Mail a reset link if the account exists; the caller answers 202 either way."""
    user = await session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None or not user.is_active:
        return
    token = await _new_account_token(session, user, RESET_PASSWORD, ctx.settings.password_reset_ttl)
    link = f"{ctx.settings.public_base_url}/reset-password?token={token}"
    await notifications.send_account_mail(
        session,
        ctx.mailer,
        user,
        "password_reset",
        link=link,
        token=token,
        minutes=ctx.settings.password_reset_ttl // 60,
    )


async def reset_password(session: AsyncSession, token: str, new_password: str) -> None:
    """Set a new password from a mailed token: every session is signed out, every access
    token issued before is refused, and the account's login locks are cleared."""
    pending = await _peek_account_token(session, token, RESET_PASSWORD)
    user = await get_user(session, pending.user_id)
    check_password(new_password, user.email)  # a refused password does not spend the token
    row = await _consume_account_token(session, token, RESET_PASSWORD)
    await _set_password(user, new_password)
    if user.email_verified_at is None and row.email == user.email:
        user.email_verified_at = utcnow()  # the mailbox owner proved it
    count = await revoke_all_sessions(session, user.id)
    await lockout.clear_account(session, user.email)
    _audit_self(session, user, "user.password_reset", {"sessionsRevoked": count})


async def change_password(
    session: AsyncSession,
    ctx: AuthContext,
    user: User,
    current_password: str,
    new_password: str,
    *,
    ip: str = "unknown",
) -> None:
    """Change the password (204): every session, the caller's included, is signed out and
    access tokens issued before are refused, so a thief holding any token is out at once.

    A wrong current password counts as a failed sign-in (a stolen access token must not
    become a password-guessing oracle) and a lock answers 429 `login_locked`."""
    subject = lockout.LoginSubject.of(user.email, ip)
    await lockout.check(session, ctx.settings, subject)
    matches, _ = await verify_password(current_password, user.password_hash)
    if not matches:
        await lockout.record_failure(session, ctx.settings, subject, user_id=user.id)
        raise LoginFailed("The current password is wrong.")
    check_password(new_password, user.email)
    await _set_password(user, new_password)
    count = await revoke_all_sessions(session, user.id)
    _audit_self(session, user, "user.password_changed", {"sessionsRevoked": count})


async def _set_password(user: User, password: str) -> None:
    user.password_hash = await hash_password(password)
    user.password_changed_at = utcnow()


# --- TOTP multi-factor ----------------------------------------------------------------------


@dataclass(frozen=True)
class MfaSetup:
    secret: str
    otpauth_uri: str


async def mfa_setup(user: User) -> MfaSetup:
    if user.mfa_enabled:
        raise Conflict("Two-factor sign-in is already on; disable it first.", code="mfa_enabled")
    user.mfa_secret = pyotp.random_base32()
    user.mfa_last_step = None
    uri = pyotp.TOTP(user.mfa_secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)
    return MfaSetup(secret=user.mfa_secret, otpauth_uri=uri)


async def mfa_enable(session: AsyncSession, user: User, otp: str) -> None:
    """Turn MFA on. The caller's tokens stay as they were signed in (without a code): with
    BOXOFFICE_REQUIRE_ADMIN_MFA an admin signs in again with a code to use admin powers."""
    if user.mfa_enabled:
        raise Conflict("Two-factor sign-in is already on.", code="mfa_enabled")
    if not user.mfa_secret:
        raise Conflict("Call /api/auth/mfa/setup first.", code="mfa_not_set_up")
    await consume_totp(session, user, otp)
    user.mfa_enabled = True
    _audit_self(session, user, "user.mfa_enabled")


async def mfa_disable(
    session: AsyncSession, user: User, otp: str, *, require_admin_mfa: bool = False
) -> None:
    if not user.mfa_enabled:
        raise Conflict("Two-factor sign-in is not on.", code="mfa_not_enabled")
    if require_admin_mfa and user.role == Role.ADMIN:
        raise MfaRequired("Admins must keep two-factor sign-in on.")
    await consume_totp(session, user, otp)
    user.mfa_enabled = False
    user.mfa_secret = None
    _audit_self(session, user, "user.mfa_disabled")


def check_admin_mfa(user: User, claims: AccessClaims | None, settings: Settings) -> None:
    """With BOXOFFICE_REQUIRE_ADMIN_MFA, an admin uses permissions only through a session
    signed in with a one-time code (the token's `mfa` claim: no database read)."""
    if not settings.require_admin_mfa or user.role != Role.ADMIN:
        return
    if claims is None or not claims.mfa or not user.mfa_enabled:
        raise MfaRequired(
            "Admins must sign in with two-factor authentication: turn it on "
            "(/api/auth/mfa/setup, /api/auth/mfa/enable), then sign in again with a code."
        )


async def consume_totp(session: AsyncSession, user: User, otp: str) -> None:
    """Accept a code of the previous, current or next 30 s step, each step at most once.

    The step is recorded with a conditional UPDATE, so the same code cannot be used twice even
    by two concurrent requests.
    """
    if not user.mfa_secret or not otp.isdigit():
        raise InvalidOtp("The one-time code is wrong.")
    totp = pyotp.TOTP(user.mfa_secret)
    now_step = int(utcnow().timestamp()) // TOTP_PERIOD
    for step in (now_step, now_step - 1, now_step + 1):
        if not totp.verify(otp, for_time=step * TOTP_PERIOD, valid_window=0):
            continue
        result = await session.execute(
            update(User)
            .where(
                User.id == user.id,
                (User.mfa_last_step.is_(None)) | (User.mfa_last_step < step),
            )
            .values(mfa_last_step=step)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            user.mfa_last_step = step
            return
        raise InvalidOtp("This one-time code was already used; wait for the next one.")
    raise InvalidOtp("The one-time code is wrong.")


# --- profile and administration -------------------------------------------------------------


async def update_profile(
    session: AsyncSession,
    user: User,
    *,
    full_name: str | None,
    phone: str | None,
    notification_channels: Mapping[str, bool] | None = None,
    locale: str | None = None,
) -> User:
    """Name and phone; notification channels (`email`, `sms`, `in_app`: those given change)
    and language are kept by notifications."""
    if full_name is not None:
        user.full_name = full_name
    if phone is not None:
        user.phone = phone or None
    if notification_channels or locale is not None:
        channels = notification_channels or {}
        await notifications.set_preferences(
            session,
            user.id,
            email=channels.get("email"),
            sms=channels.get("sms"),
            in_app=channels.get("in_app"),
            locale=locale,
        )
    return user


async def list_users(
    session: AsyncSession, *, search: str | None, role: str | None, offset: int, limit: int
) -> tuple[list[User], int]:
    query = select(User)
    if search:
        query = query.where(func.lower(User.email).contains(search.lower(), autoescape=True))
    if role:
        query = query.where(User.role == role)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(query.order_by(User.created_at.desc()).offset(offset).limit(limit))
    return list(rows), total


async def set_role(session: AsyncSession, actor: User, user_id: uuid.UUID, role: str) -> User:
    if role not in Role.__members__.values():
        raise UnknownRole(f"Unknown role {role!r}; use one of {', '.join(Role)}.")
    user = await get_user(session, user_id)
    if user.role == Role.ADMIN and role != Role.ADMIN:
        # Lock the admins so two concurrent demotions cannot leave none.
        admins = (
            await session.scalars(select(User.id).where(User.role == Role.ADMIN).with_for_update())
        ).all()
        if len(admins) <= 1:
            raise Conflict("This is the last admin; appoint another one first.", code="last_admin")
    # Permissions are checked against the stored role on every request: effective at once.
    if user.role != role:
        audit.record(
            session,
            "user.role_changed",
            entity_type="user",
            entity_id=user.id,
            actor_kind=ActorKind.STAFF,
            actor_id=actor.id,
            data={"from": user.role, "to": role},
        )
    user.role = role
    return user


# ---------------------------------------------------------------------------------------------
# Who may act


def invalid_token() -> NotAuthenticated:
    return NotAuthenticated("The access token is invalid or expired.", code="invalid_token")


# Read by every signed-in request: a statement built once costs ~0.15 ms of CPU less than
# session.get, which builds its query on each call (the session is new: nothing to find in
# its identity map, which this fills for later gets).
_USER_BY_ID = select(User).where(User.id == bindparam("the_user"))


async def signed_in_user(session: AsyncSession, claims: AccessClaims) -> User:
    """The account behind verified claims: 401 if it is gone, inactive, or the token is from
    before a password change or a "sign out everywhere"."""
    return signed_in(await session.scalar(_USER_BY_ID, {"the_user": claims.user_id}), claims)


# The caller's account in a statement read past the ORM (core.pgdriver.SessionStatement) along
# with what the request needs, outer-joined on the caller's id: judged by `signed_in`.
CALLER = RowLoad(User, "caller_")


def signed_in(user: User | None, claims: AccessClaims) -> User:
    """`signed_in_user`'s verdict on the account of `claims.user_id` (None: no such account),
    for statements that read it along with what the request needs (booking.service,
    payments.service): 401 unless it exists, is active and the token is current."""
    if user is None or not user.is_active or not token_is_current(user, claims):
        raise invalid_token()
    return user


def check_may_book(user: User, settings: Settings) -> None:
    """With BOXOFFICE_REQUIRE_VERIFIED_EMAIL, only verified addresses may hold and book."""
    if settings.require_verified_email and user.email_verified_at is None:
        raise email_not_verified()


def email_not_verified() -> Forbidden:
    return Forbidden("Confirm your email address before booking.", code="email_not_verified")
