"""Best available over HTTP (`POST /api/bookings/lock-best`): adjacent seats in one row near
the sweet spot (centre, about two thirds back), no stranded single seats when there is another
choice, wheelchair spaces only when asked, a real hold, and racing customers never share a
seat. The ranking itself is tested in test_best_available.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI

from tests.booking_helpers import book_hold, hold, pay, seat_statuses, seed_showtime
from tests.factories import row_letter, set_seat_state
from tests.helpers import TestUser, make_user

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


async def lock_best(
    client: httpx.AsyncClient, user: TestUser, showtime_id: str, quantity: int, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/bookings/lock-best",
        json={"showtimeId": showtime_id, "quantity": quantity, **extra},
        headers=user.headers,
    )


async def best_seats(
    client: httpx.AsyncClient, user: TestUser, showtime_id: str, quantity: int, **extra: Any
) -> list[str]:
    response = await lock_best(client, user, showtime_id, quantity, **extra)
    assert response.status_code == 201, response.text
    seats: list[str] = response.json()["lockedSeats"]
    return seats


def side_by_side(labels: list[str]) -> bool:
    """All in one row with consecutive numbers (the test halls have no aisles)."""
    parts = [re.fullmatch(r"([A-Z]+)(\d+)", label) for label in labels]
    assert all(parts), labels
    rows = {p[1] for p in parts if p}
    numbers = sorted(int(p[2]) for p in parts if p)
    return len(rows) == 1 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))


async def book_all(app: FastAPI, showtime_id: str, labels: list[str]) -> None:
    for label in labels:
        await set_seat_state(app, showtime_id, label, "booked")


def row(letter: str, numbers: range) -> list[str]:
    return [f"{letter}{n}" for n in numbers]


async def test_picks_the_centre_about_two_thirds_back_and_holds_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # Rows A..J (sweet row: two thirds of the way back = G), seats 1..12 (centre: 6 | 7).
    show = await seed_showtime(app, rows=10, seats_per_row=12)
    ann, bob = await make_user(app), await make_user(app)

    response = await lock_best(client, ann, show.showtime_id, 2)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["lockedSeats"] == ["G6", "G7"]
    assert body["showtimeId"] == show.showtime_id
    expires = dt.datetime.fromisoformat(body["expiresAt"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=590) < expires <= dt.timedelta(seconds=600)
    seats = await seat_statuses(client, show.showtime_id, ann.headers)
    assert seats["G6"]["status"] == seats["G7"]["status"] == "held"
    assert seats["G6"]["heldByYou"] is True
    assert (await hold(client, bob.headers, show.showtime_id, "G7")).status_code == 409

    # The hold books and pays like any other.
    booked = await book_hold(
        client, ann.headers, show.showtime_id, body["lockToken"], *body["lockedSeats"]
    )
    assert booked.status_code == 201, booked.text
    paid = await pay(client, ann.headers, booked.json()["paymentIntentId"])
    assert paid.json()["bookingStatus"] == "confirmed"


async def test_an_empty_hall_gives_centred_blocks(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app, rows=10, seats_per_row=12)
    users = [await make_user(app) for _ in range(2)]
    # Both on the empty hall: the first gives her four seats back before the second asks.
    four = await lock_best(client, users[0], show.showtime_id, 4)
    assert four.json()["lockedSeats"] == ["G5", "G6", "G7", "G8"]
    await client.delete(
        f"/api/bookings/lock-seats/{four.json()['lockToken']}", headers=users[0].headers
    )
    assert await best_seats(client, users[1], show.showtime_id, 1) in (["G6"], ["G7"])


async def test_a_new_best_hold_replaces_the_callers_old_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app, rows=10, seats_per_row=12)
    ann = await make_user(app)
    first = (await lock_best(client, ann, show.showtime_id, 2)).json()
    second = (await lock_best(client, ann, show.showtime_id, 2)).json()
    # Her own seats count as free again: the same best block, under a new token.
    assert second["lockedSeats"] == first["lockedSeats"] == ["G6", "G7"]
    assert second["lockToken"] != first["lockToken"]
    stale = await book_hold(client, ann.headers, show.showtime_id, first["lockToken"], "G6", "G7")
    assert stale.status_code == 410
    held = {
        label
        for label, s in (await seat_statuses(client, show.showtime_id)).items()
        if s["status"] == "held"
    }
    assert held == {"G6", "G7"}


async def test_with_the_best_block_taken_it_picks_the_next(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app, rows=10, seats_per_row=12)
    ann, bob = await make_user(app), await make_user(app)
    assert (await hold(client, bob.headers, show.showtime_id, "G6", "G7")).status_code == 201
    # G4-G5 is two seats off the centre; one row nearer the screen costs only 1.5 seats.
    assert await best_seats(client, ann, show.showtime_id, 2) == ["F6", "F7"]


async def test_never_strands_a_single_seat_when_there_is_another_choice(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # Rows A, B, C: the sweet row is B, whose only free seats are B3 B4 B5. Any pair there
    # leaves one of them alone between taken seats, so the pair goes to row C instead.
    show = await seed_showtime(app, rows=3, seats_per_row=8)
    ann, bob = await make_user(app), await make_user(app)
    await book_all(app, show.showtime_id, ["B1", "B2", "B6", "B7", "B8"])
    assert await best_seats(client, ann, show.showtime_id, 2) == ["C4", "C5"]

    # With rows A and C sold out, a stranding pair is better than nothing.
    await book_all(app, show.showtime_id, row("A", range(1, 9)) + row("C", range(1, 9)))
    pair = await best_seats(client, bob, show.showtime_id, 2)
    assert side_by_side(pair)
    assert set(pair) < {"B3", "B4", "B5"}
    assert (await best_seats(client, ann, show.showtime_id, 1)) in (["B3"], ["B5"])


async def test_wheelchair_spaces_only_when_asked(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app, classes={"D4": "wheelchair", "D5": "wheelchair"})
    ann, bob = await make_user(app), await make_user(app)

    plain = await best_seats(client, ann, show.showtime_id, 2)
    assert not {"D4", "D5"} & set(plain), plain
    assert side_by_side(plain)
    spaces = await lock_best(client, bob, show.showtime_id, 2, seatClass="wheelchair")
    assert spaces.json()["lockedSeats"] == ["D4", "D5"]
    await client.delete(
        f"/api/bookings/lock-seats/{spaces.json()['lockToken']}", headers=bob.headers
    )

    # Only the wheelchair spaces are left: nothing for a plain request.
    everything_else = [
        f"{row_letter(r)}{n}" for r in range(5) for n in range(1, 9) if r != 3 or n not in (4, 5)
    ]
    await book_all(app, show.showtime_id, everything_else)
    refused = await lock_best(client, bob, show.showtime_id, 1)
    assert refused.status_code == 409
    assert refused.json()["code"] == "no_seats_available"
    assert await best_seats(client, bob, show.showtime_id, 1, seatClass="wheelchair") == ["D4"]


async def test_a_wheelchair_space_comes_with_its_companion_seat(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app, classes={"D4": "wheelchair"})
    ann = await make_user(app)
    pair = await best_seats(client, ann, show.showtime_id, 2, seatClass="wheelchair")
    assert "D4" in pair
    assert side_by_side(pair)
    plain_hall = await seed_showtime(app)
    refused = await lock_best(client, ann, plain_hall.showtime_id, 1, seatClass="wheelchair")
    assert refused.status_code == 409
    assert refused.json()["code"] == "no_seats_available"


async def test_a_seat_class_gives_seats_of_that_class(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app, classes={"A1": "premium", "A2": "premium", "A3": "premium"})
    ann = await make_user(app)
    assert await best_seats(client, ann, show.showtime_id, 2, seatClass="Premium") in (
        ["A1", "A2"],
        ["A2", "A3"],
    )
    four = await lock_best(client, ann, show.showtime_id, 4, seatClass="premium")
    assert four.status_code == 409
    assert four.json()["code"] == "no_seats_available"


async def test_sold_out_or_no_adjacent_block_is_409(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app, rows=1, seats_per_row=4)
    ann, bob = await make_user(app), await make_user(app)
    assert (await hold(client, bob.headers, show.showtime_id, "A2", "A4")).status_code == 201
    apart = await lock_best(client, ann, show.showtime_id, 2)  # A1 and A3 are free, not adjacent
    assert apart.status_code == 409
    assert apart.json()["code"] == "no_seats_available"
    assert await best_seats(client, ann, show.showtime_id, 1) in (["A1"], ["A3"])

    await book_all(app, show.showtime_id, ["A1", "A3"])
    sold_out = await lock_best(client, ann, show.showtime_id, 1)
    assert sold_out.status_code == 409
    assert sold_out.json()["code"] == "no_seats_available"
    statuses = {s["status"] for s in (await seat_statuses(client, show.showtime_id)).values()}
    assert "available" not in statuses


async def test_bad_lock_best_requests(make_client: MakeClient, app: FastAPI) -> None:
    client = await make_client(max_seats_per_hold=3, sales_close_minutes=60)
    show = await seed_showtime(app)
    closing = await seed_showtime(app, starts_in=dt.timedelta(minutes=30))
    ann = await make_user(app)

    too_many = await lock_best(client, ann, show.showtime_id, 4)
    assert too_many.status_code == 422
    assert too_many.json()["code"] == "too_many_seats"
    for quantity in (0, -1):
        assert (await lock_best(client, ann, show.showtime_id, quantity)).status_code == 422
    closed = await lock_best(client, ann, closing.showtime_id, 1)
    assert closed.status_code == 409
    assert closed.json()["code"] == "showtime_closed"
    missing = await lock_best(client, ann, "00000000-0000-4000-8000-000000000000", 1)
    assert missing.status_code == 404
    anonymous = await client.post(
        "/api/bookings/lock-best", json={"showtimeId": show.showtime_id, "quantity": 1}
    )
    assert anonymous.status_code == 401
    assert {s["status"] for s in (await seat_statuses(client, show.showtime_id)).values()} == {
        "available"
    }


async def test_default_max_seats_per_hold(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app, rows=5, seats_per_row=12)
    ann = await make_user(app)
    assert (await lock_best(client, ann, show.showtime_id, 11)).status_code == 422
    assert len(await best_seats(client, ann, show.showtime_id, 10)) == 10


async def test_racing_customers_never_share_a_seat(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)  # 5 rows of 8
    users = [await make_user(app) for _ in range(10)]
    responses = await asyncio.gather(*(lock_best(client, u, show.showtime_id, 3) for u in users))
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {201, 409}, [r.text for r in responses if r.status_code not in {201, 409}]
    assert codes[201] >= 1
    assert all(r.json()["code"] == "no_seats_available" for r in responses if r.status_code == 409)
    blocks = [r.json()["lockedSeats"] for r in responses if r.status_code == 201]
    assert all(len(block) == 3 and side_by_side(block) for block in blocks), blocks
    held = [label for block in blocks for label in block]
    assert len(held) == len(set(held)), blocks
    seats = await seat_statuses(client, show.showtime_id)
    assert {label for label, s in seats.items() if s["status"] == "held"} == set(held)
