"""The audit log covers roles and schedules (money, prices, promo codes and contracts are
covered by their features' tests)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from fastapi import FastAPI

from tests.factories import seed_venue
from tests.helpers import TestUser, make_user


async def entries(
    client: httpx.AsyncClient, admin: TestUser, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get("/api/admin/audit-log", params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["entries"]
    return found


async def test_a_role_change_is_audited_with_who_and_what(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, role="admin")
    ann = await make_user(app)
    changed = await client.patch(
        f"/api/admin/users/{ann.id}", json={"role": "cashier"}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    # Setting the role it already has changes nothing and records nothing.
    again = await client.patch(
        f"/api/admin/users/{ann.id}", json={"role": "cashier"}, headers=admin.headers
    )
    assert again.status_code == 200
    found = await entries(client, admin, entityType="user", entityId=str(ann.id))
    assert [(e["action"], e["actorId"], e["data"]) for e in found] == [
        ("user.role_changed", str(admin.id), {"from": "customer", "to": "cashier"})
    ]


async def test_schedule_changes_are_audited(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, role="admin")
    venue = await seed_venue(app)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3)
    created = await client.post(
        "/api/admin/showtimes",
        json={
            "movieId": str(venue.movie_id),
            "screenId": str(venue.screen_id),
            "startTime": start.isoformat(),
            "basePrice": "10.00",
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    showtime_id = created.json()["id"]
    moved = start + dt.timedelta(hours=5)
    patched = await client.patch(
        f"/api/admin/showtimes/{showtime_id}",
        json={"startTime": moved.isoformat(), "basePrice": "12.50"},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    deleted = await client.delete(f"/api/admin/showtimes/{showtime_id}", headers=admin.headers)
    assert deleted.status_code == 204

    found = await entries(client, admin, entityType="showtime", entityId=showtime_id)
    assert [e["action"] for e in found] == [  # newest first
        "showtime.deleted",
        "showtime.updated",
        "showtime.created",
    ]
    assert {e["actorId"] for e in found} == {str(admin.id)}
    created_entry, updated_entry = found[2], found[1]
    assert created_entry["data"]["basePrice"] == "10.00"
    assert created_entry["data"]["movieId"] == str(venue.movie_id)
    assert updated_entry["data"]["basePrice"] == "12.50"
    assert dt.datetime.fromisoformat(updated_entry["data"]["startTime"]) == moved
