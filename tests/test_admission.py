"""Admission (core.admission): at most `database_concurrency` units of work of a process run
at once, counted on the real database's sessions; one nested in an admitted unit runs on its
parent's place; one that waited too long is refused as an exhausted pool is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from boxoffice.app import create_app
from boxoffice.core import admission
from boxoffice.core.admission import Admission
from boxoffice.core.db import Database, create_engine
from tests.booking_helpers import book_and_pay, seed_showtime
from tests.conftest import Backend, make_settings, reset_database
from tests.helpers import make_user


async def test_at_most_the_limit_of_units_of_work_run_at_once(backend: Backend) -> None:
    db = Database(create_engine(backend.url, pool_size=8), concurrency=2)
    inside = 0
    most = 0

    async def unit() -> None:
        nonlocal inside, most
        async with db.session(write=False) as session:
            inside += 1
            most = max(most, inside)
            await session.execute(text("SELECT 1"))
            await asyncio.sleep(0.05)
            inside -= 1

    try:
        await asyncio.gather(*(unit() for _ in range(8)))
    finally:
        await db.dispose()
    assert most == 2


async def test_a_unit_nested_in_an_admitted_one_does_not_queue(backend: Backend) -> None:
    db = Database(create_engine(backend.url, pool_size=4), concurrency=1)
    try:
        async with db.session(write=False) as outer:
            await outer.execute(text("SELECT 1"))
            # An after-commit step's own session: queueing here would wait for itself.
            async with asyncio.timeout(5), db.session(write=False) as inner:
                assert (await inner.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await db.dispose()


async def test_a_unit_that_left_gives_its_place_to_the_next() -> None:
    gate = Admission(1, timeout=5)
    left = asyncio.Event()
    release = asyncio.Event()

    async def waiting_for_a_provider() -> None:
        async with gate.enter():
            admission.leave()
            admission.leave()  # twice changes nothing: one place, given back once
            left.set()
            await release.wait()

    first = asyncio.create_task(waiting_for_a_provider())
    await left.wait()
    async with asyncio.timeout(1), gate.enter():
        pass
    release.set()
    await first
    # Both places are back: two units run one after the other without waiting.
    for _ in range(2):
        async with asyncio.timeout(1), gate.enter():
            pass


async def test_a_unit_waiting_too_long_is_refused_as_an_exhausted_pool() -> None:
    gate = Admission(1, timeout=0.2)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def long_unit() -> None:
        async with gate.enter():
            entered.set()
            await release.wait()

    holder = asyncio.create_task(long_unit())
    await entered.wait()
    with pytest.raises(PoolTimeout):
        async with gate.enter():
            pass
    release.set()
    await holder


async def test_purchases_racing_through_one_place_all_complete(
    backend: Backend, tmp_path: Path
) -> None:
    """With one place per process, concurrent purchases (hold, book, pay, tickets; the invoice
    after the commit in a session of its own) queue and complete: no step of theirs waits for
    a second place while holding one."""
    app = create_app(make_settings(backend, tmp_path, database_concurrency=1))
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        await reset_database(app)
        show = await seed_showtime(app, rows=2, seats_per_row=6)
        customers = [await make_user(app) for _ in range(6)]

        async def purchase(n: int) -> int:
            headers = customers[n].headers
            booking = await book_and_pay(client, headers, show.showtime_id, f"A{n + 1}")
            tickets = await client.get(f"/api/bookings/{booking['id']}/tickets", headers=headers)
            assert tickets.status_code == 200, tickets.text
            return len(tickets.json()["tickets"])

        async with asyncio.timeout(60):
            assert await asyncio.gather(*(purchase(n) for n in range(6))) == [1] * 6
