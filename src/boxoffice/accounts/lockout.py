"""Failed-login protection, counted in the database so every server process shares it.

Three keys count failures within a window (`login_failure_window_seconds`, restarted once it
has passed):

- the pair (account, IP): the guessing of one account's password from one address;
- the account across all IPs: a distributed guess at one account;
- the IP across all accounts: credential stuffing.

At its threshold a key is locked for `login_lockout_base_seconds`, and every further failure
in the window locks it again for twice as long, up to a cap. A lock answers 429
`login_locked` with `Retry-After` before the password is even checked, so it is no oracle and
costs no hashing. Unknown addresses are keyed and counted exactly like known ones.

Why an attacker cannot lock a victim out for good: every lock expires; the long (pair) lock
only stops the attacker's own address; the account-wide lock is short and does not apply to
an IP the account signed in from recently (`login_trusted_ip_days`); a password reset clears
the account's locks.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass

import structlog
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.exceptions import LoginLocked
from boxoffice.accounts.models import LoginFailure
from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.ratelimit import is_loopback
from boxoffice.core.security import hash_token

log = structlog.get_logger(__name__)

PAIR = "pair"
ACCOUNT = "account"
IP = "ip"


@dataclass(frozen=True)
class LoginSubject:
    """Who is trying to sign in: the hashed normalised email and the client IP."""

    account_key: str
    ip: str

    @classmethod
    def of(cls, email: str, ip: str) -> LoginSubject:
        return cls(account_key=hash_token(email), ip=ip[:64])

    def keys(self) -> list[tuple[str, str, str]]:
        """(scope, account_key, ip) in the one order rows are locked in (no deadlocks). A
        loopback peer gets no IP-wide key: it is this machine or an unconfigured local proxy
        standing for every client (see `ratelimit.counted_ip`)."""
        keys = [(ACCOUNT, self.account_key, ""), (PAIR, self.account_key, self.ip)]
        if not is_loopback(self.ip):
            keys.append((IP, "", self.ip))
        return keys


def _is(row: LoginFailure, scope: str, account_key: str, ip: str) -> bool:
    return (row.scope, row.account_key, row.ip) == (scope, account_key, ip)


async def _rows(
    session: AsyncSession, subject: LoginSubject, *, for_update: bool = False
) -> list[LoginFailure]:
    query = select(LoginFailure).where(
        (
            (LoginFailure.account_key == subject.account_key)
            & (LoginFailure.scope.in_((ACCOUNT, PAIR)))
            & (LoginFailure.ip.in_(("", subject.ip)))
        )
        | (
            (LoginFailure.scope == IP)
            & (LoginFailure.account_key == "")
            & (LoginFailure.ip == subject.ip)
        )
    )
    if for_update:
        query = query.with_for_update()
    return list((await session.scalars(query)).all())


def _trusted(pair: LoginFailure | None, settings: Settings, now: dt.datetime) -> bool:
    """The account signed in from this IP lately: account-wide locks do not apply to it."""
    return (
        pair is not None
        and pair.succeeded_at is not None
        and settings.login_trusted_ip_days > 0
        and now - pair.succeeded_at < dt.timedelta(days=settings.login_trusted_ip_days)
    )


async def check(session: AsyncSession, settings: Settings, subject: LoginSubject) -> None:
    """Refuse with 429 `login_locked` while any lock on the subject's keys lasts."""
    if not settings.login_lockout_enabled:
        return
    now = utcnow()
    rows = await _rows(session, subject)
    pair = next((r for r in rows if r.scope == PAIR), None)
    trusted = _trusted(pair, settings, now)
    until = [
        r.locked_until
        for r in rows
        if r.locked_until is not None
        and r.locked_until > now
        and not (r.scope == ACCOUNT and trusted)
    ]
    if until:
        wait = max(1, math.ceil((max(until) - now).total_seconds()))
        raise LoginLocked(
            f"Too many failed sign-ins; try again in {wait} seconds.",
            headers={"Retry-After": str(wait)},
            retryAfter=wait,
        )


async def _row(
    session: AsyncSession, rows: list[LoginFailure], scope: str, account_key: str, ip: str
) -> LoginFailure:
    """The key's row, locked; inserted when missing (a concurrent insert wins the race)."""
    found = next((r for r in rows if _is(r, scope, account_key, ip)), None)
    if found is not None:
        return found
    row = LoginFailure(scope=scope, account_key=account_key, ip=ip, failures=0, locks=0)
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
        return row
    except IntegrityError:
        existing = await session.scalar(
            select(LoginFailure)
            .where(
                LoginFailure.scope == scope,
                LoginFailure.account_key == account_key,
                LoginFailure.ip == ip,
            )
            .with_for_update()
        )
        assert existing is not None
        return existing


