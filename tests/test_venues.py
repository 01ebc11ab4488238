"""Venues over HTTP: cities, theaters, screens with seat layouts, and their admin rules."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.venues.models import Seat
from boxoffice.venues.service import list_active_seats
from tests.helpers import make_user

GRID = {"grid": {"rows": 10, "seatsPerRow": 12}}


@pytest.fixture
async def admin(app: FastAPI) -> dict[str, str]:
    return (await make_user(app, "admin")).headers


async def new_city(
    client: httpx.AsyncClient, headers: dict[str, str], name: str = "Berlin", **extra: Any
) -> dict[str, Any]:
    body = {"name": name, "timezone": "Europe/Berlin", **extra}
    response = await client.post("/api/admin/cities", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def new_theater(
    client: httpx.AsyncClient, headers: dict[str, str], city_id: str, **extra: Any
) -> dict[str, Any]:
    body = {"cityId": city_id, "name": "Kino am Park", "currency": "EUR", **extra}
    response = await client.post("/api/admin/theaters", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def new_screen(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    theater_id: str,
    number: int = 1,
    layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = {
        "theaterId": theater_id,
        "screenNumber": number,
        "name": f"Saal {number}",
        "hallType": "STANDARD",
        "layout": layout or GRID,
    }
    response = await client.post("/api/admin/screens", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def a_theater(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    city = await new_city(client, headers)
    return await new_theater(client, headers, city["id"])


def labels(screen: dict[str, Any]) -> list[str]:
    return [seat["label"] for row in screen["rows"] for seat in row["seats"]]


async def add_showtime(app: FastAPI, screen: dict[str, Any]) -> uuid.UUID:
    """A showtime with its seat inventory, written through the models (as scheduling will)."""
    async with app.state.db.session() as session:
        movie = Movie(title="Test Film", duration_minutes=100)
        session.add(movie)
        await session.flush()
        start = utcnow() + dt.timedelta(days=1)
        showtime = Showtime(
            movie_id=movie.id,
            screen_id=uuid.UUID(screen["id"]),
            theater_id=uuid.UUID(screen["theaterId"]),
            start_time=start,
            end_time=start + dt.timedelta(hours=2),
            base_price=Decimal("10.00"),
            currency="EUR",
        )
        session.add(showtime)
        await session.flush()
        for seat in await list_active_seats(session, showtime.screen_id):
            session.add(ShowtimeSeat(showtime_id=showtime.id, seat_id=seat.id))
        return showtime.id


async def set_inventory(app: FastAPI, showtime_id: uuid.UUID, label: str, **values: Any) -> None:
    async with app.state.db.session() as session:
        seat_id = select(Seat.id).where(Seat.label == label).scalar_subquery()
        await session.execute(
            update(ShowtimeSeat)
            .where(ShowtimeSeat.showtime_id == showtime_id, ShowtimeSeat.seat_id == seat_id)
            .values(**values)
        )


async def inventory(app: FastAPI, showtime_id: uuid.UUID) -> dict[str, tuple[str, str | None]]:
    """label -> (status, blocked_reason) of a showtime's inventory rows."""
    async with app.state.db.session() as session:
        rows = await session.execute(
            select(Seat.label, ShowtimeSeat.status, ShowtimeSeat.blocked_reason)
            .join(Seat, Seat.id == ShowtimeSeat.seat_id)
            .where(ShowtimeSeat.showtime_id == showtime_id)
        )
        return {label: (status, reason) for label, status, reason in rows}


# ---------------------------------------------------------------------------------------------
# Who may do what


