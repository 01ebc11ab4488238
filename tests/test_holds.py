"""Seat holds: all or nothing, never two holders, expiry as a predicate, extend and release."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from boxoffice.accounts.models import User
from boxoffice.booking import holds_postgres
from boxoffice.core.clock import utcnow
from boxoffice.scheduling.models import Showtime
from tests.booking_helpers import hold, hold_request, seat_statuses, seed_showtime
from tests.helpers import make_user


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def test_hold_is_all_or_nothing_and_names_taken_seats(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)

    first = await hold(client, ann.headers, show.showtime_id, "C4", "C5")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["lockedSeats"] == ["C4", "C5"]
    assert body["showtimeId"] == show.showtime_id
    expires = _parse(body["expiresAt"])
    assert (
        dt.timedelta(seconds=590) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=600)
    )

    clash = await hold(client, bob.headers, show.showtime_id, "C3", "C4")
    assert clash.status_code == 409
    assert clash.json()["code"] == "seats_unavailable"
    assert clash.json()["seats"] == ["C4"]

    seats = await seat_statuses(client, show.showtime_id, ann.headers)
    assert seats["C3"]["status"] == "available"  # not kept from the refused request
    assert seats["C4"]["status"] == seats["C5"]["status"] == "held"
    assert seats["C4"]["heldByYou"] is True
    assert (await seat_statuses(client, show.showtime_id, bob.headers))["C4"]["heldByYou"] is False
    showtime = (await client.get(f"/api/showtimes/{show.showtime_id}")).json()
    assert showtime["availableSeats"] == 40 - 2


async def test_bad_hold_requests(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    unknown = await hold(client, ann.headers, show.showtime_id, "A1", "Z99")
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_seats"
    assert unknown.json()["seats"] == ["Z99"]
    too_many = await hold(
        client, ann.headers, show.showtime_id, *[f"B{n}" for n in range(1, 9)], "C1", "C2", "C3"
    )
    assert too_many.status_code == 422
    assert too_many.json()["code"] == "too_many_seats"
    empty = await hold(client, ann.headers, show.showtime_id)
    assert empty.status_code == 422
    anonymous = await client.post(
        "/api/bookings/lock-seats", json={"showtimeId": show.showtime_id, "seatNumbers": ["A1"]}
    )
    assert anonymous.status_code == 401
    missing = await hold(client, ann.headers, "00000000-0000-4000-8000-000000000000", "A1")
    assert missing.status_code == 404


async def test_lowercase_and_repeated_labels_are_one_seat(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    response = await hold(client, ann.headers, show.showtime_id, "a1", "A1")
    assert response.status_code == 201
    assert response.json()["lockedSeats"] == ["A1"]


async def test_sales_close_before_the_start(
    make_client: Callable[..., Awaitable[httpx.AsyncClient]], app: FastAPI
) -> None:
    client = await make_client(sales_close_minutes=30)
    soon = await seed_showtime(app, starts_in=dt.timedelta(minutes=20))
    later = await seed_showtime(app, starts_in=dt.timedelta(minutes=40))
    ann = await make_user(app)
    closed = await hold(client, ann.headers, soon.showtime_id, "A1")
    assert closed.status_code == 409
    assert closed.json()["code"] == "showtime_closed"
    assert (await hold(client, ann.headers, later.showtime_id, "A1")).status_code == 201


async def test_a_new_hold_replaces_the_old_one(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)
    other = await seed_showtime(app)
    ann = await make_user(app)
    old = (await hold(client, ann.headers, show.showtime_id, "A1", "A2")).json()
    elsewhere = await hold(client, ann.headers, other.showtime_id, "A1")
    new = await hold(client, ann.headers, show.showtime_id, "A2", "A3")
    assert new.status_code == 201
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["A1"]["status"] == "available"
    assert seats["A2"]["status"] == seats["A3"]["status"] == "held"
    stale = await client.post(
        "/api/bookings/extend-lock", json={"lockToken": old["lockToken"]}, headers=ann.headers
    )
    assert stale.status_code == 410
    # A hold on another showtime is untouched.
    assert (await seat_statuses(client, other.showtime_id))["A1"]["status"] == "held"
    assert elsewhere.status_code == 201


async def test_an_expired_hold_is_free_for_everyone_without_a_sweeper(
    make_client: Callable[..., Awaitable[httpx.AsyncClient]], app: FastAPI
) -> None:
    client = await make_client(hold_ttl=1, expiry_interval_seconds=0)
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    assert (await hold(client, ann.headers, show.showtime_id, "B2", "B3")).status_code == 201
    await asyncio.sleep(1.2)
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["B2"]["status"] == "available"
    assert (await client.get(f"/api/showtimes/{show.showtime_id}")).json()["availableSeats"] == 40
    taken = await hold(client, bob.headers, show.showtime_id, "B3", "B4")
    assert taken.status_code == 201, taken.text


async def test_extend_is_bounded(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "D1")).json()["lockToken"]
    not_yours = await client.post(
        "/api/bookings/extend-lock", json={"lockToken": token}, headers=bob.headers
    )
    assert not_yours.status_code == 404
    lefts = []
    for _ in range(2):
        response = await client.post(
            "/api/bookings/extend-lock", json={"lockToken": token}, headers=ann.headers
        )
        assert response.status_code == 200, response.text
        lefts.append(response.json()["extensionsLeft"])
    assert lefts == [1, 0]
    third = await client.post(
        "/api/bookings/extend-lock", json={"lockToken": token}, headers=ann.headers
    )
    assert third.status_code == 409
    assert third.json()["code"] == "extension_limit"


async def test_extend_pushes_the_expiry_of_the_seats(
    make_client: Callable[..., Awaitable[httpx.AsyncClient]], app: FastAPI
) -> None:
    client = await make_client(hold_ttl=2, expiry_interval_seconds=0)
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    first = (await hold(client, ann.headers, show.showtime_id, "E1")).json()
    await asyncio.sleep(1.0)
    extended = await client.post(
        "/api/bookings/extend-lock", json={"lockToken": first["lockToken"]}, headers=ann.headers
    )
    assert extended.status_code == 200
    assert _parse(extended.json()["expiresAt"]) > _parse(first["expiresAt"])
    await asyncio.sleep(1.3)  # past the first expiry, inside the extended one
    assert (await hold(client, bob.headers, show.showtime_id, "E1")).status_code == 409
    await asyncio.sleep(1.0)
    late = await client.post(
        "/api/bookings/extend-lock", json={"lockToken": first["lockToken"]}, headers=ann.headers
    )
    assert late.status_code == 410
    assert late.json()["code"] == "hold_expired"


async def test_release_frees_the_seats_at_once(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A5", "A6")).json()["lockToken"]
    assert (
        await client.delete(f"/api/bookings/lock-seats/{token}", headers=bob.headers)
    ).status_code == 404
    unknown = await client.delete(f"/api/bookings/lock-seats/{uuid.uuid4()}", headers=ann.headers)
    assert unknown.status_code == 404
    for _ in range(2):  # releasing twice is harmless
        response = await client.delete(f"/api/bookings/lock-seats/{token}", headers=ann.headers)
        assert response.status_code == 204
    assert (await hold(client, bob.headers, show.showtime_id, "A5", "A6")).status_code == 201


async def test_racing_holds_never_share_a_seat(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Twelve customers grab overlapping pairs at once: every seat has at most one holder."""
    show = await seed_showtime(app)
    users = [await make_user(app) for _ in range(12)]
    wanted = [(f"C{n}", f"C{n + 1}") for n in range(1, 7)] * 2  # each pair asked twice
    responses = await asyncio.gather(
        *(
            hold(client, user.headers, show.showtime_id, *pair)
            for user, pair in zip(users, wanted, strict=True)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code >= 500]
    held = [seat for r in responses if r.status_code == 201 for seat in r.json()["lockedSeats"]]
    assert len(held) == len(set(held))
    seats = await seat_statuses(client, show.showtime_id)
    assert {label for label, s in seats.items() if s["status"] == "held"} == set(held)


@pytest.mark.parametrize("size", [4])
async def test_overlapping_holds_in_opposite_orders_do_not_deadlock(
    app: FastAPI, client: httpx.AsyncClient, size: int
) -> None:
    show = await seed_showtime(app)
    users = [await make_user(app) for _ in range(8)]
    row = [f"D{n}" for n in range(1, size + 1)]
    requests = [
        hold(client, user.headers, show.showtime_id, *(row if i % 2 else list(reversed(row))))
        for i, user in enumerate(users)
    ]
    responses = await asyncio.gather(*requests)
    codes = Counter(r.status_code for r in responses)
    assert codes[201] == 1, codes
    assert codes[409] == len(users) - 1, codes


async def test_verified_email_can_be_required_for_booking(
    make_client: Callable[..., Awaitable[httpx.AsyncClient]], app: FastAPI
) -> None:
    client = await make_client(require_verified_email=True)
    show = await seed_showtime(app)
    unverified = await make_user(app, verified=False)
    verified = await make_user(app)
    refused = await hold(client, unverified.headers, show.showtime_id, "A1")
    assert refused.status_code == 403
    assert refused.json()["code"] == "email_not_verified"
    assert (await hold(client, verified.headers, show.showtime_id, "A1")).status_code == 201


@pytest.mark.parametrize("change", ["is_active", "password_changed_at", "sessions_revoked_at"])
async def test_a_closed_account_or_stale_token_can_neither_hold_nor_release(
    app: FastAPI, client: httpx.AsyncClient, change: str
) -> None:
    """Hold and release read only the token's claims up front; the account is checked with
    the hold itself (in the same statement on PostgreSQL): a deactivated account, or a token
    issued before a password change or a "sign out everywhere", is refused (401) and changes
    nothing. A password change or sign-out before the token was issued refuses nothing."""
    show = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A1")).json()["lockToken"]
    if change != "is_active":  # a cutoff before the token's issue time: still the caller's
        earlier = utcnow() - dt.timedelta(minutes=5)
        async with app.state.db.session() as session:
            await session.execute(update(User).where(User.id == ann.id).values({change: earlier}))
        again = await hold(client, ann.headers, show.showtime_id, "A1")
        assert again.status_code == 201, again.text
        token = again.json()["lockToken"]
    value = False if change == "is_active" else utcnow() + dt.timedelta(minutes=1)
    async with app.state.db.session() as session:
        await session.execute(update(User).where(User.id == ann.id).values({change: value}))

    refused = await hold(client, ann.headers, show.showtime_id, "A2")
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_token"
    release = await client.delete(f"/api/bookings/lock-seats/{token}", headers=ann.headers)
    assert release.status_code == 401
    assert release.json()["code"] == "invalid_token"
    # The account is judged before the hold is looked for, on every backend.
    unknown = await client.delete(f"/api/bookings/lock-seats/{uuid.uuid4()}", headers=ann.headers)
    assert (unknown.status_code, unknown.json()["code"]) == (401, "invalid_token")
    seats = await seat_statuses(client, show.showtime_id)
    assert (seats["A1"]["status"], seats["A2"]["status"]) == ("held", "available")


async def test_a_cancelled_showtime_takes_no_holds(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    async with app.state.db.session() as session:
        await session.execute(
            update(Showtime)
            .where(Showtime.id == uuid.UUID(show.showtime_id))
            .values(status="cancelled")
        )
    refused = await hold(client, ann.headers, show.showtime_id, "A1")
    assert refused.status_code == 409
    assert refused.json()["code"] == "showtime_closed"
    assert (await seat_statuses(client, show.showtime_id))["A1"]["status"] == "available"


@pytest.mark.backends("postgres")
async def test_postgres_holds_and_releases_commit_without_waiting_for_the_disk(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """A hold lives minutes: PostgreSQL's hold and release statements commit asynchronously
    (a crash may forget the last fraction of a second of them, never a sale: a booking's
    synchronous commit makes every hold before it durable). The statement turns
    synchronous_commit off for its own transaction only."""
    show = await seed_showtime(app)
    ann = await make_user(app)
    driver = app.state.db.driver
    request = hold_request(ann.id, uuid.UUID(show.showtime_id), ["A1"])
    async with driver.transaction() as connection:
        held = await connection.fetchrow(
            holds_postgres._HOLD_SQL, *holds_postgres._hold_params(request)
        )
        assert held["created"] == 1
        assert await connection.fetchval("SHOW synchronous_commit") == "off"
    async with driver.transaction() as connection:
        released = await connection.fetchrow(
            holds_postgres._RELEASE_SQL, ann.id, request.hold_id, None
        )
        assert released["marked"] == 1
        assert await connection.fetchval("SHOW synchronous_commit") == "off"
    # Everything else on the pool's connections commits as the server is set to.
    assert (await driver.fetchrow("SHOW synchronous_commit"))[0] == "on"