def _threshold_and_cap(settings: Settings, scope: str) -> tuple[int, int]:
    if scope == PAIR:
        return settings.login_max_failures, settings.login_lockout_max_seconds
    if scope == ACCOUNT:
        return settings.login_account_max_failures, settings.login_account_lockout_max_seconds
    return settings.login_ip_max_failures, settings.login_lockout_max_seconds


async def record_failure(
    session: AsyncSession,
    settings: Settings,
    subject: LoginSubject,
    *,
    user_id: uuid.UUID | None,
) -> None:
    """Count a failed sign-in on the subject's three keys; lock those at their threshold.

    The caller raises an error with `commit = True`, so the count is kept. Each new lock is
    audited.
    """
    if not settings.login_lockout_enabled:
        return
    now = utcnow()
    window = dt.timedelta(seconds=settings.login_failure_window_seconds)
    rows = await _rows(session, subject, for_update=True)
    for scope, account_key, ip in subject.keys():
        row = await _row(session, rows, scope, account_key, ip)
        locked = row.locked_until is not None and row.locked_until > now
        if now - row.window_started_at >= window and not locked:
            row.window_started_at, row.failures, row.locks = now, 0, 0
        row.failures += 1
        threshold, cap = _threshold_and_cap(settings, scope)
        if row.failures < threshold:
            continue
        seconds = min(cap, settings.login_lockout_base_seconds * 2 ** min(row.locks, 30))
        row.locked_until = now + dt.timedelta(seconds=seconds)
        row.locks += 1
        _audit_lock(session, row, subject, user_id=user_id, seconds=seconds)


def _audit_lock(
    session: AsyncSession,
    row: LoginFailure,
    subject: LoginSubject,
    *,
    user_id: uuid.UUID | None,
    seconds: int,
) -> None:
    data = {"scope": row.scope, "ip": subject.ip, "failures": row.failures, "seconds": seconds}
    if row.scope == IP:
        entity_type, entity_id = "ip", subject.ip
    elif user_id is not None:
        entity_type, entity_id = "user", str(user_id)
    else:  # an address without an account: named by its hash only
        entity_type, entity_id = "login", subject.account_key
    audit.record(
        session,
        "auth.login_locked",
        entity_type=entity_type,
        entity_id=entity_id,
        actor_kind=ActorKind.SYSTEM,
        data=data,
    )


async def record_success(session: AsyncSession, settings: Settings, subject: LoginSubject) -> None:
    """A correct sign-in resets its pair and marks the IP as trusted for the account. The
    account and IP counters go on: an attacker's successes must not wipe them."""
    if not settings.login_lockout_enabled:
        return
    # Only the pair's row is locked: successful sign-ins from one IP must not queue up.
    pair = await session.scalar(
        select(LoginFailure)
        .where(
            LoginFailure.scope == PAIR,
            LoginFailure.account_key == subject.account_key,
            LoginFailure.ip == subject.ip,
        )
        .with_for_update()
    )
    row = await _row(session, [pair] if pair else [], PAIR, subject.account_key, subject.ip)
    row.failures, row.locks, row.locked_until = 0, 0, None
    row.window_started_at = row.succeeded_at = utcnow()


async def clear_account(session: AsyncSession, email: str) -> None:
    """Forget the account's failures and locks, from every IP (after a password reset)."""
    await session.execute(
        delete(LoginFailure)
        .where(LoginFailure.account_key == hash_token(email), LoginFailure.scope != PAIR)
        .execution_options(synchronize_session=False)
    )
    # Pair rows keep the IPs the account trusts; only their counts and locks go.
    rows = await session.scalars(
        select(LoginFailure).where(
            LoginFailure.account_key == hash_token(email), LoginFailure.scope == PAIR
        )
    )
    for row in rows:
        row.failures, row.locks, row.locked_until = 0, 0, None


async def forget_account(session: AsyncSession, email: str) -> None:
    """Delete every row of the account, its trusted IPs included (for erasure)."""
    await session.execute(
        delete(LoginFailure)
        .where(LoginFailure.account_key == hash_token(email))
        .execution_options(synchronize_session=False)
    )


async def purge(session: AsyncSession, settings: Settings) -> int:
    """Delete rows that no longer count or lock anything and mark no trusted IP."""
    now = utcnow()
    stale = now - dt.timedelta(seconds=settings.login_failure_window_seconds)
    untrusted = now - dt.timedelta(days=settings.login_trusted_ip_days)
    result = await session.execute(
        delete(LoginFailure)
        .where(
            LoginFailure.window_started_at < stale,
            (LoginFailure.locked_until.is_(None)) | (LoginFailure.locked_until < now),
            (LoginFailure.succeeded_at.is_(None)) | (LoginFailure.succeeded_at < untrusted),
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_once(app: FastAPI) -> None:
    """The periodic job: drop rows that no longer matter (see `purge`)."""
    settings: Settings = app.state.settings
    async with app.state.db.session() as session:
        purged = await purge(session, settings)
    if purged:
        log.info("login_failures_purged", rows=purged)
