"""RetryingRoute: a request that lost a deadlock runs again, after its failed attempt's session
was closed (its connection, and on SQLite the write turn, given back first)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import APIRouter
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

from boxoffice.accounts.models import User
from boxoffice.app import create_app
from boxoffice.booking.models import Booking
from boxoffice.booking.service import new_reference
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute, add_routes
from tests.booking_helpers import book, seed_showtime
from tests.conftest import Backend, make_settings, reset_database
from tests.helpers import make_user


class _Deadlock(Exception):
    """What the drivers report when the database broke a deadlock (PostgreSQL's SQLSTATE)."""

    sqlstate = "40P01"


async def test_a_lost_deadlock_is_retried_with_the_first_session_closed(
    backend: Backend, tmp_path: Path
) -> None:
    app = create_app(make_settings(backend, tmp_path))
    attempts: list[int] = []
    router = APIRouter(route_class=RetryingRoute)

    @router.post("/flaky")
    async def flaky(session: SessionDep) -> dict[str, Any]:
        await session.execute(text("SELECT 1"))  # holds a connection (and on SQLite the turn)
        attempts.append(app.state.db.engine.pool.checkedout())
        if len(attempts) == 1:
            raise DBAPIError("UPDATE showtime_seats ...", {}, _Deadlock())
        return {"attempts": len(attempts)}

    add_routes(app, router)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        # Were the first session still open, SQLite's retry would wait for its own write turn.
        response = await asyncio.wait_for(client.post("/flaky"), timeout=15)
    assert response.status_code == 200, response.text
    assert response.json() == {"attempts": 2}
    # The retry's connection is the only one out: the failed attempt's went back first.
    assert attempts == [1, 1]


def test_a_savepoint_lost_to_an_innodb_deadlock_is_retryable() -> None:
    """InnoDB rolls back the whole transaction on a deadlock; inside a savepoint what surfaces
    is the failed ROLLBACK TO SAVEPOINT (1305), with the deadlock as its context."""
    import pymysql.err
    from sqlalchemy.exc import OperationalError

    from boxoffice.core.errors import is_retryable

    deadlock = OperationalError(
        "UPDATE showtime_seats", {}, pymysql.err.OperationalError(1213, "Deadlock found")
    )
    lost_savepoint = OperationalError(
        "ROLLBACK TO SAVEPOINT sa_savepoint_5",
        {},
        pymysql.err.OperationalError(1305, "SAVEPOINT sa_savepoint_5 does not exist"),
    )
    assert not is_retryable(lost_savepoint)  # on its own: a bug, not a lost race
    lost_savepoint.__context__ = deadlock
    assert is_retryable(lost_savepoint)
    assert is_retryable(deadlock)


async def test_a_drawn_booking_reference_already_taken_runs_the_request_again(
    backend: Backend, tmp_path: Path
) -> None:
    """A booking's reference is drawn at random and inserted without a savepoint: a duplicate
    (the database's real unique violation) reruns the request, which draws another. A
    duplicate of any other unique key stays a 409 conflict, not retried."""
    app = create_app(make_settings(backend, tmp_path))
    attempts = {"reference": 0, "email": 0}
    router = APIRouter(route_class=RetryingRoute)

    @router.post("/copy-booking/{booking_id}")
    async def copy_booking(booking_id: uuid.UUID, session: SessionDep) -> dict[str, Any]:
        attempts["reference"] += 1
        taken = await session.get(Booking, booking_id)
        assert taken is not None
        copy = {c.key: getattr(taken, c.key) for c in Booking.__table__.columns}
        copy["id"] = uuid.uuid4()
        if attempts["reference"] == 1:  # later attempts draw a free reference
            copy["reference"] = taken.reference
        else:
            copy["reference"] = new_reference()
        await session.execute(insert(Booking).values(**copy))
        return {"attempts": attempts["reference"]}

    @router.post("/copy-user/{user_id}")
    async def copy_user(user_id: uuid.UUID, session: SessionDep) -> dict[str, Any]:
        attempts["email"] += 1
        taken = await session.get(User, user_id)
        assert taken is not None
        copy = {c.key: getattr(taken, c.key) for c in User.__table__.columns}
        await session.execute(insert(User).values(**{**copy, "id": uuid.uuid4()}))
        return {}

    add_routes(app, router)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        await reset_database(app)
        show = await seed_showtime(app, rows=1, seats_per_row=4)
        customer = await make_user(app)
        booked = await book(client, customer.headers, show.showtime_id, "A1")
        response = await client.post(f"/copy-booking/{booked['booking']['id']}")
        assert response.status_code == 200, response.text
        assert response.json() == {"attempts": 2}

        response = await client.post(f"/copy-user/{customer.id}")
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "conflict"
        assert attempts["email"] == 1
