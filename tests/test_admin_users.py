"""`/api/admin/users`: roles and their permissions; the `boxoffice users create` command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from boxoffice.accounts.models import RolePermission, RoleRow
from boxoffice.accounts.permissions import DEFAULT_GRANTS, Role
from tests.conftest import Backend
from tests.helpers import make_user
from tests.test_auth import assert_problem, login


async def set_role(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: uuid.UUID | str, role: str
) -> httpx.Response:
    return await client.patch(f"/api/admin/users/{user_id}", json={"role": role}, headers=headers)


# --- changing roles --------------------------------------------------------------------------


async def test_promotion_takes_effect_at_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin")
    customer = await make_user(app, "customer")
    assert_problem(await client.get("/api/admin/users", headers=customer.headers), 403, "forbidden")

    response = await set_role(client, admin.headers, customer.id, "admin")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(customer.id)
    assert response.json()["role"] == "admin"

    # The same access token (issued for a customer) now carries admin rights.
    response = await client.get("/api/admin/users", headers=customer.headers)
    assert response.status_code == 200
    me = await client.get("/api/me", headers=customer.headers)
    assert me.json()["role"] == "admin"


async def test_demotion_takes_effect_at_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    first = await make_user(app, "admin")
    second = await make_user(app, "admin")
    assert (await client.get("/api/admin/users", headers=second.headers)).status_code == 200

    response = await set_role(client, first.headers, second.id, "cashier")
    assert response.status_code == 200
    assert response.json()["role"] == "cashier"

    assert_problem(await client.get("/api/admin/users", headers=second.headers), 403, "forbidden")


@pytest.mark.parametrize("role", ["customer", "cashier", "operator"])
async def test_only_admins_manage_users(client: httpx.AsyncClient, app: FastAPI, role: str) -> None:
    caller = await make_user(app, role)
    victim = await make_user(app, "customer")

    assert_problem(await set_role(client, caller.headers, victim.id, "admin"), 403, "forbidden")
    assert_problem(await set_role(client, caller.headers, caller.id, "admin"), 403, "forbidden")
    assert_problem(await client.get("/api/admin/users", headers=caller.headers), 403, "forbidden")
    assert_problem(
        await client.get(f"/api/admin/users/{victim.id}", headers=caller.headers), 403, "forbidden"
    )
    assert (await client.get("/api/me", headers=caller.headers)).json()["role"] == role
    assert (await client.get("/api/me", headers=victim.headers)).json()["role"] == "customer"


async def test_user_admin_needs_a_user(client: httpx.AsyncClient, app: FastAPI) -> None:
    victim = await make_user(app)

    assert_problem(await client.get("/api/admin/users"), 401, "not_authenticated")
    response = await client.patch(f"/api/admin/users/{victim.id}", json={"role": "admin"})
    assert_problem(response, 401, "not_authenticated")


@pytest.mark.parametrize("role", ["superuser", "Admin", "owner"])
async def test_unknown_role(client: httpx.AsyncClient, app: FastAPI, role: str) -> None:
    admin = await make_user(app, "admin")
    customer = await make_user(app)

    assert_problem(await set_role(client, admin.headers, customer.id, role), 422, "unknown_role")
    assert (await client.get("/api/me", headers=customer.headers)).json()["role"] == "customer"


async def test_role_patch_validates_the_body(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin")
    customer = await make_user(app)
    url = f"/api/admin/users/{customer.id}"

    for body in ({}, {"role": ""}, {"role": "admin", "email": "x@example.com"}):
        response = await client.patch(url, json=body, headers=admin.headers)
        assert_problem(response, 422, "validation_error")


async def test_last_admin_cannot_be_demoted(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin")

    assert_problem(await set_role(client, admin.headers, admin.id, "operator"), 409, "last_admin")
    assert (await client.get("/api/me", headers=admin.headers)).json()["role"] == "admin"

    # With a second admin the first may step down.
    other = await make_user(app, "admin")
    assert (await set_role(client, admin.headers, admin.id, "operator")).status_code == 200
    assert_problem(await set_role(client, other.headers, other.id, "customer"), 409, "last_admin")


async def test_setting_the_same_role_on_the_last_admin(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")

    response = await set_role(client, admin.headers, admin.id, "admin")
    assert response.status_code == 200
    assert response.json()["role"] == "admin"


async def test_unknown_user(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin")
    missing = uuid.uuid4()

    assert_problem(await set_role(client, admin.headers, missing, "operator"), 404, "not_found")
    response = await client.get(f"/api/admin/users/{missing}", headers=admin.headers)
    assert_problem(response, 404, "not_found")
    response = await client.get("/api/admin/users/not-a-uuid", headers=admin.headers)
    assert_problem(response, 422, "validation_error")


async def test_get_one_user(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin")
    customer = await make_user(app, email="someone@example.com")

    response = await client.get(f"/api/admin/users/{customer.id}", headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["email"] == "someone@example.com"
    assert body["role"] == "customer"
    assert "passwordHash" not in body


# --- listing ---------------------------------------------------------------------------------


async def test_list_users_paginates(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin", email="boss@example.com")
    created = [await make_user(app, email=f"user-{n}@example.com") for n in range(5)]
    every_id = {str(admin.id)} | {str(u.id) for u in created}

    seen: list[str] = []
    for page in (1, 2, 3):
        response = await client.get(
            "/api/admin/users", params={"page": page, "limit": 2}, headers=admin.headers
        )
        assert response.status_code == 200
        body = response.json()
        assert body["pagination"] == {"page": page, "limit": 2, "total": 6, "totalPages": 3}
        assert len(body["users"]) == 2
        seen += [u["id"] for u in body["users"]]
    assert sorted(seen) == sorted(every_id)  # each user once

    beyond = await client.get("/api/admin/users", params={"page": 4}, headers=admin.headers)
    assert beyond.json()["users"] == []
    for params in ({"limit": 101}, {"limit": 0}, {"page": 0}):
        response = await client.get("/api/admin/users", params=params, headers=admin.headers)
        assert_problem(response, 422, "validation_error")


async def test_list_users_search_and_role_filter(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin", email="boss@example.com")
    await make_user(app, email="alice@example.com")
    await make_user(app, email="alina@example.org")
    cashier = await make_user(app, "cashier", email="bob@example.com")

    async def emails(**params: str) -> list[str]:
        response = await client.get("/api/admin/users", params=params, headers=admin.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["pagination"]["total"] == len(body["users"])
        return sorted(u["email"] for u in body["users"])

    assert await emails(search="ALI") == ["alice@example.com", "alina@example.org"]
    assert await emails(search="example.org") == ["alina@example.org"]
    assert await emails(search="%") == []  # a literal, not a wildcard
    assert await emails(search="_") == []
    assert await emails(role="cashier") == [cashier.email]
    assert await emails(role="admin", search="boss") == ["boss@example.com"]
    assert await emails(role="operator") == []


# --- the role → permission table -------------------------------------------------------------


async def test_role_permissions_table_matches_default_grants(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    async with app.state.db.session(write=False) as session:
        roles = set(await session.scalars(select(RoleRow.name)))
        rows = (await session.execute(select(RolePermission.role, RolePermission.permission))).all()
    stored: dict[str, set[str]] = {}
    for role, permission in rows:
        stored.setdefault(role, set()).add(permission)

    assert roles == {r.value for r in Role}
    assert set(stored) <= roles
    expected = {role.value: {p.value for p in perms} for role, perms in DEFAULT_GRANTS.items()}
    assert {role: stored.get(role, set()) for role in roles} == expected

    customer, cashier, operator, admin = (
        expected[r] for r in ("customer", "cashier", "operator", "admin")
    )
    assert admin >= operator >= cashier >= customer
    assert admin > operator > cashier  # each step adds something


# --- command line ----------------------------------------------------------------------------


def run_cli(backend: Backend, var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    env.update(
        BOXOFFICE_DATABASE_URL=backend.url,
        BOXOFFICE_VAR_DIR=str(var_dir),
        BOXOFFICE_LOG_LEVEL="WARNING",
    )
    command = [str(Path(sys.executable).parent / "boxoffice"), "users", "create", *args]
    # cwd: keep the repository's .env (if any) out of it.
    return subprocess.run(
        command, env=env, cwd=var_dir, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.backends("sqlite", "postgres")
async def test_cli_creates_a_user(
    client: httpx.AsyncClient, backend: Backend, tmp_path: Path
) -> None:
    result = await asyncio.to_thread(
        run_cli,
        backend,
        tmp_path,
        "--email",
        "Door.Keeper@Example.com",
        "--password",
        "Usher-Torch-Ticket-4",
        "--role",
        "operator",
    )
    assert result.returncode == 0, result.stderr
    assert "door.keeper@example.com" in result.stdout

    response = await login(client, "door.keeper@example.com", "Usher-Torch-Ticket-4")
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert user["role"] == "operator"
    assert user["emailVerified"] is True

    # Operators do not manage users.
    headers = {"Authorization": f"Bearer {response.json()['accessToken']}"}
    assert_problem(await client.get("/api/admin/users", headers=headers), 403, "forbidden")

    again = await asyncio.to_thread(
        run_cli,
        backend,
        tmp_path,
        "--email",
        "door.keeper@example.com",
        "--password",
        "Another-Usher-Torch-5",
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr


@pytest.mark.backends("sqlite", "postgres")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--password", "password123", "--role", "operator"), "common"),
        (("--password", "Usher-Torch-Ticket-4", "--role", "wizard"), "Unknown role"),
    ],
)
async def test_cli_refuses_bad_input(
    client: httpx.AsyncClient,
    backend: Backend,
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    result = await asyncio.to_thread(
        run_cli, backend, tmp_path, "--email", "weak@example.com", *args
    )
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert message in result.stderr
    assert_problem(await login(client, "weak@example.com", args[1]), 401, "invalid_credentials")
