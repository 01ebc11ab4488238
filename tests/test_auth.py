"""`/api/auth/*`: registration, login, tokens, email verification, password reset and MFA."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import re
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from boxoffice.accounts.models import AccountToken, RefreshToken
from boxoffice.core.clock import utcnow
from boxoffice.core.security import create_access_token
from tests.helpers import make_user

Outbox = Callable[[], list[Path]]

PASSWORD = "Velvet-Seats-Popcorn-7"
NEW_PASSWORD = "Matinee-Double-Feature-3"


# --- helpers ---------------------------------------------------------------------------------


async def register(
    client: httpx.AsyncClient, email_address: str = "alice@example.com", **extra: Any
) -> dict[str, Any]:
    body = {"email": email_address, "password": PASSWORD, "fullName": "Alice Smith", **extra}
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def login(
    client: httpx.AsyncClient,
    email_address: str = "alice@example.com",
    password: str = PASSWORD,
    otp: str | None = None,
) -> httpx.Response:
    body = {"email": email_address, "password": password}
    if otp is not None:
        body["otp"] = otp
    return await client.post("/api/auth/login", json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body


def read_mail(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def mail_token(message: EmailMessage) -> str:
    """The token of the link a verification or reset mail carries."""
    body = message.get_body(("plain",))
    assert body is not None
    match = re.search(r"[?&]token=([A-Za-z0-9_\-]+)", body.get_content())
    assert match, body.get_content()
    return match.group(1)


def mails_to(outbox: Outbox, address: str) -> list[EmailMessage]:
    return [m for m in map(read_mail, outbox()) if m["To"] == address]


async def expire_all(app: FastAPI, model: type[AccountToken] | type[RefreshToken]) -> None:
    async with app.state.db.session() as session:
        await session.execute(update(model).values(expires_at=utcnow() - dt.timedelta(seconds=1)))


# --- register --------------------------------------------------------------------------------


async def test_register_returns_user_and_working_tokens(client: httpx.AsyncClient) -> None:
    data = await register(client, "Alice.Smith@Example.COM", phone="+49 30 1234567")

    assert set(data) >= {"user", "accessToken", "refreshToken"}
    user = data["user"]
    assert user["email"] == "alice.smith@example.com"
    assert user["fullName"] == "Alice Smith"
    assert user["phone"] == "+49 30 1234567"
    assert user["role"] == "customer"
    assert user["emailVerified"] is False
    assert user["tier"]
    assert isinstance(user["points"], int)
    uuid.UUID(user["id"])
    assert not {"password", "passwordHash", "mfaSecret"} & set(user)

    me = await client.get("/api/me", headers=bearer(data["accessToken"]))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]
    refreshed = await client.post("/api/auth/refresh", json={"refreshToken": data["refreshToken"]})
    assert refreshed.status_code == 200


async def test_register_sends_verification_mail(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await register(client, "Bob@Example.com")

    mails = [read_mail(path) for path in outbox()]
    assert len(mails) == 1
    assert mails[0]["To"] == "bob@example.com"
    assert mail_token(mails[0])


@pytest.mark.parametrize("address", ["alice@example.com", "ALICE@Example.Com"])
async def test_register_taken_email_conflicts(client: httpx.AsyncClient, address: str) -> None:
    await register(client, "alice@example.com")

    response = await client.post(
        "/api/auth/register",
        json={"email": address, "password": NEW_PASSWORD, "fullName": "Alice Again"},
    )
    assert_problem(response, 409, "email_taken")


@pytest.mark.parametrize(
    "password",
    [
        "Short-1a",  # shorter than 10
        "password123",  # on the shipped list of common passwords
        "PASSWORD123",  # ... in any letter case
        "zebracorn-rocks-42",  # contains the email's local part
        "aaaaaaaaaaaa",  # too few distinct characters
    ],
)
async def test_register_refuses_weak_password(client: httpx.AsyncClient, password: str) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "zebracorn@example.com", "password": password, "fullName": "Zed"},
    )
    assert_problem(response, 422, "weak_password")
    # Nothing was stored: the address is still free.
    await register(client, "zebracorn@example.com")


@pytest.mark.parametrize("address", ["not-an-email", "alice@", "@example.com", "a b@example.com"])
async def test_register_refuses_bad_email(client: httpx.AsyncClient, address: str) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": address, "password": PASSWORD, "fullName": "Al"}
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "email"


async def test_register_refuses_unknown_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "eve@example.com", "password": PASSWORD, "fullName": "Eve", "role": "admin"},
    )
    assert_problem(response, 422, "validation_error")


async def test_concurrent_registration_of_one_email(client: httpx.AsyncClient) -> None:
    body = {"email": "race@example.com", "password": PASSWORD, "fullName": "Racer"}
    responses = await asyncio.gather(
        *(client.post("/api/auth/register", json=body) for _ in range(5))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "email_taken"
    assert (await login(client, "race@example.com")).status_code == 200


# --- login -----------------------------------------------------------------------------------


async def test_login_returns_user_and_tokens(client: httpx.AsyncClient) -> None:
    registered = await register(client)

    response = await login(client, "  ALICE@example.com ")
    assert response.status_code == 200
    data = response.json()
    assert data["user"]["id"] == registered["user"]["id"]
    assert data["refreshToken"] != registered["refreshToken"]
    me = await client.get("/api/me", headers=bearer(data["accessToken"]))
    assert me.json()["email"] == "alice@example.com"


async def test_login_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient,
) -> None:
    await register(client)

    wrong_password = await login(client, "alice@example.com", "Not-The-Password-1")
    unknown_email = await login(client, "nobody@example.com", "Not-The-Password-1")

    bodies = []
    for response in (wrong_password, unknown_email):
        body = assert_problem(response, 401, "invalid_credentials")
        body.pop("requestId", None)
        body.pop("instance", None)
        bodies.append(body)
        assert response.headers["www-authenticate"] == "Bearer"
    assert bodies[0] == bodies[1]


# --- access tokens ---------------------------------------------------------------------------


async def test_me_without_token_is_not_authenticated(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
async def test_me_with_garbage_token(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/api/me", headers=bearer(token))
    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_me_with_expired_token(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(app)
    expired = create_access_token(app.state.signing_key, user.id, user.role, -1)

    assert_problem(await client.get("/api/me", headers=bearer(expired)), 401, "invalid_token")
    assert (await client.get("/api/me", headers=user.headers)).status_code == 200


async def test_me_with_token_signed_by_another_key(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(app)
    forged = create_access_token(
        "another-secret-key-of-sufficient-length-0123", user.id, "admin", 900
    )

    assert_problem(await client.get("/api/me", headers=bearer(forged)), 401, "invalid_token")


async def test_token_of_a_deleted_user_is_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    token = create_access_token(app.state.signing_key, uuid.uuid4(), "admin", 900)
    assert_problem(await client.get("/api/me", headers=bearer(token)), 401, "invalid_token")


# --- refresh and logout ----------------------------------------------------------------------


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refreshToken": token})


async def test_refresh_rotates_the_token(client: httpx.AsyncClient) -> None:
    first = (await register(client))["refreshToken"]

    response = await refresh(client, first)
    assert response.status_code == 200
    data = response.json()
    assert set(data) >= {"accessToken", "refreshToken"}
    second = data["refreshToken"]
    assert second != first
    assert (await client.get("/api/me", headers=bearer(data["accessToken"]))).status_code == 200

    # The new one works in turn; the old one is spent.
    assert (await refresh(client, second)).status_code == 200
    assert (await refresh(client, first)).status_code == 401


async def test_reusing_a_spent_token_revokes_its_family(client: httpx.AsyncClient) -> None:
    first = (await register(client))["refreshToken"]
    other_login = (await login(client)).json()["refreshToken"]
    descendant = (await refresh(client, first)).json()["refreshToken"]

    assert_problem(await refresh(client, first), 401, "refresh_token_reused")

    # The revocation was stored although the request failed: the descendant is dead too.
    assert (await refresh(client, descendant)).status_code == 401
    # Another login is another family and keeps working.
    assert (await refresh(client, other_login)).status_code == 200


async def test_refresh_with_unknown_token(client: httpx.AsyncClient) -> None:
    assert_problem(await refresh(client, "no-such-token"), 401, "invalid_refresh_token")


async def test_refresh_with_expired_token(client: httpx.AsyncClient, app: FastAPI) -> None:
    token = (await register(client))["refreshToken"]
    await expire_all(app, RefreshToken)

    assert_problem(await refresh(client, token), 401, "invalid_refresh_token")


async def test_concurrent_refresh_with_one_token(client: httpx.AsyncClient) -> None:
    token = (await register(client))["refreshToken"]

    responses = await asyncio.gather(*(refresh(client, token) for _ in range(5)))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) <= 1, statuses
    assert set(statuses) <= {200, 401}, [r.text for r in responses]


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    data = await register(client)
    other = (await login(client)).json()["refreshToken"]

    response = await client.post("/api/auth/logout", json={"refreshToken": data["refreshToken"]})
    assert response.status_code == 204

    assert (await refresh(client, data["refreshToken"])).status_code == 401
    assert (await refresh(client, other)).status_code == 200


async def test_logout_after_rotation_ends_the_whole_session(client: httpx.AsyncClient) -> None:
    first = (await register(client))["refreshToken"]
    second = (await refresh(client, first)).json()["refreshToken"]

    assert (await client.post("/api/auth/logout", json={"refreshToken": first})).status_code == 204
    assert (await refresh(client, second)).status_code == 401


async def test_logout_with_unknown_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/logout", json={"refreshToken": "no-such-token"})
    assert response.status_code == 204


# --- email verification ----------------------------------------------------------------------


async def test_verify_email_with_mailed_token(client: httpx.AsyncClient, outbox: Outbox) -> None:
    data = await register(client)
    token = mail_token(mails_to(outbox, "alice@example.com")[0])

    response = await client.post("/api/auth/verify-email", json={"token": token})
    assert response.status_code == 204
    me = await client.get("/api/me", headers=bearer(data["accessToken"]))
    assert me.json()["emailVerified"] is True

    again = await client.post("/api/auth/verify-email", json={"token": token})
    assert_problem(again, 422, "invalid_token")


async def test_verify_email_with_unknown_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/verify-email", json={"token": "no-such-token"})
    assert_problem(response, 422, "invalid_token")


async def test_verify_email_with_expired_token(
    client: httpx.AsyncClient, app: FastAPI, outbox: Outbox
) -> None:
    data = await register(client)
    token = mail_token(mails_to(outbox, "alice@example.com")[0])
    await expire_all(app, AccountToken)

    response = await client.post("/api/auth/verify-email", json={"token": token})
    assert_problem(response, 422, "invalid_token")
    me = await client.get("/api/me", headers=bearer(data["accessToken"]))
    assert me.json()["emailVerified"] is False


async def test_reset_token_does_not_verify_as_email_token(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await register(client)
    assert (
        await client.post("/api/auth/password/forgot", json={"email": "alice@example.com"})
    ).status_code == 202
    reset_token = mail_token(mails_to(outbox, "alice@example.com")[-1])

    response = await client.post("/api/auth/verify-email", json={"token": reset_token})
    assert_problem(response, 422, "invalid_token")


async def test_resend_verification_mail(client: httpx.AsyncClient, outbox: Outbox) -> None:
    data = await register(client)
    first = mail_token(mails_to(outbox, "alice@example.com")[0])

    response = await client.post(
        "/api/auth/verify-email/resend", headers=bearer(data["accessToken"])
    )
    assert response.status_code == 202
    mails = mails_to(outbox, "alice@example.com")
    assert len(mails) == 2
    second = mail_token(mails[1])
    assert second != first

    assert (await client.post("/api/auth/verify-email", json={"token": second})).status_code == 204
    # Once verified, there is nothing to resend.
    await client.post("/api/auth/verify-email/resend", headers=bearer(data["accessToken"]))
    assert len(mails_to(outbox, "alice@example.com")) == 2


async def test_resend_verification_needs_a_user(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/verify-email/resend")
    assert_problem(response, 401, "not_authenticated")


# --- password forgot / reset -----------------------------------------------------------------


async def forgot(client: httpx.AsyncClient, address: str) -> httpx.Response:
    return await client.post("/api/auth/password/forgot", json={"email": address})


async def reset(client: httpx.AsyncClient, token: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/auth/password/reset", json={"token": token, "newPassword": password}
    )


async def test_forgot_password_answers_alike_and_mails_only_known_accounts(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await register(client)
    before = len(outbox())

    known = await forgot(client, "Alice@Example.com")
    unknown = await forgot(client, "nobody@example.com")

    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    new_mails = [read_mail(path) for path in outbox()[before:]]
    assert [m["To"] for m in new_mails] == ["alice@example.com"]
    assert mail_token(new_mails[0])


async def test_reset_password_with_mailed_token(client: httpx.AsyncClient, outbox: Outbox) -> None:
    data = await register(client)
    other_session = (await login(client)).json()["refreshToken"]
    await forgot(client, "alice@example.com")
    token = mail_token(mails_to(outbox, "alice@example.com")[-1])

    assert (await reset(client, token, NEW_PASSWORD)).status_code == 204

    assert_problem(await login(client, password=PASSWORD), 401, "invalid_credentials")
    fresh = await login(client, password=NEW_PASSWORD)
    assert fresh.status_code == 200
    # Every session from before the reset is signed out, its access tokens refused.
    for old in (data["refreshToken"], other_session):
        assert (await refresh(client, old)).status_code == 401
    stale = await client.get("/api/me", headers=bearer(data["accessToken"]))
    assert_problem(stale, 401, "invalid_token")
    # The mailbox owner proved the address.
    me = await client.get("/api/me", headers=bearer(fresh.json()["accessToken"]))
    assert me.json()["emailVerified"] is True

    # Single use.
    assert_problem(await reset(client, token, "Another-Fine-Password-8"), 422, "invalid_token")
    assert (await login(client, password=NEW_PASSWORD)).status_code == 200


async def test_weak_new_password_does_not_spend_the_token(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await register(client)
    await forgot(client, "alice@example.com")
    token = mail_token(mails_to(outbox, "alice@example.com")[-1])

    assert_problem(await reset(client, token, "password123"), 422, "weak_password")
    assert (await login(client, password=PASSWORD)).status_code == 200

    assert (await reset(client, token, NEW_PASSWORD)).status_code == 204
    assert (await login(client, password=NEW_PASSWORD)).status_code == 200


async def test_reset_with_expired_or_unknown_token(
    client: httpx.AsyncClient, app: FastAPI, outbox: Outbox
) -> None:
    await register(client)
    await forgot(client, "alice@example.com")
    token = mail_token(mails_to(outbox, "alice@example.com")[-1])
    await expire_all(app, AccountToken)

    assert_problem(await reset(client, token, NEW_PASSWORD), 422, "invalid_token")
    assert_problem(await reset(client, "no-such-token", NEW_PASSWORD), 422, "invalid_token")
    assert (await login(client, password=PASSWORD)).status_code == 200


async def test_verification_token_cannot_reset_the_password(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await register(client)
    verify_token = mail_token(mails_to(outbox, "alice@example.com")[0])

    assert_problem(await reset(client, verify_token, NEW_PASSWORD), 422, "invalid_token")


# --- MFA -------------------------------------------------------------------------------------


def wait_for_fresh_step() -> None:
    """Start MFA tests early in a 30 s step so "previous/current/next" stay what they were."""
    left = 30 - time.time() % 30
    if left < 8:
        time.sleep(left + 0.1)


def codes(secret: str) -> tuple[str, str, str]:
    """The codes of the previous, current and next time step."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    return totp.at(now - 30), totp.at(now), totp.at(now + 30)


