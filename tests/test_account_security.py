"""Account protections: failed-login locks, sessions, password change and admin MFA."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, update

from boxoffice.accounts import lockout
from boxoffice.accounts.models import LoginFailure
from boxoffice.app import create_app
from boxoffice.audit.models import AuditEntry
from boxoffice.core.clock import utcnow
from tests.conftest import Backend, make_settings, reset_database
from tests.helpers import DEFAULT_PASSWORD, make_user
from tests.test_auth import (
    NEW_PASSWORD,
    PASSWORD,
    assert_problem,
    bearer,
    codes,
    mail_token,
    read_mail,
    register,
    wait_for_fresh_step,
)

WRONG = "Not-The-Password-42"
VICTIM = "alice@example.com"
# Small thresholds; the plain request rate limits are another feature's (and off here).
SETTINGS: dict[str, Any] = {
    "rate_limit_enabled": False,
    "login_max_failures": 3,
    "login_account_max_failures": 50,
    "login_ip_max_failures": 50,
    "login_lockout_base_seconds": 30,
}


class Site:
    """One app and HTTP clients on it from any client IP."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._clients: dict[str, httpx.AsyncClient] = {}

    def at(self, ip: str = "192.0.2.1") -> httpx.AsyncClient:
        if ip not in self._clients:
            self._clients[ip] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app, client=(ip, 40000)),
                base_url="http://testserver",
            )
        return self._clients[ip]

    async def close(self) -> None:
        for http in self._clients.values():
            await http.aclose()


SiteFactory = Callable[..., Awaitable[Site]]


@pytest.fixture
async def make_site(backend: Backend, tmp_path: Path) -> AsyncIterator[SiteFactory]:
    """An app with `SETTINGS` and the overrides given, on an emptied database."""
    stack: list[tuple[LifespanManager, Site]] = []

    async def factory(**overrides: Any) -> Site:
        settings = make_settings(backend, tmp_path / "var", **{**SETTINGS, **overrides})
        application = create_app(settings)
        manager = LifespanManager(application)
        await manager.__aenter__()
        if not stack:
            await reset_database(application)
        site = Site(application)
        stack.append((manager, site))
        return site

    yield factory
    for manager, site in reversed(stack):
        await site.close()
        await manager.__aexit__(None, None, None)


async def login(
    http: httpx.AsyncClient,
    email: str = VICTIM,
    password: str = PASSWORD,
    otp: str | None = None,
    user_agent: str = "pytest",
) -> httpx.Response:
    body = {"email": email, "password": password}
    if otp is not None:
        body["otp"] = otp
    return await http.post("/api/auth/login", json=body, headers={"User-Agent": user_agent})


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/api/auth/refresh", json={"refreshToken": token})


def assert_locked(response: httpx.Response) -> int:
    body = assert_problem(response, 429, "login_locked")
    wait = int(response.headers["retry-after"])
    assert wait >= 1
    assert body["retryAfter"] == wait
    return wait


async def fail(http: httpx.AsyncClient, email: str = VICTIM, times: int = 3) -> None:
    for _ in range(times):
        assert_problem(await login(http, email, WRONG), 401, "invalid_credentials")


async def audit_actions(app: FastAPI, prefix: str = "") -> list[AuditEntry]:
    async with app.state.db.session() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.startswith(prefix))
            .order_by(AuditEntry.created_at)
        )
        return list(rows)


async def end_locks(app: FastAPI) -> None:
    """As if the locks had run out."""
    async with app.state.db.session() as session:
        await session.execute(
            update(LoginFailure)
            .where(LoginFailure.locked_until.is_not(None))
            .values(locked_until=utcnow() - dt.timedelta(seconds=1))
        )


# --- failed-login locks ---------------------------------------------------------------------


