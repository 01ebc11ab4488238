"""The seat map of a showtime, seat prices, and blocking seats out of sale."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from boxoffice.accounts.models import User
from boxoffice.pricing.service import seat_price
from boxoffice.scheduling.schemas import SeatMapOut
from boxoffice.venues.models import Seat
from tests.factories import INACTIVE, seed_venue, set_seat_state
from tests.helpers import make_user


def future(days: int = 3) -> str:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=days)
    return start.isoformat()


async def make_showtime(
    client: httpx.AsyncClient, app: FastAPI, venue: SimpleNamespace, base_price: str = "10.00"
) -> str:
    admin = await make_user(app, "admin")
    response = await client.post(
        "/api/admin/showtimes",
        json={
            "movieId": str(venue.movie_id),
            "screenId": str(venue.screen_id),
            "startTime": future(),
            "basePrice": base_price,
        },
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def seat_states(client: httpx.AsyncClient, showtime_id: str) -> dict[str, str]:
    response = await client.get(f"/api/showtimes/{showtime_id}/seats")
    assert response.status_code == 200, response.text
    return {
        seat["label"]: seat["status"] for row in response.json()["rows"] for seat in row["seats"]
    }


async def counts(client: httpx.AsyncClient, showtime_id: str) -> tuple[int, int]:
    body = (await client.get(f"/api/showtimes/{showtime_id}")).json()
    return body["availableSeats"], body["totalSeats"]


def hours(n: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=n)


# ---------------------------------------------------------------------------------------------
# Seat map


async def test_seat_map_lists_rows_states_and_prices(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    venue = await seed_venue(
        app,
        hall_type="VIP",
        currency="GBP",
        rows=3,
        seats_per_row=4,
        classes={"A1": "premium", "A2": "couple", "C4": "wheelchair", "B1": INACTIVE},
    )
    async with app.state.db.session() as session:  # A1 moved to the far end of its row
        await session.execute(
            update(Seat)
            .where(Seat.screen_id == venue.screen_id, Seat.label == "A1")
            .values(position=99)
        )
    showtime_id = await make_showtime(client, app, venue, base_price="12.35")
    await set_seat_state(app, showtime_id, "A3", "held", held_until=hours(0.2))
    await set_seat_state(app, showtime_id, "A4", "held", held_until=hours(-0.01))
    await set_seat_state(app, showtime_id, "B2", "booked", booking_id=uuid.uuid4())
    await set_seat_state(app, showtime_id, "C1", "blocked")

    response = await client.get(f"/api/showtimes/{showtime_id}/seats")

    assert response.status_code == 200
    body = response.json()
    assert body["showtimeId"] == showtime_id
    assert body["screenId"] == str(venue.screen_id)
    assert (body["hallType"], body["currency"]) == ("VIP", "GBP")
    assert [row["row"] for row in body["rows"]] == ["A", "B", "C"]
    layout = {row["row"]: [seat["label"] for seat in row["seats"]] for row in body["rows"]}
    assert layout == {
        "A": ["A2", "A3", "A4", "A1"],  # by position, not by number
        "B": ["B2", "B3", "B4"],  # the inactive B1 is not for sale and not shown
        "C": ["C1", "C2", "C3", "C4"],
    }
    seats = {seat["label"]: seat for row in body["rows"] for seat in row["seats"]}
    assert seats["A1"] == {
        "seatId": seats["A1"]["seatId"],
        "label": "A1",
        "number": 1,
        "class": "premium",
        "position": 99,
        "status": "available",
        "price": "22.23",  # 12.35 x 1.5 (VIP hall) x 1.2 (premium) exactly
        "heldByYou": False,
    }
    assert {label: seat["status"] for label, seat in seats.items()} == {
        "A1": "available",
        "A2": "available",
        "A3": "held",
        "A4": "available",  # its hold has expired
        "B2": "booked",
        "B3": "available",
        "B4": "available",
        "C1": "blocked",
        "C2": "available",
        "C3": "available",
        "C4": "available",
    }
    assert seats["A2"]["price"] == "37.05"  # couple: 12.35 x 1.5 x 2
    assert seats["B3"]["price"] == "18.53"  # standard: 18.525 rounded half up
    assert seats["C4"]["price"] == "18.53"  # wheelchair seats cost as standard ones


async def test_seat_map_of_unknown_showtime(client: httpx.AsyncClient) -> None:
    missing = await client.get(f"/api/showtimes/{uuid.uuid4()}/seats")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert (await client.get(f"/api/showtimes/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/api/showtimes/not-a-uuid/seats")).status_code == 422


async def test_seat_map_refuses_a_bad_token_instead_of_answering_anonymously(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # An anonymous map reads no account; a token that comes must be valid.
    venue = await seed_venue(app, rows=2, seats_per_row=2)
    showtime_id = await make_showtime(client, app, venue)
    url = f"/api/showtimes/{showtime_id}/seats"
    customer = await make_user(app)
    assert (await client.get(url, headers=customer.headers)).status_code == 200

    forged = await client.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 401
    assert forged.headers["content-type"].startswith("application/problem+json")
    assert forged.json()["code"] == "invalid_token"
    assert (await client.get(url)).status_code == 200


@pytest.mark.parametrize("change", ["is_active", "password_changed_at", "sessions_revoked_at"])
async def test_seat_map_refuses_a_closed_account_or_stale_token(
    client: httpx.AsyncClient, app: FastAPI, change: str
) -> None:
    """The map checks a signed-in caller's account itself (in its one statement on
    PostgreSQL): a deactivated account, or a token issued before a password change or a "sign
    out everywhere", gets 401 as on every signed-in route, before the showtime is looked
    for. A password change or sign-out before the token was issued refuses nothing."""
    venue = await seed_venue(app, rows=2, seats_per_row=2)
    showtime_id = await make_showtime(client, app, venue)
    url = f"/api/showtimes/{showtime_id}/seats"
    customer = await make_user(app)
    if change != "is_active":
        earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        async with app.state.db.session() as session:
            await session.execute(
                update(User).where(User.id == customer.id).values({change: earlier})
            )
        assert (await client.get(url, headers=customer.headers)).status_code == 200
    value = False if change == "is_active" else dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    async with app.state.db.session() as session:
        await session.execute(update(User).where(User.id == customer.id).values({change: value}))

    refused = await client.get(url, headers=customer.headers)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_token")
    unknown = await client.get(f"/api/showtimes/{uuid.uuid4()}/seats", headers=customer.headers)
    assert (unknown.status_code, unknown.json()["code"]) == (401, "invalid_token")
    assert (await client.get(url)).status_code == 200
    # Another customer's fresh token still reads the map as themselves.
    other = await make_user(app)
    assert (await client.get(url, headers=other.headers)).status_code == 200


# ---------------------------------------------------------------------------------------------
# Blocking seats


async def test_block_and_unblock_are_all_or_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    venue = await seed_venue(app, classes={"E8": INACTIVE})  # 5 x 8, one inactive
    showtime_id = await make_showtime(client, app, venue)
    operator = await make_user(app, "operator")
    url = f"/api/admin/showtimes/{showtime_id}"
    assert await counts(client, showtime_id) == (39, 39)

    async def block(*labels: str, **extra: Any) -> httpx.Response:
        return await client.post(
            f"{url}/block-seats",
            json={"seatNumbers": list(labels), **extra},
            headers=operator.headers,
        )

    async def unblock(*labels: str) -> httpx.Response:
        return await client.post(
            f"{url}/unblock-seats", json={"seatNumbers": list(labels)}, headers=operator.headers
        )

    blocked = await block("A1", "A2", reason="broken recliner")
    assert blocked.status_code == 200, blocked.text
    assert blocked.json() == {"showtimeId": showtime_id, "seats": ["A1", "A2"], "status": "blocked"}
    assert await counts(client, showtime_id) == (37, 37)  # not sellable, not in the total

    # A2 is taken: nothing changes, the answer names A2 only.
    refused = await block("A3", "A2")
    assert refused.status_code == 409
    assert refused.json()["code"] == "seats_unavailable"
    assert refused.json()["seats"] == ["A2"]
    assert (await seat_states(client, showtime_id))["A3"] == "available"

    await set_seat_state(app, showtime_id, "B1", "held", held_until=hours(0.2))
    await set_seat_state(app, showtime_id, "B2", "booked", booking_id=uuid.uuid4())
    await set_seat_state(app, showtime_id, "B3", "held", held_until=hours(-0.01))
    refused = await block("B4", "B1", "B2")
    assert refused.status_code == 409
    assert refused.json()["seats"] == ["B1", "B2"]
    states = await seat_states(client, showtime_id)
    assert (states["B4"], states["B1"], states["B2"]) == ("available", "held", "booked")
    expired_hold = await block("B3")  # an expired hold is free
    assert expired_hold.status_code == 200
    assert (await seat_states(client, showtime_id))["B3"] == "blocked"

    unknown = await block("A4", "Z9", "E8")  # E8 exists but is inactive: not in this showtime
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_seats"
    assert unknown.json()["seats"] == ["Z9", "E8"]
    assert (await seat_states(client, showtime_id))["A4"] == "available"

    # Unblocking touches blocked seats only, also all or nothing.
    refused = await unblock("A1", "A3")
    assert refused.status_code == 409
    assert refused.json()["code"] == "seats_not_blocked"
    assert refused.json()["seats"] == ["A3"]
    assert (await seat_states(client, showtime_id))["A1"] == "blocked"
    released = await unblock("A1", "A2", "B3")
    assert released.status_code == 200
    assert released.json() == {
        "showtimeId": showtime_id,
        "seats": ["A1", "A2", "B3"],
        "status": "available",
    }
    states = await seat_states(client, showtime_id)
    assert {states[label] for label in ("A1", "A2", "B3")} == {"available"}
    assert await counts(client, showtime_id) == (37, 39)  # B1 held, B2 booked


async def test_block_seats_validation_and_permissions(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    venue = await seed_venue(app)
    showtime_id = await make_showtime(client, app, venue)
    url = f"/api/admin/showtimes/{showtime_id}/block-seats"
    body = {"seatNumbers": ["A1"]}

    assert (await client.post(url, json=body)).status_code == 401
    for role in ("customer", "cashier"):
        user = await make_user(app, role)
        response = await client.post(url, json=body, headers=user.headers)
        assert response.status_code == 403, role
        unblock = await client.post(
            f"/api/admin/showtimes/{showtime_id}/unblock-seats", json=body, headers=user.headers
        )
        assert unblock.status_code == 403, role
    assert (await seat_states(client, showtime_id))["A1"] == "available"

    admin = await make_user(app, "admin")
    bad_bodies: list[dict[str, Any]] = [
        {"seatNumbers": []},
        {},
        {"seatNumbers": ["A1\x00"]},
        {"seatNumbers": "A1"},
    ]
    for bad in bad_bodies:
        response = await client.post(url, json=bad, headers=admin.headers)
        assert response.status_code == 422, bad
    missing = await client.post(
        f"/api/admin/showtimes/{uuid.uuid4()}/block-seats", json=body, headers=admin.headers
    )
    assert missing.status_code == 404
    # Duplicates count once.
    twice = await client.post(url, json={"seatNumbers": ["A1", "A1"]}, headers=admin.headers)
    assert twice.status_code == 200
    assert twice.json()["seats"] == ["A1"]


# ---------------------------------------------------------------------------------------------
# Seat prices


@pytest.mark.parametrize(
    ("hall_type", "seat_class", "expected"),
    [
        ("STANDARD", "standard", "10.00"),
        ("VIP", "standard", "15.00"),
        ("IMAX", "standard", "14.00"),
        ("4DX", "standard", "16.00"),
        ("STANDARD", "premium", "12.00"),
        ("STANDARD", "vip", "15.00"),
        ("STANDARD", "wheelchair", "10.00"),
        ("STANDARD", "couple", "20.00"),
        ("VIP", "premium", "18.00"),
        ("4DX", "couple", "32.00"),
    ],
)
def test_seat_price_factors(hall_type: str, seat_class: str, expected: str) -> None:
    price = seat_price(Decimal("10.00"), hall_type, seat_class)
    assert price == Decimal(expected)
    assert price.as_tuple().exponent == -2


def test_seat_price_rounds_once_half_up() -> None:
    # 10.01 x 1.4 x 1.2 = 16.8168 -> 16.82; rounding after each factor would give 16.81.
    assert seat_price(Decimal("10.01"), "IMAX", "premium") == Decimal("16.82")
    # 0.03 x 1.5 = 0.045: half up gives 0.05 (banker's rounding would give 0.04).
    assert seat_price(Decimal("0.03"), "VIP", "standard") == Decimal("0.05")
    assert seat_price(Decimal("0"), "VIP", "couple") == Decimal("0.00")


def test_seat_price_refuses_unknown_factors() -> None:
    with pytest.raises(ValueError, match="GIANT"):
        seat_price(Decimal("10.00"), "GIANT", "standard")
    with pytest.raises(ValueError, match="sofa"):
        seat_price(Decimal("10.00"), "VIP", "sofa")


# ---------------------------------------------------------------------------------------------
# The rendered seat map (cached layout, spliced states)


async def test_seat_map_is_exactly_its_documented_schema(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The map is rendered from cached JSON fragments, not through the response model: it
    must still be what SeatMapOut documents, field for field."""
    venue = await seed_venue(app, rows=3, seats_per_row=4, classes={"C1": "premium"})
    showtime_id = await make_showtime(client, app, venue, base_price="9.99")
    customer = await make_user(app)
    held = await client.post(
        "/api/bookings/lock-seats",
        json={"showtimeId": showtime_id, "seatNumbers": ["B2"]},
        headers=customer.headers,
    )
    assert held.status_code == 201
    for headers in ({}, customer.headers):
        response = await client.get(f"/api/showtimes/{showtime_id}/seats", headers=headers)
        assert response.headers["content-type"] == "application/json"
        parsed = SeatMapOut.model_validate_json(response.content)
        assert response.json() == parsed.model_dump(mode="json", by_alias=True)
        seats = {seat.label: seat for row in parsed.rows for seat in row.seats}
        assert seats["B2"].status == "held"
        assert seats["B2"].held_by_you is bool(headers)
        assert seats["C1"].price == seat_price(Decimal("9.99"), "STANDARD", "premium")


async def test_seat_map_follows_price_and_layout_changes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue = await seed_venue(app, rows=2, seats_per_row=3)
    showtime_id = await make_showtime(client, app, venue, base_price="10.00")
    admin = await make_user(app, "admin")
    url = f"/api/showtimes/{showtime_id}/seats"

    def prices(body: dict[str, Any]) -> set[str]:
        return {seat["price"] for row in body["rows"] for seat in row["seats"]}

    assert prices((await client.get(url)).json()) == {"10.00"}  # now cached
    changed = await client.patch(
        f"/api/admin/showtimes/{showtime_id}", json={"basePrice": "12.00"}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert prices((await client.get(url)).json()) == {"12.00"}

    relaid = await client.patch(
        f"/api/admin/screens/{venue.screen_id}",
        json={"layout": {"grid": {"rows": 1, "seatsPerRow": 5}}},
        headers=admin.headers,
    )
    assert relaid.status_code == 200, relaid.text
    body = (await client.get(url)).json()
    assert [seat["label"] for row in body["rows"] for seat in row["seats"]] == [
        "A1",
        "A2",
        "A3",
        "A4",
        "A5",
    ]
