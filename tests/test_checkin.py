"""The door: POST /api/checkin answers valid once per ticket, and explains every refusal."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from boxoffice.accounts.models import User
from boxoffice.booking.models import Booking
from boxoffice.core.clock import utcnow
from boxoffice.scheduling.models import Showtime
from boxoffice.tickets import service
from boxoffice.tickets.models import Ticket
from boxoffice.tickets.signing import ticket_signer
from tests.factories import seed_confirmed_booking
from tests.helpers import TestUser, make_user
from tests.test_tickets import sql_statements


def soon(minutes: int = 10) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=minutes)


async def tokens(client: httpx.AsyncClient, booking_id: uuid.UUID, user: TestUser) -> list[str]:
    response = await client.get(f"/api/bookings/{booking_id}/tickets", headers=user.headers)
    assert response.status_code == 200, response.text
    return [ticket["qrToken"] for ticket in response.json()["tickets"]]


async def door(app: FastAPI, labels: list[str], start_time: dt.datetime) -> SimpleNamespace:
    """A customer's paid booking for a showtime, a cashier, and the tickets' tokens."""
    customer = await make_user(app)
    seeded = await seed_confirmed_booking(app, customer.id, labels, start_time=start_time)
    signer = ticket_signer(app.state.settings, app.state.signing_key)
    return SimpleNamespace(
        **vars(seeded),
        customer=customer,
        cashier=await make_user(app, "cashier"),
        tokens=[signer.sign(ticket_id, seeded.showtime_id) for ticket_id in seeded.ticket_ids],
    )


async def scan(
    client: httpx.AsyncClient, user: TestUser, token: str, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/checkin", json={"qrToken": token, **extra}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ticket_row(app: FastAPI, ticket_id: uuid.UUID) -> Ticket:
    async with app.state.db.session() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket


async def booking_status(app: FastAPI, booking_id: uuid.UUID) -> str:
    async with app.state.db.session() as session:
        status = await session.scalar(select(Booking.status).where(Booking.id == booking_id))
        assert status is not None
        return status


async def move_showtime(app: FastAPI, showtime_id: uuid.UUID, start: dt.datetime) -> None:
    async with app.state.db.session() as session:
        await session.execute(
            update(Showtime)
            .where(Showtime.id == showtime_id)
            .values(start_time=start, end_time=start + dt.timedelta(hours=2))
        )


# ---------------------------------------------------------------------------------------------
# Results


async def test_a_valid_ticket_is_admitted_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    start = soon()
    setup = await door(app, ["C4"], start)
    body = await scan(client, setup.cashier, setup.tokens[0])
    assert body["result"] == "valid"
    assert "reason" not in body
    ticket = body["ticket"]
    assert ticket["id"] == str(setup.ticket_ids[0])
    assert ticket["bookingId"] == str(setup.booking_id)
    assert ticket["showtimeId"] == str(setup.showtime_id)
    assert ticket["seatLabel"] == "C4"
    assert ticket["status"] == "used"
    assert ticket["movieTitle"].startswith("Movie ")
    assert ticket["screenName"].startswith("Screen ")
    assert ticket["ageRating"] == ""
    assert dt.datetime.fromisoformat(ticket["startTime"]) == start

    stored = await ticket_row(app, setup.ticket_ids[0])
    assert stored.status == "used"
    assert stored.used_by == setup.cashier.id
    assert stored.used_at is not None
    assert dt.datetime.fromisoformat(body["usedAt"]) == stored.used_at

    again = await scan(client, setup.cashier, setup.tokens[0])
    assert again["result"] == "already_used"
    assert dt.datetime.fromisoformat(again["usedAt"]) == stored.used_at
    assert again["ticket"]["status"] == "used"


async def test_scanner_whitespace_around_the_token_is_ignored(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    setup = await door(app, ["A1"], soon())
    body = await scan(client, setup.cashier, f"  {setup.tokens[0]}\n")
    assert body["result"] == "valid"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("hello", id="text"),
        pytest.param("https://example.com/ticket/123", id="url"),
        pytest.param("A" * 119, id="shape-only"),
    ],
)
async def test_not_a_ticket_is_invalid(client: httpx.AsyncClient, app: FastAPI, token: str) -> None:
    cashier = await make_user(app, "cashier")
    body = await scan(client, cashier, token)
    assert body == {"result": "invalid", "reason": "bad_signature"}


async def test_an_altered_token_is_invalid_without_reading_tickets(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    setup = await door(app, ["A1"], soon())
    good = setup.tokens[0]
    altered = good[:30] + ("B" if good[30] != "B" else "C") + good[31:]
    await scan(client, setup.cashier, "warm-up")  # the role's permissions are cached now

    with sql_statements(app) as statements:
        body = await scan(client, setup.cashier, altered)
    assert body == {"result": "invalid", "reason": "bad_signature"}
    # Only the caller's sign-in is looked up; no ticket, showtime or booking is read.
    assert statements
    assert not [s for s in statements if "tickets" in s or "showtimes" in s or "bookings" in s]

    with sql_statements(app) as statements:
        assert (await scan(client, setup.cashier, good))["result"] == "valid"
    assert [s for s in statements if "tickets" in s]  # the listener does see ticket reads


async def test_the_door_service_refuses_a_forged_token_with_no_statement(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    setup = await door(app, ["A1"], soon())
    signer = ticket_signer(app.state.settings, app.state.signing_key)
    forged = setup.tokens[0][:-3] + ("xyz" if setup.tokens[0][-3:] != "xyz" else "abc")
    async with app.state.db.session() as session:
        scanner = await session.get(User, setup.cashier.id)
        assert scanner is not None
        with sql_statements(app) as statements:
            result = await service.check_in(
                session, app.state.settings, signer, scanner, forged, now=utcnow()
            )
        assert result.result == "invalid"
        assert result.reason == "bad_signature"
        assert statements == []
    assert (await ticket_row(app, setup.ticket_ids[0])).status == "valid"


async def test_a_well_signed_token_of_no_ticket_is_invalid(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    setup = await door(app, ["A1"], soon())
    signer = ticket_signer(app.state.settings, app.state.signing_key)
    body = await scan(client, setup.cashier, signer.sign(uuid.uuid4(), setup.showtime_id))
    assert body == {"result": "invalid", "reason": "unknown_ticket"}
    # A real ticket id signed for another showtime is not that ticket either.
    body = await scan(client, setup.cashier, signer.sign(setup.ticket_ids[0], uuid.uuid4()))
    assert body == {"result": "invalid", "reason": "unknown_ticket"}
    assert (await ticket_row(app, setup.ticket_ids[0])).status == "valid"


async def test_a_void_ticket_is_invalid(client: httpx.AsyncClient, app: FastAPI) -> None:
    setup = await door(app, ["A1", "A2"], soon())
    async with app.state.db.session() as session:
        assert await service.void_tickets(session, setup.booking_id, ["A1"]) == 1
    body = await scan(client, setup.cashier, setup.tokens[0])
    assert body["result"] == "invalid"
    assert body["reason"] == "void"
    assert body["ticket"]["status"] == "void"
    assert (await scan(client, setup.cashier, setup.tokens[1]))["result"] == "valid"
    # The only valid ticket is used: the booking is used, the void one does not hold it back.
    assert await booking_status(app, setup.booking_id) == "used"


async def test_a_ticket_of_a_cancelled_showtime_is_invalid(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    setup = await door(app, ["A1"], soon())
    async with app.state.db.session() as session:
        await session.execute(
            update(Showtime).where(Showtime.id == setup.showtime_id).values(status="cancelled")
        )
    body = await scan(client, setup.cashier, setup.tokens[0])
    assert body["result"] == "invalid"
    assert body["reason"] == "showtime_cancelled"
    assert (await ticket_row(app, setup.ticket_ids[0])).status == "valid"


async def test_the_door_of_another_showtime_or_theater_refuses(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    setup = await door(app, ["A1"], soon())
    other = await door(app, ["A1"], soon())
    token = setup.tokens[0]

    for extra in (
        {"showtimeId": str(other.showtime_id)},
        {"theaterId": str(other.theater_id)},
        {"showtimeId": str(setup.showtime_id), "theaterId": str(other.theater_id)},
    ):
        body = await scan(client, setup.cashier, token, **extra)
        assert body["result"] == "wrong_showtime", extra
        assert body["ticket"]["showtimeId"] == str(setup.showtime_id)  # where to send them
        assert body["ticket"]["status"] == "valid"
    assert (await ticket_row(app, setup.ticket_ids[0])).status == "valid"

    body = await scan(
        client,
        setup.cashier,
        token,
        showtimeId=str(setup.showtime_id),
        theaterId=str(setup.theater_id),
    )
    assert body["result"] == "valid"
    # Once used, the wrong door still says wrong door first.
    body = await scan(client, setup.cashier, token, showtimeId=str(other.showtime_id))
    assert body["result"] == "wrong_showtime"


async def test_doors_open_the_configured_minutes_before_the_start(
    app: FastAPI, make_client: Callable[..., Awaitable[httpx.AsyncClient]]
) -> None:
    strict = await make_client(doors_open_minutes=5)  # resets the database: build it first
    default = await make_client()
    setup = await door(app, ["A1", "A2"], soon(10))
    far = await door(app, ["A1"], soon(3 * 24 * 60))

    body = await scan(strict, setup.cashier, setup.tokens[0])
    assert body["result"] == "not_yet_open"
    assert body["ticket"]["status"] == "valid"
    assert (await ticket_row(app, setup.ticket_ids[0])).status == "valid"
    assert (await scan(default, setup.cashier, setup.tokens[0]))["result"] == "valid"
    assert (await scan(default, far.cashier, far.tokens[0]))["result"] == "not_yet_open"


async def test_doors_open_boundary(client: httpx.AsyncClient, app: FastAPI) -> None:
    setup = await door(app, ["A1"], soon(3 * 24 * 60))
    signer = ticket_signer(app.state.settings, app.state.signing_key)
    async with app.state.db.session() as session:
        start = await session.scalar(
            select(Showtime.start_time).where(Showtime.id == setup.showtime_id)
        )
        scanner = await session.get(User, setup.cashier.id)
    assert start is not None
    assert scanner is not None
    opens = start - dt.timedelta(minutes=app.state.settings.doors_open_minutes)
    for now, expected in (
        (opens - dt.timedelta(seconds=1), "not_yet_open"),
        (opens, "valid"),
    ):
        async with app.state.db.session() as session:
            result = await service.check_in(
                session, app.state.settings, signer, scanner, setup.tokens[0], now=now
            )
        assert result.result == expected


async def test_a_ticket_long_after_its_showtime_is_expired(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    setup = await door(app, ["A1", "A2"], soon())
    # Ended 5 hours ago: refused; ended 1 hour ago: a late scan still counts.
    await move_showtime(app, setup.showtime_id, utcnow() - dt.timedelta(hours=7))
    body = await scan(client, setup.cashier, setup.tokens[0])
    assert body["result"] == "invalid"
    assert body["reason"] == "expired"
    assert (await ticket_row(app, setup.ticket_ids[0])).status == "valid"

    await move_showtime(app, setup.showtime_id, utcnow() - dt.timedelta(hours=3))
    assert (await scan(client, setup.cashier, setup.tokens[0]))["result"] == "valid"


# ---------------------------------------------------------------------------------------------
# Who may scan, and bad input


async def test_only_staff_may_scan(client: httpx.AsyncClient, app: FastAPI) -> None:
    setup = await door(app, ["A1"], soon())
    token = setup.tokens[0]
    anonymous = await client.post("/api/checkin", json={"qrToken": token})
    assert anonymous.status_code == 401
    customer = await client.post(
        "/api/checkin", json={"qrToken": token}, headers=setup.customer.headers
    )
    assert customer.status_code == 403
    assert customer.json()["code"] == "forbidden"
    assert (await ticket_row(app, setup.ticket_ids[0])).status == "valid"

    results = []
    for role in ("cashier", "operator", "admin"):
        staff = await make_user(app, role)
        results.append((await scan(client, staff, token))["result"])
    assert results == ["valid", "already_used", "already_used"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing"),
        pytest.param({"qrToken": ""}, id="empty"),
        pytest.param({"qrToken": "x" * 5000}, id="huge"),
        pytest.param({"qrToken": 12}, id="number"),
        pytest.param({"qrToken": "abc", "showtimeId": "nope"}, id="bad-showtime"),
        pytest.param({"qrToken": "abc", "extra": 1}, id="unknown-field"),
    ],
)
async def test_bad_requests_are_422(
    client: httpx.AsyncClient, app: FastAPI, body: dict[str, Any]
) -> None:
    cashier = await make_user(app, "cashier")
    response = await client.post("/api/checkin", json=body, headers=cashier.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"


# ---------------------------------------------------------------------------------------------
# Booking state and races


async def test_the_booking_is_used_once_every_ticket_is(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    setup = await door(app, ["A1", "A2"], soon())
    assert (await scan(client, setup.cashier, setup.tokens[0]))["result"] == "valid"
    assert await booking_status(app, setup.booking_id) == "confirmed"
    assert (await scan(client, setup.cashier, setup.tokens[1]))["result"] == "valid"
    assert await booking_status(app, setup.booking_id) == "used"


@pytest.mark.parametrize("scanners", [2, 10])
async def test_scanners_racing_on_one_ticket_admit_it_once(
    client: httpx.AsyncClient, app: FastAPI, scanners: int
) -> None:
    setup = await door(app, ["A1"], soon())
    staff = [await make_user(app, "cashier") for _ in range(scanners)]
    bodies = await asyncio.gather(*(scan(client, user, setup.tokens[0]) for user in staff))
    results = sorted(body["result"] for body in bodies)
    assert results == ["already_used"] * (scanners - 1) + ["valid"]
    winner = next(body for body in bodies if body["result"] == "valid")
    stored = await ticket_row(app, setup.ticket_ids[0])
    assert stored.status == "used"
    assert dt.datetime.fromisoformat(winner["usedAt"]) == stored.used_at
    for body in bodies:
        assert dt.datetime.fromisoformat(body["usedAt"]) == stored.used_at
    assert str(stored.used_by) in {str(user.id) for user in staff}
    assert await booking_status(app, setup.booking_id) == "used"


async def test_scanning_whole_bookings_at_once_marks_each_used(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # Two scanners admit the two people of a booking at the same moment, for several bookings
    # at once: the last scan of each booking must see the other one and mark the booking used.
    setups = [await door(app, ["A1", "A2"], soon()) for _ in range(8)]
    bodies = await asyncio.gather(
        *(scan(client, setup.cashier, token) for setup in setups for token in setup.tokens)
    )
    assert [body["result"] for body in bodies] == ["valid"] * 16
    assert [await booking_status(app, setup.booking_id) for setup in setups] == ["used"] * 8