ADMIN_CALLS = [
    ("POST", "/api/admin/cities"),
    ("GET", "/api/admin/cities"),
    ("GET", f"/api/admin/cities/{uuid.uuid4()}"),
    ("PATCH", f"/api/admin/cities/{uuid.uuid4()}"),
    ("DELETE", f"/api/admin/cities/{uuid.uuid4()}"),
    ("POST", "/api/admin/theaters"),
    ("GET", "/api/admin/theaters"),
    ("PATCH", f"/api/admin/theaters/{uuid.uuid4()}"),
    ("DELETE", f"/api/admin/theaters/{uuid.uuid4()}"),
    ("POST", "/api/admin/screens"),
    ("GET", "/api/admin/screens"),
    ("PATCH", f"/api/admin/screens/{uuid.uuid4()}"),
    ("DELETE", f"/api/admin/screens/{uuid.uuid4()}"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
async def test_admin_routes_need_an_admin(
    client: httpx.AsyncClient, app: FastAPI, method: str, path: str
) -> None:
    body = {} if method in {"POST", "PATCH"} else None

    anonymous = await client.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    for role in ("customer", "cashier", "operator"):
        user = await make_user(app, role)
        response = await client.request(method, path, json=body, headers=user.headers)
        assert response.status_code == 403, role
        assert response.json()["code"] == "forbidden"


async def test_public_reads_need_no_token(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    theater = await a_theater(client, admin)
    screen = await new_screen(client, admin, theater["id"])

    for path in (
        "/api/cities",
        f"/api/cities/{theater['cityId']}",
        "/api/theaters",
        f"/api/theaters/{theater['id']}",
        f"/api/screens/{screen['id']}",
    ):
        assert (await client.get(path)).status_code == 200, path


# ---------------------------------------------------------------------------------------------
# Cities


async def test_city_crud(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    munich = await new_city(client, admin, "München", timezone="europe/berlin")
    berlin = await new_city(client, admin, "Berlin")
    assert munich["timezone"] == "Europe/Berlin"  # the canonical IANA spelling
    assert set(munich) == {"id", "name", "timezone"}

    listed = (await client.get("/api/cities")).json()
    assert [c["name"] for c in listed["cities"]] == ["Berlin", "München"]
    assert listed["pagination"] == {"page": 1, "limit": 20, "total": 2, "totalPages": 1}
    assert (await client.get(f"/api/cities/{berlin['id']}")).json() == berlin

    patched = await client.patch(
        f"/api/admin/cities/{munich['id']}",
        json={"name": "Munich", "timezone": "Europe/Vienna"},
        headers=admin,
    )
    assert patched.status_code == 200
    assert patched.json() == {"id": munich["id"], "name": "Munich", "timezone": "Europe/Vienna"}

    deleted = await client.delete(f"/api/admin/cities/{munich['id']}", headers=admin)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/cities/{munich['id']}")
    assert gone.status_code == 404
    assert gone.json()["code"] == "not_found"


async def test_city_names_are_unique_ignoring_case(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await new_city(client, admin, "Berlin")
    hamburg = await new_city(client, admin, "Hamburg")

    again = await client.post(
        "/api/admin/cities", json={"name": "BERLIN", "timezone": "UTC"}, headers=admin
    )
    assert again.status_code == 409
    assert again.json()["code"] == "city_exists"
    renamed = await client.patch(
        f"/api/admin/cities/{hamburg['id']}", json={"name": "berlin"}, headers=admin
    )
    assert renamed.status_code == 409
    assert renamed.json()["code"] == "city_exists"


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "CET+1", "../etc/passwd", "localtime"])
async def test_unknown_timezones_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], timezone: str
) -> None:
    created = await client.post(
        "/api/admin/cities", json={"name": "Nowhere", "timezone": timezone}, headers=admin
    )
    assert created.status_code == 422
    assert created.json()["code"] == "invalid_timezone"

    city = await new_city(client, admin)
    patched = await client.patch(
        f"/api/admin/cities/{city['id']}", json={"timezone": timezone}, headers=admin
    )
    assert patched.status_code == 422
    assert patched.json()["code"] == "invalid_timezone"
    theater = await client.post(
        "/api/admin/theaters",
        json={"cityId": city["id"], "name": "X", "currency": "EUR", "timezone": timezone},
        headers=admin,
    )
    assert theater.status_code == 422
    assert theater.json()["code"] == "invalid_timezone"


@pytest.mark.parametrize(
    "body",
    [{}, {"name": None}, {"name": ""}, {"name": "Ber\x00lin"}, {"population": 3}],
    ids=["empty", "null", "blank", "control-char", "unknown-field"],
)
async def test_bad_city_patches_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    city = await new_city(client, admin)
    response = await client.patch(f"/api/admin/cities/{city['id']}", json=body, headers=admin)
    assert response.status_code == 422
    assert (await client.get(f"/api/cities/{city['id']}")).json() == city


# ---------------------------------------------------------------------------------------------
# Theaters


async def test_theater_crud(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    city = await new_city(client, admin, "Lisbon", timezone="Europe/Lisbon")
    theater = await new_theater(
        client, admin, city["id"], name="Cinema Ideal", location="Rua do Loreto 15", currency="eur"
    )
    assert theater == {
        "id": theater["id"],
        "name": "Cinema Ideal",
        "location": "Rua do Loreto 15",
        "cityId": city["id"],
        "timezone": "Europe/Lisbon",  # the city's
        "currency": "EUR",
        "adsMinutes": 15,
        "cleaningMinutes": 15,
        "vatRate": "0.0000",
        "totalScreens": 0,
        "screens": [],
    }
    screen = await new_screen(client, admin, theater["id"])

    public = (await client.get(f"/api/theaters/{theater['id']}")).json()
    assert public["totalScreens"] == 1
    assert public["screens"] == [
        {
            "id": screen["id"],
            "theaterId": theater["id"],
            "screenNumber": 1,
            "name": "Saal 1",
            "hallType": "STANDARD",
            "capacity": 120,
        }
    ]

    patched = await client.patch(
        f"/api/admin/theaters/{theater['id']}",
        json={"name": "Ideal", "timezone": "Atlantic/Azores", "adsMinutes": 0, "currency": "usd"},
        headers=admin,
    )
    assert patched.status_code == 200
    body = patched.json()
    assert (body["name"], body["timezone"], body["adsMinutes"], body["currency"]) == (
        "Ideal",
        "Atlantic/Azores",
        0,
        "USD",
    )
    assert body["totalScreens"] == 1

    assert (
        await client.delete(f"/api/admin/screens/{screen['id']}", headers=admin)
    ).status_code == 204
    deleted = await client.delete(f"/api/admin/theaters/{theater['id']}", headers=admin)
    assert deleted.status_code == 204
    assert (await client.get(f"/api/theaters/{theater['id']}")).status_code == 404


async def test_theater_in_an_unknown_city(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await client.post(
        "/api/admin/theaters",
        json={"cityId": str(uuid.uuid4()), "name": "Ghost", "currency": "EUR"},
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_city"


async def test_theater_names_are_unique_within_a_city(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    berlin = await new_city(client, admin, "Berlin")
    hamburg = await new_city(client, admin, "Hamburg")
    await new_theater(client, admin, berlin["id"], name="Astor")
    await new_theater(client, admin, hamburg["id"], name="Astor")  # another city: fine

    again = await client.post(
        "/api/admin/theaters",
        json={"cityId": berlin["id"], "name": "astor", "currency": "EUR"},
        headers=admin,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "theater_exists"


@pytest.mark.parametrize("currency", ["EU", "EURO", "E1R", "€€€", ""])
async def test_invalid_currency_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str], currency: str
) -> None:
    city = await new_city(client, admin)
    response = await client.post(
        "/api/admin/theaters",
        json={"cityId": city["id"], "name": "X", "currency": currency},
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["code"] in {"invalid_currency", "validation_error"}


@pytest.mark.parametrize(
    "extra", [{"adsMinutes": -1}, {"cleaningMinutes": 121}, {"adsMinutes": "soon"}]
)
async def test_theater_minutes_are_bounded(
    client: httpx.AsyncClient, admin: dict[str, str], extra: dict[str, Any]
) -> None:
    city = await new_city(client, admin)
    response = await client.post(
        "/api/admin/theaters",
        json={"cityId": city["id"], "name": "X", "currency": "EUR", **extra},
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_a_theater_keeps_its_vat_rate(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    city = await new_city(client, admin)
    theater = await new_theater(client, admin, city["id"], vatRate="0.07")
    assert Decimal(theater["vatRate"]) == Decimal("0.07")
    changed = await client.patch(
        f"/api/admin/theaters/{theater['id']}", json={"vatRate": 0.19}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert Decimal(changed.json()["vatRate"]) == Decimal("0.19")
    for bad in ("1", "-0.01", "0.123456", "NaN"):
        response = await client.patch(
            f"/api/admin/theaters/{theater['id']}", json={"vatRate": bad}, headers=admin
        )
        assert response.status_code == 422, bad
        assert response.json()["code"] == "validation_error"
    unset = await new_theater(client, admin, city["id"], name="Kino ohne Steuer")
    assert Decimal(unset["vatRate"]) == 0


async def test_theater_list_counts_screens_and_filters_by_city(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    berlin = await new_city(client, admin, "Berlin")
    hamburg = await new_city(client, admin, "Hamburg")
    astor = await new_theater(client, admin, berlin["id"], name="Astor")
    babylon = await new_theater(client, admin, berlin["id"], name="Babylon")
    abaton = await new_theater(client, admin, hamburg["id"], name="Abaton")
    for number in (1, 2, 3):
        await new_screen(client, admin, babylon["id"], number)
    await new_screen(client, admin, abaton["id"])

    everything = (await client.get("/api/theaters")).json()
    assert [(t["name"], t["totalScreens"]) for t in everything["theaters"]] == [
        ("Abaton", 1),
        ("Astor", 0),
        ("Babylon", 3),
    ]
    assert everything["pagination"]["total"] == 3
    first = everything["theaters"][1]
    assert first == {k: v for k, v in astor.items() if k != "screens"}

    in_berlin = (await client.get("/api/theaters", params={"cityId": berlin["id"]})).json()
    assert [t["name"] for t in in_berlin["theaters"]] == ["Astor", "Babylon"]
    assert in_berlin["pagination"]["total"] == 2
    paged = (await client.get("/api/theaters", params={"limit": 1, "page": 3})).json()
    assert [t["name"] for t in paged["theaters"]] == ["Babylon"]


# ---------------------------------------------------------------------------------------------
# Screens and layouts


async def test_grid_screen_gets_lettered_rows(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    theater = await a_theater(client, admin)
    screen = await new_screen(client, admin, theater["id"])

    assert screen["capacity"] == 120
    assert screen["hallType"] == "STANDARD"
    assert [row["row"] for row in screen["rows"]] == list("ABCDEFGHIJ")
    assert labels(screen)[:3] == ["A1", "A2", "A3"]
    assert labels(screen)[-1] == "J12"
    assert len(set(labels(screen))) == 120
    first = screen["rows"][0]["seats"][0]
    assert set(first) == {"seatId", "label", "number", "class", "position", "active"}
    assert (first["class"], first["position"], first["active"]) == ("standard", 1, True)
    # The grid is stored expanded, in the form the admin can send back.
    assert len(screen["layout"]["rows"]) == 10
    assert screen["layout"]["rows"][0]["seats"][0] == {
        "number": 1,
        "class": "standard",
        "position": 1,
        "active": True,
    }
    assert (await client.get(f"/api/screens/{screen['id']}")).json() == screen


async def test_explicit_rows_with_aisles_and_inactive_seats(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    theater = await a_theater(client, admin)
    layout = {
        "rows": [
            {
                "row": "A",
                "seats": [
                    {"number": 1, "class": "wheelchair"},
                    {"number": 2, "class": "wheelchair"},
                    {"number": 3, "position": 5},
                    {"number": 4, "active": False},
                ],
            },
            {
                "row": "B",
                "seats": [{"number": 1, "class": "couple"}, {"number": 2, "class": "couple"}],
            },
        ]
    }
    response = await client.post(
        "/api/admin/screens",
        json={
            "theaterId": theater["id"],
            "screenNumber": 7,
            "name": "Studio",
            "hallType": "vip",
            "layout": layout,
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    screen = response.json()

    assert screen["capacity"] == 5
    assert screen["hallType"] == "VIP"
    row_a = screen["rows"][0]["seats"]
    assert [(s["label"], s["position"], s["active"], s["class"]) for s in row_a] == [
        ("A1", 1, True, "wheelchair"),
        ("A2", 2, True, "wheelchair"),
        ("A3", 5, True, "standard"),
        ("A4", 6, False, "standard"),
    ]
    assert [s["class"] for s in screen["rows"][1]["seats"]] == ["couple", "couple"]


INVALID_LAYOUTS = {
    "both forms": {
        "grid": {"rows": 1, "seatsPerRow": 1},
        "rows": [{"row": "A", "seats": [{"number": 1}]}],
    },
    "neither form": {},
    "no seats": {"rows": []},
    "empty row": {"rows": [{"row": "A", "seats": []}]},
    "duplicate row": {"rows": [{"row": "A", "seats": [{"number": 1}]}] * 2},
    "duplicate number": {"rows": [{"row": "A", "seats": [{"number": 1}, {"number": 1}]}]},
    "duplicate position": {
        "rows": [
            {"row": "A", "seats": [{"number": 1, "position": 3}, {"number": 2, "position": 3}]}
        ]
    },
    "bad row name": {"rows": [{"row": "A B", "seats": [{"number": 1}]}]},
    "number below 1": {"rows": [{"row": "A", "seats": [{"number": 0}]}]},
    "position below 1": {"rows": [{"row": "A", "seats": [{"number": 1, "position": 0}]}]},
    "too many rows": {"grid": {"rows": 101, "seatsPerRow": 1}},
    "too many seats in a row": {"grid": {"rows": 1, "seatsPerRow": 101}},
    "too many seats": {"grid": {"rows": 60, "seatsPerRow": 60}},
    "unknown class": {"rows": [{"row": "A", "seats": [{"number": 1, "class": "lounge"}]}]},
    "no active seat": {"rows": [{"row": "A", "seats": [{"number": 1, "active": False}]}]},
}


@pytest.mark.parametrize("layout", INVALID_LAYOUTS.values(), ids=INVALID_LAYOUTS.keys())
async def test_invalid_layouts_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], layout: dict[str, Any]
) -> None:
    theater = await a_theater(client, admin)
    body = {"theaterId": theater["id"], "screenNumber": 1, "name": "S", "hallType": "IMAX"}

    response = await client.post(
        "/api/admin/screens", json={**body, "layout": layout}, headers=admin
    )

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "invalid_layout"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["detail"]  # a human reason
    # Nothing was stored.
    assert (await client.get(f"/api/theaters/{theater['id']}")).json()["totalScreens"] == 0

    screen = await new_screen(client, admin, theater["id"], 2)
    patched = await client.patch(
        f"/api/admin/screens/{screen['id']}", json={"layout": layout}, headers=admin
    )
    assert patched.status_code == 422
    assert patched.json()["code"] == "invalid_layout"


@pytest.mark.parametrize(
    "changes",
    [
        {"layout": {"grid": {"rows": "many", "seatsPerRow": 3}}},
        {"layout": {"rows": [{"row": "A", "seats": [{"number": 1, "colour": "red"}]}]}},
        {"hallType": "DRIVE_IN"},
        {"screenNumber": 0},
        {"layout": "10x12"},
    ],
)
async def test_badly_shaped_screens_fail_validation(
    client: httpx.AsyncClient, admin: dict[str, str], changes: dict[str, Any]
) -> None:
    theater = await a_theater(client, admin)
    body = {
        "theaterId": theater["id"],
        "screenNumber": 1,
        "name": "S",
        "hallType": "IMAX",
        "layout": GRID,
    }
    response = await client.post("/api/admin/screens", json={**body, **changes}, headers=admin)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_screen_numbers_are_unique_within_a_theater(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    theater = await a_theater(client, admin)
    other = await new_theater(client, admin, theater["cityId"], name="Other")
    await new_screen(client, admin, theater["id"], 1)
    second = await new_screen(client, admin, theater["id"], 2)
    await new_screen(client, admin, other["id"], 1)  # another theater: fine

    again = await client.post(
        "/api/admin/screens",
        json={
            "theaterId": theater["id"],
            "screenNumber": 1,
            "name": "Again",
            "hallType": "STANDARD",
            "layout": GRID,
        },
        headers=admin,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "screen_number_taken"
    renumbered = await client.patch(
        f"/api/admin/screens/{second['id']}", json={"screenNumber": 1}, headers=admin
    )
    assert renumbered.status_code == 409
    assert renumbered.json()["code"] == "screen_number_taken"


async def test_screen_in_an_unknown_theater(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/admin/screens",
        json={
            "theaterId": str(uuid.uuid4()),
            "screenNumber": 1,
            "name": "S",
            "hallType": "STANDARD",
            "layout": GRID,
        },
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_theater"


async def test_admin_lists_screens_of_a_theater(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    theater = await a_theater(client, admin)
    other = await new_theater(client, admin, theater["cityId"], name="Other")
    for number in (2, 1):
        await new_screen(client, admin, theater["id"], number)
    await new_screen(client, admin, other["id"], 1)

    listed = await client.get(
        "/api/admin/screens", params={"theaterId": theater["id"]}, headers=admin
    )
    assert listed.status_code == 200
    assert [s["screenNumber"] for s in listed.json()["screens"]] == [1, 2]
    assert listed.json()["pagination"]["total"] == 2


async def test_patch_renames_and_relayouts_a_screen_without_showtimes(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    theater = await a_theater(client, admin)
    screen = await new_screen(client, admin, theater["id"])

    response = await client.patch(
        f"/api/admin/screens/{screen['id']}",
        json={
            "name": "Grand",
            "hallType": "IMAX",
            "layout": {"grid": {"rows": 2, "seatsPerRow": 3}},
        },
        headers=admin,
    )

    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["name"], patched["hallType"], patched["capacity"]) == ("Grand", "IMAX", 6)
    assert labels(patched) == ["A1", "A2", "A3", "B1", "B2", "B3"]
    assert (await client.get(f"/api/screens/{screen['id']}")).json() == patched


@pytest.mark.parametrize(
    "sale",
    [
        {"status": SeatStatus.BOOKED},
        {"status": SeatStatus.HELD, "held_until": "future"},
        {"status": SeatStatus.HELD, "held_until": None},
        {"status": SeatStatus.HELD, "held_until": "past", "booking_id": "set"},
    ],
    ids=["booked", "held", "held-without-expiry", "expired-hold-in-a-booking"],
)
async def test_layout_is_locked_once_seats_are_sold(
    client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI, sale: dict[str, Any]
) -> None:
    theater = await a_theater(client, admin)
    screen = await new_screen(client, admin, theater["id"])
    showtime_id = await add_showtime(app, screen)
    values = dict(sale)
    if "held_until" in values and values["held_until"] is not None:
        delta = dt.timedelta(minutes=5)
        values["held_until"] = utcnow() + (delta if values["held_until"] == "future" else -delta)
    if "booking_id" in values:
        values["booking_id"] = uuid.uuid4()
    await set_inventory(app, showtime_id, "F7", **values)

    response = await client.patch(
        f"/api/admin/screens/{screen['id']}",
        json={"layout": {"grid": {"rows": 2, "seatsPerRow": 2}}},
        headers=admin,
    )

    assert response.status_code == 409
    assert response.json()["code"] == "layout_locked"
    assert (await client.get(f"/api/screens/{screen['id']}")).json() == screen
    assert len(await inventory(app, showtime_id)) == 120
    # Other changes stay possible, also when the unchanged layout is sent along.
    renamed = await client.patch(
        f"/api/admin/screens/{screen['id']}",
        json={"name": "Renamed", "layout": screen["layout"]},
        headers=admin,
    )
    assert renamed.status_code == 200
    assert renamed.json() == {**screen, "name": "Renamed"}


async def test_new_layout_rebuilds_the_inventory_of_unsold_showtimes(
    client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI
) -> None:
    theater = await a_theater(client, admin)
    screen = await new_screen(client, admin, theater["id"])
    first = await add_showtime(app, screen)
    second = await add_showtime(app, screen)
    # An expired hold is no sale; an operator's block carries over to the seat's new self.
    await set_inventory(
        app, first, "A1", status=SeatStatus.HELD, held_until=utcnow() - dt.timedelta(minutes=1)
    )
    await set_inventory(app, first, "A2", status=SeatStatus.BLOCKED, blocked_reason="broken")
    await set_inventory(app, second, "J12", status=SeatStatus.BLOCKED, blocked_reason="camera")
    layout = {
        "rows": [
            {"row": "A", "seats": [{"number": 1}, {"number": 2}, {"number": 3, "active": False}]},
            {"row": "B", "seats": [{"number": 1}, {"number": 2, "position": 4}]},
        ]
    }

    response = await client.patch(
        f"/api/admin/screens/{screen['id']}", json={"layout": layout}, headers=admin
    )

    assert response.status_code == 200, response.text
    assert response.json()["capacity"] == 4
    assert await inventory(app, first) == {
        "A1": ("available", None),
        "A2": ("blocked", "broken"),
        "B1": ("available", None),
        "B2": ("available", None),
    }
    assert await inventory(app, second) == dict.fromkeys(
        ("A1", "A2", "B1", "B2"), ("available", None)
    )
    async with app.state.db.session() as session:
        seats = await session.scalar(
            select(func.count()).select_from(Seat).where(Seat.screen_id == uuid.UUID(screen["id"]))
        )
        # Inventory rows point at the new seats, which replaced the old ones.
        orphans = await session.scalar(
            select(func.count())
            .select_from(ShowtimeSeat)
            .outerjoin(Seat, Seat.id == ShowtimeSeat.seat_id)
            .where(Seat.id.is_(None))
        )
    assert seats == 5
    assert orphans == 0
    new_ids = {s["seatId"] for row in response.json()["rows"] for s in row["seats"]}
    assert not new_ids & {s["seatId"] for row in screen["rows"] for s in row["seats"]}


async def test_delete_refuses_venues_in_use(
    client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI
) -> None:
    theater = await a_theater(client, admin)
    screen = await new_screen(client, admin, theater["id"])
    idle = await new_screen(client, admin, theater["id"], 2)
    await add_showtime(app, screen)

    in_use = await client.delete(f"/api/admin/screens/{screen['id']}", headers=admin)
    assert in_use.status_code == 409
    assert in_use.json()["code"] == "screen_in_use"
    theater_in_use = await client.delete(f"/api/admin/theaters/{theater['id']}", headers=admin)
    assert theater_in_use.status_code == 409
    assert theater_in_use.json()["code"] == "theater_in_use"
    city_in_use = await client.delete(f"/api/admin/cities/{theater['cityId']}", headers=admin)
    assert city_in_use.status_code == 409
    assert city_in_use.json()["code"] == "city_in_use"

    assert (
        await client.delete(f"/api/admin/screens/{idle['id']}", headers=admin)
    ).status_code == 204
    assert (await client.get(f"/api/screens/{idle['id']}")).status_code == 404
    async with app.state.db.session() as session:
        left = await session.scalar(
            select(func.count()).select_from(Seat).where(Seat.screen_id == uuid.UUID(idle["id"]))
        )
    assert left == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/cities/{id}"),
        ("GET", "/api/theaters/{id}"),
        ("GET", "/api/screens/{id}"),
        ("PATCH", "/api/admin/cities/{id}"),
        ("PATCH", "/api/admin/theaters/{id}"),
        ("PATCH", "/api/admin/screens/{id}"),
        ("DELETE", "/api/admin/cities/{id}"),
        ("DELETE", "/api/admin/theaters/{id}"),
        ("DELETE", "/api/admin/screens/{id}"),
    ],
)
async def test_unknown_ids_are_404(
    client: httpx.AsyncClient, admin: dict[str, str], method: str, path: str
) -> None:
    body = {"name": "X"} if method == "PATCH" else None
    response = await client.request(method, path.format(id=uuid.uuid4()), json=body, headers=admin)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
