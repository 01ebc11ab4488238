"""`/api/me`: the caller's profile and password."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import DEFAULT_PASSWORD, make_user
from tests.test_auth import PASSWORD, assert_problem, login, refresh, register

NEW_PASSWORD = "Balcony-Row-Twelve-5"


async def test_get_me_shows_the_profile(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(app, "cashier", email="till@example.com")

    response = await client.get("/api/me", headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(user.id)
    assert body["email"] == "till@example.com"
    assert body["fullName"] == "Test Cashier"
    assert body["phone"] is None
    assert body["role"] == "cashier"
    assert body["emailVerified"] is True
    assert body["tier"] == "bronze"
    assert body["points"] == 0
    assert not {"password", "passwordHash", "mfaSecret"} & set(body)


async def test_patch_me_updates_name_and_phone(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(app)

    response = await client.patch(
        "/api/me",
        json={"fullName": "  Grace Hopper ", "phone": "+1 (555) 010-9999"},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["fullName"] == "Grace Hopper"
    assert response.json()["phone"] == "+1 (555) 010-9999"

    # Stored, and a partial update leaves the other field alone.
    response = await client.patch("/api/me", json={"full_name": "G. Hopper"}, headers=user.headers)
    assert response.status_code == 200
    body = (await client.get("/api/me", headers=user.headers)).json()
    assert body["fullName"] == "G. Hopper"
    assert body["phone"] == "+1 (555) 010-9999"

    # An empty phone clears it.
    response = await client.patch("/api/me", json={"phone": ""}, headers=user.headers)
    assert response.status_code == 200
    assert (await client.get("/api/me", headers=user.headers)).json()["phone"] is None


async def test_patch_me_with_empty_body(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(app)

    response = await client.patch("/api/me", json={}, headers=user.headers)
    assert_problem(response, 422, "empty_update")


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"email": "other@example.com"},
        {"fullName": "Mallory", "emailVerified": True},
    ],
)
async def test_patch_me_refuses_unknown_fields(
    client: httpx.AsyncClient, app: FastAPI, body: dict[str, Any]
) -> None:
    user = await make_user(app)

    response = await client.patch("/api/me", json=body, headers=user.headers)
    assert_problem(response, 422, "validation_error")
    after = (await client.get("/api/me", headers=user.headers)).json()
    assert after["role"] == "customer"
    assert after["email"] == user.email
    assert after["fullName"] == "Test Customer"


@pytest.mark.parametrize(
    "body",
    [
        {"phone": "call me maybe"},
        {"phone": "12"},
        {"phone": "+" + "1" * 40},
        {"fullName": ""},
        {"fullName": "   "},
        {"fullName": "x" * 201},
        {"fullName": 42},
    ],
)
async def test_patch_me_refuses_bad_values(
    client: httpx.AsyncClient, app: FastAPI, body: dict[str, Any]
) -> None:
    user = await make_user(app)

    response = await client.patch("/api/me", json=body, headers=user.headers)
    assert_problem(response, 422, "validation_error")


async def test_me_needs_a_user(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/me"), 401, "not_authenticated")
    assert_problem(await client.patch("/api/me", json={"fullName": "X"}), 401, "not_authenticated")


# --- change password -------------------------------------------------------------------------


async def change_password(
    client: httpx.AsyncClient, token: str, current: str, new: str
) -> httpx.Response:
    return await client.post(
        "/api/me/password",
        json={"currentPassword": current, "newPassword": new},
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_change_password(client: httpx.AsyncClient) -> None:
    data = await register(client)
    other_session = (await login(client)).json()["refreshToken"]

    response = await change_password(client, data["accessToken"], PASSWORD, NEW_PASSWORD)
    assert response.status_code == 204, response.text

    assert_problem(await login(client, password=PASSWORD), 401, "invalid_credentials")
    assert (await login(client, password=NEW_PASSWORD)).status_code == 200
    # Every refresh token from before the change is revoked.
    for old in (data["refreshToken"], other_session):
        assert (await refresh(client, old)).status_code == 401


async def test_change_password_with_wrong_current(client: httpx.AsyncClient) -> None:
    data = await register(client)

    response = await change_password(client, data["accessToken"], "Not-My-Password-1", NEW_PASSWORD)
    assert_problem(response, 401, "invalid_credentials")
    assert (await login(client, password=PASSWORD)).status_code == 200
    assert (await refresh(client, data["refreshToken"])).status_code == 200


async def test_change_password_to_a_weak_one(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(app, email="weakling@example.com")

    for weak in ("short", "password123", "my-weakling-pass"):
        response = await change_password(client, user.token, DEFAULT_PASSWORD, weak)
        assert_problem(response, 422, "weak_password")
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 200


async def test_change_password_needs_a_user(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/me/password", json={"currentPassword": "a", "newPassword": NEW_PASSWORD}
    )
    assert_problem(response, 401, "not_authenticated")