def wrong_code(secret: str) -> str:
    valid = set(codes(secret))
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


async def setup_mfa(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post("/api/auth/mfa/setup", headers=headers)
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    return secret


async def test_mfa_setup_gives_a_provisioning_uri(client: httpx.AsyncClient) -> None:
    data = await register(client)

    response = await client.post("/api/auth/mfa/setup", headers=bearer(data["accessToken"]))
    assert response.status_code == 200
    body = response.json()
    uri = urlparse(body["otpauthUri"])
    assert body["otpauthUri"].startswith("otpauth://totp/")
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    query = parse_qs(uri.query)
    assert query["secret"] == [body["secret"]]
    assert query["issuer"] == ["boxoffice"]
    assert "alice@example.com" in unquote(uri.path)
    # Not on until a code proves the authenticator has the secret.
    me = await client.get("/api/me", headers=bearer(data["accessToken"]))
    assert me.json()["mfaEnabled"] is False
    assert (await login(client)).status_code == 200


async def test_mfa_enable_login_replay_and_disable(client: httpx.AsyncClient) -> None:
    wait_for_fresh_step()
    headers = bearer((await register(client))["accessToken"])
    secret = await setup_mfa(client, headers)
    previous, current, following = codes(secret)

    bad = await client.post(
        "/api/auth/mfa/enable", json={"otp": wrong_code(secret)}, headers=headers
    )
    assert_problem(bad, 401, "invalid_otp")
    assert (await login(client)).status_code == 200  # still off

    enabled = await client.post("/api/auth/mfa/enable", json={"otp": previous}, headers=headers)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["mfaEnabled"] is True

    assert_problem(await login(client), 401, "otp_required")
    assert_problem(await login(client, otp=wrong_code(secret)), 401, "invalid_otp")
    assert_problem(
        await login(client, password="Wrong-Password-99", otp=current), 401, "invalid_credentials"
    )
    # The code that enabled MFA was spent: a replay fails.
    assert_problem(await login(client, otp=previous), 401, "invalid_otp")

    response = await login(client, otp=current)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["mfaEnabled"] is True
    assert_problem(await login(client, otp=current), 401, "invalid_otp")  # replay

    again = await client.post("/api/auth/mfa/setup", headers=headers)
    assert_problem(again, 409, "mfa_enabled")

    bad_disable = await client.post("/api/auth/mfa/disable", json={"otp": current}, headers=headers)
    assert_problem(bad_disable, 401, "invalid_otp")
    disabled = await client.post("/api/auth/mfa/disable", json={"otp": following}, headers=headers)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["mfaEnabled"] is False
    assert (await login(client)).status_code == 200


async def test_mfa_enable_before_setup(client: httpx.AsyncClient) -> None:
    headers = bearer((await register(client))["accessToken"])

    response = await client.post("/api/auth/mfa/enable", json={"otp": "123456"}, headers=headers)
    assert_problem(response, 409, "mfa_not_set_up")


async def test_mfa_disable_when_off(client: httpx.AsyncClient) -> None:
    headers = bearer((await register(client))["accessToken"])

    response = await client.post("/api/auth/mfa/disable", json={"otp": "123456"}, headers=headers)
    assert_problem(response, 409, "mfa_not_enabled")


@pytest.mark.parametrize("otp", ["12345", "1234567", "abcdef"])
async def test_mfa_malformed_code(client: httpx.AsyncClient, otp: str) -> None:
    headers = bearer((await register(client))["accessToken"])
    await setup_mfa(client, headers)

    response = await client.post("/api/auth/mfa/enable", json={"otp": otp}, headers=headers)
    assert_problem(response, 422, "validation_error")


async def test_mfa_endpoints_need_a_user(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/api/auth/mfa/setup"), 401, "not_authenticated")


async def test_routes_taking_only_the_tokens_claims_read_the_bearer_scheme(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The hold, the release and the seat map take the token's claims only (TokenClaims,
    OptionalClaims: one dependency each) and answer as HTTPBearer does: no Authorization, a
    scheme other than Bearer or an empty token is anonymous (401 where a caller is needed;
    the seat map shows itself to anyone), a bearer token that does not verify is 401, and
    the API description names the bearer scheme for each."""
    from tests.booking_helpers import seed_showtime

    show = await seed_showtime(app, rows=1, seats_per_row=4)
    held_seats = {"showtimeId": show.showtime_id, "seatNumbers": ["A1"]}
    seat_map = f"/api/showtimes/{show.showtime_id}/seats"
    release = f"/api/bookings/lock-seats/{uuid.uuid4()}"
    for anonymous in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        held = await client.post("/api/bookings/lock-seats", json=held_seats, headers=anonymous)
        assert_problem(held, 401, "not_authenticated")
        assert_problem(await client.delete(release, headers=anonymous), 401, "not_authenticated")
        assert (await client.get(seat_map, headers=anonymous)).status_code == 200
    forged = {"Authorization": "Bearer not-a-token"}
    held = await client.post("/api/bookings/lock-seats", json=held_seats, headers=forged)
    assert_problem(held, 401, "invalid_token")
    assert_problem(await client.delete(release, headers=forged), 401, "invalid_token")
    assert_problem(await client.get(seat_map, headers=forged), 401, "invalid_token")

    customer = await make_user(app)
    held = await client.post("/api/bookings/lock-seats", json=held_seats, headers=customer.headers)
    assert held.status_code == 201, held.text
    mine = (await client.get(seat_map, headers=customer.headers)).json()
    assert [s["label"] for r in mine["rows"] for s in r["seats"] if s["heldByYou"]] == ["A1"]
    released = await client.delete(
        f"/api/bookings/lock-seats/{held.json()['lockToken']}", headers=customer.headers
    )
    assert released.status_code == 204

    paths = app.openapi()["paths"]
    for path, method in (
        ("/api/bookings/lock-seats", "post"),
        ("/api/bookings/lock-seats/{lock_token}", "delete"),
        ("/api/showtimes/{showtime_id}/seats", "get"),
    ):
        assert paths[path][method]["security"] == [{"HTTPBearer": []}], path
