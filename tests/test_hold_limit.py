"""Anti-hoarding: a customer holds at most BOXOFFICE_MAX_HELD_SEATS_PER_CUSTOMER live seats over
all showtimes; staff are exempt. The race at the end runs against a real server (2 workers)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from boxoffice.booking.models import Hold, HoldStatus
from boxoffice.scheduling.models import SeatStatus, ShowtimeSeat
from tests.booking_helpers import book_hold, hold, seat_statuses, seed_showtime
from tests.helpers import TestUser, make_user

if TYPE_CHECKING:
    from tests.live_server import ServerFactory

# Registered as a plugin (not imported) so pytest rewrites its asserts too.
pytest_plugins = ("tests.live_server",)

ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


async def _showtimes(app: FastAPI, count: int) -> list[str]:
    return [(await seed_showtime(app)).showtime_id for _ in range(count)]


async def _lock_best(
    client: httpx.AsyncClient, user: TestUser, showtime_id: str, quantity: int
) -> httpx.Response:
    return await client.post(
        "/api/bookings/lock-best",
        json={"showtimeId": showtime_id, "quantity": quantity},
        headers=user.headers,
    )


def _refused(response: httpx.Response, *, limit: int, held: int) -> None:
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == "hold_limit"
    assert problem["limit"] == limit
    assert problem["held"] == held
    assert f"at most {limit} seats" in problem["detail"]
    assert f"you hold {held}" in problem["detail"]


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _live_held_seats(app: FastAPI, user_id: uuid.UUID) -> tuple[int, int]:
    """(live holds, seats they hold in the inventory) of the customer, from the database."""
    now = dt.datetime.now(dt.UTC)
    async with app.state.db.session() as session:
        holds = (
            await session.scalars(
                select(Hold.id).where(
                    Hold.user_id == user_id,
                    Hold.status == HoldStatus.ACTIVE,
                    Hold.expires_at > now,
                )
            )
        ).all()
        seats = await session.scalar(
            select(func.count())
            .select_from(ShowtimeSeat)
            .where(
                ShowtimeSeat.hold_id.in_(holds or [uuid.uuid4()]),
                ShowtimeSeat.status == SeatStatus.HELD,
                ShowtimeSeat.booking_id.is_(None),
                ShowtimeSeat.held_until > now,
            )
        )
    return len(holds), seats or 0


async def test_holds_up_to_the_cap_then_answers_hold_limit(
    app: FastAPI, make_client: ClientFactory
) -> None:
    client = await make_client(max_held_seats_per_customer=4)
    first, second, third = await _showtimes(app, 3)
    ann = await make_user(app)

    _created(await hold(client, ann.headers, first, "A1", "A2"))
    _created(await hold(client, ann.headers, second, "A1", "A2"))  # 4 of 4
    _refused(await hold(client, ann.headers, third, "A1"), limit=4, held=4)
    # Nothing was taken by the refused hold, and lock-best counts the same way.
    assert (await seat_statuses(client, third))["A1"]["status"] == "available"
    _refused(await _lock_best(client, ann, third, 1), limit=4, held=4)
    assert await _live_held_seats(app, ann.id) == (2, 4)

    # The cap is per customer: someone else still holds.
    bob = await make_user(app)
    _created(await hold(client, bob.headers, third, "A1", "A2", "A3", "A4"))


async def test_the_default_cap_is_two_full_holds(app: FastAPI, client: httpx.AsyncClient) -> None:
    first, second, third = await _showtimes(app, 3)
    ann = await make_user(app)
    ten = [*(f"A{n}" for n in range(1, 9)), "B1", "B2"]  # BOXOFFICE_MAX_SEATS_PER_HOLD
    _created(await hold(client, ann.headers, first, *ten))
    _created(await hold(client, ann.headers, second, *ten))  # 20 of 20
    _refused(await hold(client, ann.headers, third, "A1"), limit=20, held=20)


async def test_replacing_ones_hold_on_a_showtime_counts_the_new_seats_only(
    app: FastAPI, make_client: ClientFactory
) -> None:
    client = await make_client(max_held_seats_per_customer=4)
    first, second = await _showtimes(app, 2)
    ann = await make_user(app)

    _created(await hold(client, ann.headers, first, "A1", "A2", "A3"))
    # 3 held here are replaced by these 4: 4 of 4, not 7.
    _created(await hold(client, ann.headers, first, "B1", "B2", "B3", "B4"))
    _created(await _lock_best(client, ann, first, 4))  # and again, through lock-best
    _refused(await hold(client, ann.headers, second, "A1"), limit=4, held=4)
    assert await _live_held_seats(app, ann.id) == (1, 4)


async def test_expired_holds_do_not_count(app: FastAPI, make_client: ClientFactory) -> None:
    client = await make_client(max_held_seats_per_customer=4)
    first, second = await _showtimes(app, 2)
    ann = await make_user(app)
    held = _created(await hold(client, ann.headers, first, "A1", "A2", "A3", "A4"))
    _refused(await hold(client, ann.headers, second, "A1"), limit=4, held=4)

    # The hold runs out: expiry is a predicate, nothing records it.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    token = uuid.UUID(held["lockToken"])
    async with app.state.db.session() as session:
        await session.execute(update(Hold).where(Hold.id == token).values(expires_at=past))
        await session.execute(
            update(ShowtimeSeat).where(ShowtimeSeat.hold_id == token).values(held_until=past)
        )

    _created(await hold(client, ann.headers, second, "A1", "A2", "A3", "A4"))
    assert await _live_held_seats(app, ann.id) == (1, 4)


async def test_released_holds_do_not_count(app: FastAPI, make_client: ClientFactory) -> None:
    client = await make_client(max_held_seats_per_customer=4)
    first, second = await _showtimes(app, 2)
    ann = await make_user(app)
    held = _created(await hold(client, ann.headers, first, "A1", "A2", "A3", "A4"))
    _refused(await _lock_best(client, ann, second, 2), limit=4, held=4)

    released = await client.delete(
        f"/api/bookings/lock-seats/{held['lockToken']}", headers=ann.headers
    )
    assert released.status_code == 204
    _created(await _lock_best(client, ann, second, 4))


async def test_booked_seats_do_not_count_as_held(app: FastAPI, make_client: ClientFactory) -> None:
    client = await make_client(max_held_seats_per_customer=4)
    first, second = await _showtimes(app, 2)
    ann = await make_user(app)
    labels = ("A1", "A2", "A3", "A4")
    held = _created(await hold(client, ann.headers, first, *labels))

    # The hold becomes a (pending) booking: its seats are the booking's now, not held.
    booked = await book_hold(client, ann.headers, first, held["lockToken"], *labels)
    assert booked.status_code == 201, booked.text
    _created(await hold(client, ann.headers, second, *labels))
    _refused(await hold(client, ann.headers, first, "B1"), limit=4, held=4)


@pytest.mark.parametrize("role", ["cashier", "operator", "admin"])
async def test_staff_are_not_capped(app: FastAPI, make_client: ClientFactory, role: str) -> None:
    client = await make_client(max_held_seats_per_customer=4)
    shows = await _showtimes(app, 3)
    till = await make_user(app, role=role)
    for showtime_id in shows[:2]:
        _created(await hold(client, till.headers, showtime_id, "A1", "A2", "A3"))
    _created(await _lock_best(client, till, shows[2], 3))
    assert await _live_held_seats(app, till.id) == (3, 9)


async def test_zero_turns_the_cap_off(app: FastAPI, make_client: ClientFactory) -> None:
    client = await make_client(max_held_seats_per_customer=0)
    shows = await _showtimes(app, 3)
    ann = await make_user(app)
    for showtime_id in shows[:2]:
        _created(await hold(client, ann.headers, showtime_id, *(f"A{n}" for n in range(1, 9))))
    _created(await _lock_best(client, ann, shows[2], 8))
    assert await _live_held_seats(app, ann.id) == (3, 24)


# ---------------------------------------------------------------------------------------------
# The race: one customer, many holds at once on different showtimes, two server processes


async def _hold_one(
    http: httpx.AsyncClient, customer: TestUser, index: int, showtime_id: str, label: str
) -> httpx.Response:
    # Both routes: on PostgreSQL lock-seats is one statement and lock-best a transaction;
    # they take turns with each other too.
    if index % 3 == 2:
        return await _lock_best(http, customer, showtime_id, 1)
    return await hold(http, customer.headers, showtime_id, label)


@pytest.mark.slow
async def test_concurrent_holds_of_one_customer_never_exceed_the_cap(
    app: FastAPI, client: httpx.AsyncClient, start_server: ServerFactory
) -> None:
    cap, showtimes, rounds = 5, 16, 3
    server = await start_server(max_held_seats_per_customer=cap, expiry_interval_seconds=0)
    shows = await _showtimes(app, showtimes)
    async with server.client() as http:
        for round_ in range(rounds):
            customer = await make_user(app)
            answers = await asyncio.gather(
                *(
                    _hold_one(http, customer, index, showtime_id, f"B{round_ + 1}")
                    for index, showtime_id in enumerate(shows)
                )
            )
            outcome = Counter(
                "ok" if a.status_code == 201 else f"{a.status_code} {a.json().get('code')}"
                for a in answers
            )
            # Exactly the cap: a 1-seat hold is refused only while `cap` seats are held.
            assert outcome == {"ok": cap, "409 hold_limit": showtimes - cap}, outcome
            assert await _live_held_seats(app, customer.id) == (cap, cap)
    assert not server.logged_errors()