async def test_failures_lock_the_pair_whatever_the_password(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    await register(http)

    await fail(http)

    assert_locked(await login(http))  # the right password, refused during the lock
    assert_locked(await login(http, password=WRONG))
    entries = await audit_actions(site.app, "auth.login_locked")
    assert len(entries) == 1
    assert entries[0].entity_type == "user"
    assert entries[0].data["scope"] == "pair"
    assert entries[0].data["ip"] == "192.0.2.1"


async def test_unknown_email_answers_exactly_like_a_known_one(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    await register(http)

    def shape(response: httpx.Response) -> tuple[Any, ...]:
        body = response.json()
        return (
            response.status_code,
            body["code"],
            body["title"],
            body.get("retryAfter"),
            response.headers.get("retry-after"),
            response.headers.get("www-authenticate"),
        )

    known = [shape(await login(http, VICTIM, WRONG)) for _ in range(4)]
    unknown = [shape(await login(http, "nobody@example.com", WRONG)) for _ in range(4)]

    assert known == unknown
    assert [s[0] for s in known] == [401, 401, 401, 429]


async def test_a_lock_expires_and_the_next_one_is_longer(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    await register(http)
    await fail(http)
    first = assert_locked(await login(http))
    assert first <= 30

    await end_locks(site.app)
    # Past the threshold each failure locks again, for twice as long.
    assert_problem(await login(http, password=WRONG), 401, "invalid_credentials")
    second = assert_locked(await login(http))
    assert 30 < second <= 60

    await end_locks(site.app)
    assert (await login(http)).status_code == 200


async def test_the_cap_bounds_every_lock(make_site: SiteFactory) -> None:
    site = await make_site(login_lockout_max_seconds=45)
    http = site.at()
    await register(http)
    await fail(http)
    for _ in range(4):
        await end_locks(site.app)
        assert_problem(await login(http, password=WRONG), 401, "invalid_credentials")
    assert assert_locked(await login(http)) <= 45


async def test_one_ip_failures_do_not_lock_the_victim_elsewhere(make_site: SiteFactory) -> None:
    site = await make_site()
    await register(site.at("10.0.0.1"))
    attacker = site.at("203.0.113.9")
    await fail(attacker)
    for _ in range(3):
        assert_locked(await login(attacker))

    victim = site.at("10.0.0.1")
    assert (await login(victim)).status_code == 200
    assert_problem(await login(victim, password=WRONG), 401, "invalid_credentials")


async def test_a_success_resets_the_pair(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    await register(http)

    await fail(http, times=2)
    assert (await login(http)).status_code == 200
    await fail(http, times=2)
    assert (await login(http)).status_code == 200


async def test_distributed_guessing_locks_the_account_but_not_its_known_ips(
    make_site: SiteFactory,
) -> None:
    site = await make_site(login_account_max_failures=4, login_max_failures=10)
    home = site.at("10.0.0.1")
    await register(home)
    assert (await login(home)).status_code == 200  # the account's own, trusted IP

    for n in range(4):
        await fail(site.at(f"203.0.113.{n}"), times=1)

    wait = assert_locked(await login(site.at("198.51.100.7")))  # right password, new IP
    assert wait <= 30
    assert (await login(home)).status_code == 200
    entries = await audit_actions(site.app, "auth.login_locked")
    assert [e.data["scope"] for e in entries] == ["account"]


async def test_credential_stuffing_locks_the_ip(make_site: SiteFactory) -> None:
    site = await make_site(login_ip_max_failures=4)
    await register(site.at("10.0.0.1"))
    stuffer = site.at("203.0.113.50")

    for n in range(4):
        await fail(stuffer, f"user{n}@example.com", times=1)

    assert_locked(await login(stuffer))  # a real account with its right password
    assert_locked(await login(stuffer, "someone-else@example.com", WRONG))
    assert (await login(site.at("10.0.0.1"))).status_code == 200
    entries = await audit_actions(site.app, "auth.login_locked")
    assert [(e.entity_type, e.entity_id) for e in entries] == [("ip", "203.0.113.50")]


async def test_a_loopback_peer_is_never_locked_as_an_address(make_site: SiteFactory) -> None:
    # A local proxy not yet named in BOXOFFICE_TRUSTED_PROXIES stands for every customer.
    site = await make_site(login_ip_max_failures=4)
    local = site.at("127.0.0.1")
    await register(local)

    for n in range(6):
        await fail(local, f"user{n}@example.com", times=1)

    assert (await login(local)).status_code == 200
    assert await audit_actions(site.app, "auth.login_locked") == []


async def test_wrong_one_time_codes_count_as_failures(make_site: SiteFactory) -> None:
    wait_for_fresh_step()
    site = await make_site()
    http = site.at()
    headers = bearer((await register(http))["accessToken"])
    secret = (await http.post("/api/auth/mfa/setup", headers=headers)).json()["secret"]
    previous, current, _ = codes(secret)
    enabled = await http.post("/api/auth/mfa/enable", json={"otp": previous}, headers=headers)
    assert enabled.status_code == 200, enabled.text

    for _ in range(3):
        assert_problem(await login(http, otp=previous), 401, "invalid_otp")  # spent code
    assert_locked(await login(http, otp=current))


async def test_password_reset_clears_the_locks(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    await register(http)
    await fail(http)
    assert_locked(await login(http))

    assert (await http.post("/api/auth/password/forgot", json={"email": VICTIM})).status_code == 202
    outbox: Path = site.app.state.settings.outbox_dir
    mails = [read_mail(p) for p in sorted(outbox.glob("*.eml"))]
    bodies = [(m, m.get_body(("plain",))) for m in mails]
    token = mail_token(
        [m for m, body in bodies if body is not None and "reset-password" in body.get_content()][-1]
    )
    reset = await http.post(
        "/api/auth/password/reset", json={"token": token, "newPassword": NEW_PASSWORD}
    )
    assert reset.status_code == 204, reset.text

    assert (await login(http, password=NEW_PASSWORD)).status_code == 200


async def test_stale_rows_are_purged(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    await register(http)
    await fail(http, "nobody@example.com", times=1)
    assert (await login(site.at("10.0.0.1"))).status_code == 200  # a trusted IP: kept
    async with site.app.state.db.session() as session:
        await session.execute(
            update(LoginFailure).values(window_started_at=utcnow() - dt.timedelta(hours=2))
        )

    await lockout.purge_once(site.app)

    async with site.app.state.db.session() as session:
        left = (await session.scalars(select(LoginFailure))).all()
    assert [(row.scope, row.ip) for row in left] == [("pair", "10.0.0.1")]


async def test_locks_can_be_turned_off(make_site: SiteFactory) -> None:
    site = await make_site(login_lockout_enabled=False)
    http = site.at()
    await register(http)
    await fail(http, times=5)
    assert (await login(http)).status_code == 200


# --- sessions -------------------------------------------------------------------------------


async def sessions(http: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await http.get("/api/me/sessions", headers=bearer(token))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["sessions"]
    return found


async def test_sessions_are_listed_with_the_current_one_marked(make_site: SiteFactory) -> None:
    site = await make_site()
    await register(site.at())
    phone = (await login(site.at("10.0.0.2"), user_agent="phone")).json()
    laptop = (await login(site.at("10.0.0.3"), user_agent="laptop")).json()
    rotated = (await refresh(site.at("10.0.0.4"), laptop["refreshToken"])).json()

    listed = await sessions(site.at(), rotated["accessToken"])

    assert len(listed) == 3  # the registration's, the phone's and the laptop's
    newest = listed[0]
    assert newest["current"] is True
    assert newest["ip"] == "10.0.0.4"  # where it was last used
    assert newest["userAgent"] is not None
    assert newest["lastUsedAt"] >= newest["createdAt"]
    assert [s["current"] for s in listed].count(True) == 1
    by_agent = {s["userAgent"]: s for s in listed}
    assert by_agent["phone"]["ip"] == "10.0.0.2"
    assert by_agent["phone"]["current"] is False
    assert set(newest) >= {"id", "createdAt", "lastUsedAt", "userAgent", "ip", "current"}
    assert phone["refreshToken"]


async def test_revoking_one_session(make_site: SiteFactory, app: FastAPI) -> None:
    site = await make_site()
    http = site.at()
    mine = await register(http)
    phone = (await login(http, user_agent="phone")).json()
    phone_id = next(
        s["id"] for s in await sessions(http, mine["accessToken"]) if s["userAgent"] == "phone"
    )

    response = await http.delete(
        f"/api/me/sessions/{phone_id}", headers=bearer(mine["accessToken"])
    )
    assert response.status_code == 204, response.text

    assert_problem(await refresh(http, phone["refreshToken"]), 401, "invalid_refresh_token")
    left = await sessions(http, mine["accessToken"])
    assert [(s["userAgent"], s["current"]) for s in left] == [(http.headers["user-agent"], True)]
    assert (await refresh(http, mine["refreshToken"])).status_code == 200
    again = await http.delete(f"/api/me/sessions/{phone_id}", headers=bearer(mine["accessToken"]))
    assert_problem(again, 404, "session_not_found")
    entries = await audit_actions(site.app, "auth.session_revoked")
    assert [e.data["sessionId"] for e in entries] == [phone_id]


async def test_another_users_session_is_not_found(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    alice = await register(http)
    bob = await register(http, "bob@example.com")
    bob_session = (await sessions(http, bob["accessToken"]))[0]["id"]

    response = await http.delete(
        f"/api/me/sessions/{bob_session}", headers=bearer(alice["accessToken"])
    )
    assert_problem(response, 404, "session_not_found")
    assert (await refresh(http, bob["refreshToken"])).status_code == 200


async def test_revoke_all_keeping_the_current_session(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    mine = await register(http)
    others = [(await login(http)).json() for _ in range(2)]

    response = await http.post(
        "/api/me/sessions/revoke-all",
        json={"keepCurrent": True},
        headers=bearer(mine["accessToken"]),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": 2}

    for other in others:
        assert_problem(await refresh(http, other["refreshToken"]), 401, "invalid_refresh_token")
    assert (await http.get("/api/me", headers=bearer(mine["accessToken"]))).status_code == 200
    assert (await refresh(http, mine["refreshToken"])).status_code == 200


async def test_revoke_all_signs_out_everywhere(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    mine = await register(http)
    other = (await login(http)).json()

    response = await http.post("/api/me/sessions/revoke-all", headers=bearer(mine["accessToken"]))
    assert response.json() == {"revoked": 2}

    for tokens in (mine, other):
        assert_problem(await refresh(http, tokens["refreshToken"]), 401, "invalid_refresh_token")
        stale = await http.get("/api/me", headers=bearer(tokens["accessToken"]))
        assert_problem(stale, 401, "invalid_token")
    fresh = (await login(http)).json()
    assert (await http.get("/api/me", headers=bearer(fresh["accessToken"]))).status_code == 200
    entries = await audit_actions(site.app, "auth.sessions_revoked")
    assert [e.data for e in entries] == [{"count": 2, "keepCurrent": False}]


# --- password change ------------------------------------------------------------------------


async def change_password(
    http: httpx.AsyncClient, token: str, current: str, new: str = NEW_PASSWORD
) -> httpx.Response:
    return await http.post(
        "/api/me/password",
        json={"currentPassword": current, "newPassword": new},
        headers=bearer(token),
    )


async def test_password_change_signs_out_every_session(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    mine = await register(http)
    other = (await login(site.at("10.0.0.9"))).json()

    assert (await change_password(http, mine["accessToken"], PASSWORD)).status_code == 204

    for tokens in (mine, other):
        assert_problem(await refresh(http, tokens["refreshToken"]), 401, "invalid_refresh_token")
        stale = await http.get("/api/me", headers=bearer(tokens["accessToken"]))
        assert_problem(stale, 401, "invalid_token")
    fresh = (await login(http, password=NEW_PASSWORD)).json()
    assert (await http.get("/api/me", headers=bearer(fresh["accessToken"]))).status_code == 200
    entries = await audit_actions(site.app, "user.password_changed")
    assert [e.data for e in entries] == [{"sessionsRevoked": 2}]


async def test_wrong_current_passwords_count_as_failed_logins(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    mine = await register(http)

    for _ in range(3):
        response = await change_password(http, mine["accessToken"], WRONG)
        assert_problem(response, 401, "invalid_credentials")
    assert_locked(await change_password(http, mine["accessToken"], PASSWORD))
    assert_locked(await login(http))


# --- admin MFA ------------------------------------------------------------------------------


async def test_admins_need_mfa_when_required(make_site: SiteFactory) -> None:
    wait_for_fresh_step()
    site = await make_site(require_admin_mfa=True)
    http = site.at()
    admin = await make_user(site.app, "admin", email="boss@example.com")

    plain = (await login(http, admin.email, DEFAULT_PASSWORD)).json()
    headers = bearer(plain["accessToken"])
    assert_problem(await http.get("/api/admin/users", headers=headers), 403, "mfa_required")
    assert (await http.get("/api/me", headers=headers)).status_code == 200

    secret = (await http.post("/api/auth/mfa/setup", headers=headers)).json()["secret"]
    previous, current, following = codes(secret)
    enabled = await http.post("/api/auth/mfa/enable", json={"otp": previous}, headers=headers)
    assert enabled.status_code == 200, enabled.text
    # This session was signed in without a code.
    assert_problem(await http.get("/api/admin/users", headers=headers), 403, "mfa_required")

    verified = (await login(http, admin.email, DEFAULT_PASSWORD, otp=current)).json()
    assert (
        await http.get("/api/admin/users", headers=bearer(verified["accessToken"]))
    ).status_code == 200
    rotated = (await refresh(http, verified["refreshToken"])).json()
    assert (
        await http.get("/api/admin/users", headers=bearer(rotated["accessToken"]))
    ).status_code == 200

    refused = await http.post(
        "/api/auth/mfa/disable", json={"otp": following}, headers=bearer(rotated["accessToken"])
    )
    assert_problem(refused, 403, "mfa_required")


async def test_admins_without_mfa_keep_their_powers_by_default(make_site: SiteFactory) -> None:
    site = await make_site()
    http = site.at()
    admin = await make_user(site.app, "admin", email="boss@example.com")

    plain = (await login(http, admin.email, DEFAULT_PASSWORD)).json()
    response = await http.get("/api/admin/users", headers=bearer(plain["accessToken"]))
    assert response.status_code == 200, response.text


async def test_admin_mfa_does_not_touch_other_roles(make_site: SiteFactory) -> None:
    site = await make_site(require_admin_mfa=True)
    http = site.at()
    operator = await make_user(site.app, "operator", email="op@example.com")

    plain = (await login(http, operator.email, DEFAULT_PASSWORD)).json()
    response = await http.get("/api/admin/analytics", headers=bearer(plain["accessToken"]))
    assert response.status_code == 200, response.text
