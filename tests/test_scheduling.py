"""Showtimes: scheduling rules, overlaps under concurrency, listings by local date, counts."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from boxoffice.scheduling.models import Showtime, ShowtimeSeat
from boxoffice.venues.models import Seat, Theater
from tests.factories import (
    INACTIVE,
    make_city,
    make_movie,
    make_screen,
    make_theater,
    seed_venue,
    set_seat_state,
)
from tests.helpers import TestUser, make_user


def at(days: int, hour: int = 18, minute: int = 0) -> dt.datetime:
    """A UTC time `days` ahead of today."""
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), dt.UTC)


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def create(
    client: httpx.AsyncClient,
    user: TestUser,
    venue: SimpleNamespace,
    start: dt.datetime,
    **extra: Any,
) -> httpx.Response:
    body = {
        "movieId": str(venue.movie_id),
        "screenId": str(venue.screen_id),
        "startTime": start.isoformat(),
        "basePrice": "10.00",
        **extra,
    }
    return await client.post("/api/admin/showtimes", json=body, headers=user.headers)


async def created(
    client: httpx.AsyncClient, user: TestUser, venue: SimpleNamespace, start: dt.datetime
) -> dict[str, Any]:
    response = await create(client, user, venue, start)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def inventory_count(app: FastAPI, showtime_id: str) -> int:
    async with app.state.db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ShowtimeSeat)
            .where(ShowtimeSeat.showtime_id == uuid.UUID(showtime_id))
        )
    return int(count or 0)


# ---------------------------------------------------------------------------------------------
# Creating


async def test_create_derives_end_time_currency_and_inventory(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    async with app.state.db.session() as session:
        city = await make_city(session)
        theater = await make_theater(
            session, city, currency="CHF", ads_minutes=10, cleaning_minutes=20
        )
        screen = await make_screen(
            session,
            theater,
            rows=3,
            seats_per_row=4,
            hall_type="IMAX",
            classes={"A1": INACTIVE, "C4": INACTIVE},
        )
        movie = await make_movie(session, duration=95)
        venue = SimpleNamespace(movie_id=movie.id, screen_id=screen.id)
        theater_id, inactive = theater.id, {"A1", "C4"}
    start = at(5, 19, 30)

    response = await create(
        client, admin, venue, start, basePrice="12.50", format="3D", language="en", subtitles="de"
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert parse(body["startTime"]) == start
    assert parse(body["endTime"]) == start + dt.timedelta(minutes=95 + 10 + 20)
    assert body["theaterId"] == str(theater_id)
    assert body["screenId"] == str(screen.id)
    assert body["movieId"] == str(movie.id)
    assert body["currency"] == "CHF"
    assert body["basePrice"] == "12.50"
    assert body["hallType"] == "IMAX"
    assert (body["format"], body["language"], body["subtitles"]) == ("3D", "en", "de")
    assert body["status"] == "scheduled"
    assert body["totalSeats"] == body["availableSeats"] == 10
    # One inventory row per active seat, none for the inactive ones.
    async with app.state.db.session() as session:
        labels = set(
            await session.scalars(
                select(Seat.label)
                .join(ShowtimeSeat, ShowtimeSeat.seat_id == Seat.id)
                .where(ShowtimeSeat.showtime_id == uuid.UUID(body["id"]))
            )
        )
    assert len(labels) == 10
    assert not labels & inactive
    fetched = await client.get(f"/api/showtimes/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_create_refuses_bad_input(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)

    past = await create(client, admin, venue, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    assert past.status_code == 422
    assert past.json()["code"] == "start_in_past"
    too_far = await create(client, admin, venue, at(800))
    assert too_far.status_code == 422
    assert too_far.json()["code"] == "start_too_far"
    naive = await create(client, admin, venue, at(3).replace(tzinfo=None))
    assert naive.status_code == 422
    for price in ("-1.00", "1.005", "abc"):
        response = await create(client, admin, venue, at(3), basePrice=price)
        assert response.status_code == 422, price
    for extreme in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:00-05:00"):
        body = {"movieId": str(venue.movie_id), "screenId": str(venue.screen_id)}
        body |= {"startTime": extreme, "basePrice": "10.00"}
        response = await client.post("/api/admin/showtimes", json=body, headers=admin.headers)
        assert response.status_code == 422, extreme
    bad_format = await create(client, admin, venue, at(3), format="8K")
    assert bad_format.status_code == 422
    unknown_field = await create(client, admin, venue, at(3), hall="x")
    assert unknown_field.status_code == 422

    other = SimpleNamespace(movie_id=uuid.uuid4(), screen_id=venue.screen_id)
    assert (await create(client, admin, other, at(3))).status_code == 404
    other = SimpleNamespace(movie_id=venue.movie_id, screen_id=uuid.uuid4())
    assert (await create(client, admin, other, at(3))).status_code == 404
    listing = await client.get("/api/admin/showtimes", headers=admin.headers)
    assert listing.json()["pagination"]["total"] == 0


async def test_start_with_offset_is_stored_in_utc(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)
    local = at(4, 18).astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))

    body = await created(client, admin, venue, local)

    assert parse(body["startTime"]) == at(4, 18)
    assert parse(body["startTime"]).utcoffset() == dt.timedelta(0)


async def test_showtime_creation_needs_schedule_permission(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    venue = await seed_venue(app)
    body = {
        "movieId": str(venue.movie_id),
        "screenId": str(venue.screen_id),
        "startTime": at(3).isoformat(),
        "basePrice": "10.00",
    }
    anonymous = await client.post("/api/admin/showtimes", json=body)
    assert anonymous.status_code == 401
    for role in ("customer", "cashier", "operator"):
        user = await make_user(app, role)
        response = await client.post("/api/admin/showtimes", json=body, headers=user.headers)
        assert response.status_code == 403, role
        listing = await client.get("/api/admin/showtimes", headers=user.headers)
        assert listing.status_code == 403, role
    admin = await make_user(app, "admin")
    assert (await client.post("/api/admin/showtimes", json=body, headers=admin.headers)).is_success


# ---------------------------------------------------------------------------------------------
# Overlaps


async def test_overlapping_showtime_on_the_same_screen_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app, duration=120)  # 120 + 15 ads + 15 cleaning = 150 minutes
    first = await created(client, admin, venue, at(3, 12))

    clash = await create(client, admin, venue, at(3, 13))
    assert clash.status_code == 409
    assert clash.json()["code"] == "screen_busy"
    assert clash.json()["conflictingShowtimeId"] == first["id"]
    inside_before = await create(client, admin, venue, at(3, 10))  # ends 12:30
    assert inside_before.status_code == 409

    # Back to back: touching at either end is no overlap.
    after = await create(client, admin, venue, parse(first["endTime"]))
    assert after.status_code == 201, after.text
    before = await create(client, admin, venue, at(3, 12) - dt.timedelta(minutes=150))
    assert before.status_code == 201, before.text
    assert parse(before.json()["endTime"]) == at(3, 12)

    # Another screen of the same theater is free at that time.
    async with app.state.db.session() as session:
        theater = await session.get(Theater, venue.theater_id)
        assert theater is not None
        other_screen = await make_screen(session, theater)
    other = SimpleNamespace(movie_id=venue.movie_id, screen_id=other_screen.id)
    assert (await create(client, admin, other, at(3, 13))).status_code == 201


async def test_cancelled_showtime_does_not_block_the_screen(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)
    first = await created(client, admin, venue, at(3, 12))

    cancel = await client.patch(
        f"/api/admin/showtimes/{first['id']}", json={"status": "cancelled"}, headers=admin.headers
    )
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"

    replacement = await create(client, admin, venue, at(3, 13))
    assert replacement.status_code == 201, replacement.text
    # Restoring the cancelled one now clashes with its replacement.
    restore = await client.patch(
        f"/api/admin/showtimes/{first['id']}", json={"status": "scheduled"}, headers=admin.headers
    )
    assert restore.status_code == 409
    assert restore.json()["conflictingShowtimeId"] == replacement.json()["id"]


async def test_concurrent_overlapping_creations_let_exactly_one_through(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)

    responses = await asyncio.gather(
        *(create(client, admin, venue, at(6, 15, 5 * i)) for i in range(10))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses if r.status_code >= 500]
    assert all(r.json()["code"] == "screen_busy" for r in responses if r.status_code == 409)
    listing = await client.get(
        "/api/admin/showtimes", params={"screenId": str(venue.screen_id)}, headers=admin.headers
    )
    assert listing.json()["pagination"]["total"] == 1


async def test_concurrent_creations_on_neighbouring_screens_all_succeed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # Screens of one theater sit next to each other in the showtimes index: scheduling on them
    # at once must neither block the wrong way round nor deadlock (MySQL range locks).
    admin = await make_user(app, "admin")
    async with app.state.db.session() as session:
        theater = await make_theater(session, await make_city(session))
        movie = await make_movie(session)
        screens = [
            (await make_screen(session, theater, rows=1, seats_per_row=2)).id for _ in range(8)
        ]

    for round_ in range(4):
        responses = await asyncio.gather(
            *(
                create(
                    client,
                    admin,
                    SimpleNamespace(movie_id=movie.id, screen_id=screen_id),
                    at(3 + (round_ * 7 + i) % 5, 1 + round_ * 3),
                )
                for i, screen_id in enumerate(screens)
            )
        )
        assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]


# ---------------------------------------------------------------------------------------------
# Updating and deleting


async def test_patch_moves_prices_and_refuses_clashes(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)
    show = await created(client, admin, venue, at(3, 12))
    later = await created(client, admin, venue, at(3, 18))
    url = f"/api/admin/showtimes/{show['id']}"

    # Moving by 30 minutes overlaps only its own old slot: allowed, end follows the start.
    moved = await client.patch(
        url, json={"startTime": at(3, 12, 30).isoformat()}, headers=admin.headers
    )
    assert moved.status_code == 200, moved.text
    assert parse(moved.json()["endTime"]) == at(3, 12, 30) + dt.timedelta(minutes=150)

    clash = await client.patch(
        url, json={"startTime": at(3, 17).isoformat()}, headers=admin.headers
    )
    assert clash.status_code == 409
    assert clash.json()["conflictingShowtimeId"] == later["id"]

    changed = await client.patch(
        url,
        json={"basePrice": "14.90", "format": "IMAX", "language": "fr", "subtitles": None},
        headers=admin.headers,
    )
    assert changed.status_code == 200
    body = changed.json()
    assert (body["basePrice"], body["format"], body["language"], body["subtitles"]) == (
        "14.90",
        "IMAX",
        "fr",
        None,
    )
    assert parse(body["startTime"]) == at(3, 12, 30)

    same_screen = await client.patch(
        url, json={"screenId": str(venue.screen_id)}, headers=admin.headers
    )
    assert same_screen.status_code == 200
    other_screen = await client.patch(
        url, json={"screenId": str(uuid.uuid4())}, headers=admin.headers
    )
    assert other_screen.status_code == 422
    assert other_screen.json()["code"] == "screen_change_not_allowed"
    past = await client.patch(
        url,
        json={"startTime": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()},
        headers=admin.headers,
    )
    assert past.status_code == 422
    assert past.json()["code"] == "start_in_past"
    for bad in ({}, {"startTime": None}, {"basePrice": None}, {"status": "open"}):
        response = await client.patch(url, json=bad, headers=admin.headers)
        assert response.status_code == 422, bad
    missing = await client.patch(
        f"/api/admin/showtimes/{uuid.uuid4()}", json={"basePrice": "1.00"}, headers=admin.headers
    )
    assert missing.status_code == 404
    fetched = await client.get(url, headers=admin.headers)
    assert fetched.json() == body


async def test_delete_without_sales_removes_inventory(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)
    show = await created(client, admin, venue, at(3))
    # An expired hold is no sale.
    await set_seat_state(
        app, show["id"], "A1", "held", held_until=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    )
    await set_seat_state(app, show["id"], "A2", "blocked")
    assert await inventory_count(app, show["id"]) == 40

    response = await client.delete(f"/api/admin/showtimes/{show['id']}", headers=admin.headers)

    assert response.status_code == 204
    assert await inventory_count(app, show["id"]) == 0
    assert (await client.get(f"/api/showtimes/{show['id']}")).status_code == 404
    again = await client.delete(f"/api/admin/showtimes/{show['id']}", headers=admin.headers)
    assert again.status_code == 404
    operator = await make_user(app, "operator")
    other = await created(client, admin, venue, at(4))
    forbidden = await client.delete(f"/api/admin/showtimes/{other['id']}", headers=operator.headers)
    assert forbidden.status_code == 403


async def test_showtime_with_sales_cannot_be_deleted_moved_or_cancelled(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)
    now = dt.datetime.now(dt.UTC)
    cases: dict[str, dict[str, Any]] = {
        "live hold": {"status": "held", "held_until": now + dt.timedelta(minutes=10)},
        "booked": {"status": "booked"},
        "expired hold of a booking": {
            "status": "held",
            "held_until": now - dt.timedelta(minutes=1),
            "booking_id": uuid.uuid4(),
        },
    }
    for day, (name, state) in enumerate(cases.items(), start=3):
        show = await created(client, admin, venue, at(day))
        await set_seat_state(app, show["id"], "C3", **state)
        url = f"/api/admin/showtimes/{show['id']}"

        deleted = await client.delete(url, headers=admin.headers)
        assert deleted.status_code == 409, name
        assert deleted.json()["code"] == "showtime_has_sales"
        moved = await client.patch(
            url, json={"startTime": at(day, 20).isoformat()}, headers=admin.headers
        )
        assert moved.status_code == 409, name
        assert moved.json()["code"] == "showtime_has_sales"
        cancelled = await client.patch(url, json={"status": "cancelled"}, headers=admin.headers)
        assert cancelled.status_code == 409, name
        # Still there, whole, unchanged; the price may still change.
        assert await inventory_count(app, show["id"]) == 40
        repriced = await client.patch(url, json={"basePrice": "11.00"}, headers=admin.headers)
        assert repriced.status_code == 200
        assert repriced.json()["startTime"] == show["startTime"]
        assert repriced.json()["status"] == "scheduled"


# ---------------------------------------------------------------------------------------------
# Public listings


async def test_movie_showtimes_by_day_in_each_theaters_timezone(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    async with app.state.db.session() as session:
        movie = await make_movie(session)
        la_city = await make_city(session, timezone="America/Los_Angeles")
        tokyo_city = await make_city(session, timezone="Asia/Tokyo")
        la_screen = await make_screen(session, await make_theater(session, la_city))
        tokyo_screen = await make_screen(session, await make_theater(session, tokyo_city))
    la, tokyo = ZoneInfo("America/Los_Angeles"), ZoneInfo("Asia/Tokyo")
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=10)
    next_day, previous_day = day + dt.timedelta(days=1), day - dt.timedelta(days=1)

    def local(zone: ZoneInfo, date: dt.date, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(date, dt.time(hour, minute), zone)

    async def schedule(screen_id: uuid.UUID, start: dt.datetime) -> str:
        venue = SimpleNamespace(movie_id=movie.id, screen_id=screen_id)
        return str((await created(client, admin, venue, start))["id"])

    la_morning = await schedule(la_screen.id, local(la, day, 8))
    la_late = await schedule(la_screen.id, local(la, day, 23, 30))  # next day in UTC
    tokyo_early = await schedule(tokyo_screen.id, local(tokyo, day, 0, 30))  # day before in UTC
    tokyo_next = await schedule(tokyo_screen.id, local(tokyo, next_day, 0, 30))  # `day` in UTC
    assert local(la, day, 23, 30).astimezone(dt.UTC).date() == next_day
    assert local(tokyo, day, 0, 30).astimezone(dt.UTC).date() == previous_day

    async def ids(date: dt.date | None) -> list[str]:
        params = {"date": date.isoformat()} if date else {}
        response = await client.get(f"/api/movies/{movie.id}/showtimes", params=params)
        assert response.status_code == 200, response.text
        return [show["id"] for show in response.json()["showtimes"]]

    assert await ids(day) == [tokyo_early, la_morning, la_late]
    assert await ids(next_day) == [tokyo_next]
    assert await ids(previous_day) == []
    starts = {
        tokyo_early: local(tokyo, day, 0, 30),
        la_morning: local(la, day, 8),
        tokyo_next: local(tokyo, next_day, 0, 30),
        la_late: local(la, day, 23, 30),
    }
    assert await ids(None) == sorted(starts, key=starts.__getitem__)  # by the UTC instant


async def test_movie_showtimes_filters(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await make_user(app, "admin")
    async with app.state.db.session() as session:
        movie = await make_movie(session)
        other_movie = await make_movie(session)
        city_a = await make_city(session, timezone="UTC")
        city_b = await make_city(session, timezone="UTC")
        theater_a1 = await make_theater(session, city_a)
        theater_a2 = await make_theater(session, city_a)
        theater_b = await make_theater(session, city_b)
        screens = {
            name: (await make_screen(session, theater)).id
            for name, theater in (("a1", theater_a1), ("a2", theater_a2), ("b", theater_b))
        }

    async def schedule(screen: str, start: dt.datetime, movie_id: uuid.UUID = movie.id) -> str:
        venue = SimpleNamespace(movie_id=movie_id, screen_id=screens[screen])
        return str((await created(client, admin, venue, start))["id"])

    a1 = await schedule("a1", at(5, 10))
    a2 = await schedule("a2", at(5, 11))
    b = await schedule("b", at(5, 12))
    await schedule("b", at(5, 20), other_movie.id)
    cancelled = await schedule("a1", at(5, 20))
    response = await client.patch(
        f"/api/admin/showtimes/{cancelled}", json={"status": "cancelled"}, headers=admin.headers
    )
    assert response.status_code == 200
    started = await schedule("a1", at(4, 10))
    async with app.state.db.session() as session:  # a showtime that began an hour ago
        past_start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
        await session.execute(
            update(Showtime)
            .where(Showtime.id == uuid.UUID(started))
            .values(start_time=past_start, end_time=past_start + dt.timedelta(minutes=150))
        )
    url = f"/api/movies/{movie.id}/showtimes"

    async def ids(**params: str) -> list[str]:
        response = await client.get(url, params=params)
        assert response.status_code == 200, response.text
        return [show["id"] for show in response.json()["showtimes"]]

    assert await ids() == [a1, a2, b]  # not started, not cancelled, this movie only
    assert await ids(cityId=str(theater_a1.city_id)) == [a1, a2]
    assert await ids(theaterId=str(theater_a2.id)) == [a2]
    assert await ids(cityId=str(city_b.id), theaterId=str(theater_a1.id)) == []
    assert await ids(date=at(5).date().isoformat(), cityId=str(city_a.id)) == [a1, a2]
    # With a date, the whole (UTC) day is listed, including what has started.
    assert started in await ids(date=past_start.date().isoformat())

    for params in ({"date": "2026-02-30"}, {"date": "tomorrow"}, {"theaterId": "x"}):
        assert (await client.get(url, params=params)).status_code == 422, params
    far = await client.get(url, params={"date": "0001-01-01"})
    assert far.status_code == 200
    assert far.json() == {"showtimes": []}
    unknown = await client.get(f"/api/movies/{uuid.uuid4()}/showtimes")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"


async def test_available_and_total_seats_follow_the_inventory(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)  # 5 x 8 = 40 seats
    show = await created(client, admin, venue, at(3))
    untouched = await created(client, admin, venue, at(4))
    now = dt.datetime.now(dt.UTC)
    await set_seat_state(app, show["id"], "A1", "held", held_until=now - dt.timedelta(seconds=1))
    await set_seat_state(app, show["id"], "A2", "held", held_until=now + dt.timedelta(minutes=5))
    await set_seat_state(app, show["id"], "A3", "booked", booking_id=uuid.uuid4())
    await set_seat_state(app, show["id"], "A4", "blocked")

    single = (await client.get(f"/api/showtimes/{show['id']}")).json()
    # Expired hold counts as available; live hold, sold and blocked seats do not; blocked
    # seats are not part of the total either.
    assert (single["availableSeats"], single["totalSeats"]) == (37, 39)
    listed = (await client.get(f"/api/movies/{venue.movie_id}/showtimes")).json()["showtimes"]
    counts = {s["id"]: (s["availableSeats"], s["totalSeats"]) for s in listed}
    assert counts == {show["id"]: (37, 39), untouched["id"]: (40, 40)}
    admin_list = await client.get("/api/admin/showtimes", headers=admin.headers)
    counts = {
        s["id"]: (s["availableSeats"], s["totalSeats"]) for s in admin_list.json()["showtimes"]
    }
    assert counts == {show["id"]: (37, 39), untouched["id"]: (40, 40)}


async def test_admin_list_is_paginated_and_filtered(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, "admin")
    venue = await seed_venue(app)
    other = await seed_venue(app)
    first = await created(client, admin, venue, at(3))
    second = await created(client, admin, venue, at(4))
    third = await created(client, admin, venue, at(5))
    elsewhere = await created(client, admin, other, at(3))
    await client.patch(
        f"/api/admin/showtimes/{third['id']}", json={"status": "cancelled"}, headers=admin.headers
    )

    async def page(**params: str) -> dict[str, Any]:
        response = await client.get("/api/admin/showtimes", params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    body = await page(screenId=str(venue.screen_id), limit="2")
    assert [s["id"] for s in body["showtimes"]] == [first["id"], second["id"]]
    assert body["pagination"] == {"page": 1, "limit": 2, "total": 3, "totalPages": 2}
    body = await page(screenId=str(venue.screen_id), limit="2", page="2")
    assert [s["id"] for s in body["showtimes"]] == [third["id"]]
    body = await page(theaterId=str(other.theater_id))
    assert [s["id"] for s in body["showtimes"]] == [elsewhere["id"]]
    body = await page(**{"from": at(4, 0).isoformat(), "to": at(5, 0).isoformat()})
    assert [s["id"] for s in body["showtimes"]] == [second["id"]]
    body = await page(status="cancelled")
    assert [s["id"] for s in body["showtimes"]] == [third["id"]]
    body = await page(movieId=str(other.movie_id))
    assert [s["id"] for s in body["showtimes"]] == [elsewhere["id"]]
    for bad in ({"from": "yesterday"}, {"limit": "101"}, {"status": "open"}, {"to": "0001-01-01"}):
        response = await client.get("/api/admin/showtimes", params=bad, headers=admin.headers)
        assert response.status_code == 422, bad
