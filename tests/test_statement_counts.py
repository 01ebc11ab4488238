"""Statements per request on the hot paths of an onsale: they must not grow.

Each round trip to the database costs CPU on both sides (see docs/performance.md); an N+1 query
or a forgotten fast path shows up here as a larger count long before a benchmark notices.
The counts include BEGIN/COMMIT where the driver sends them as statements (SQLite), and
are the same however many seats a map or a booking has.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from boxoffice.catalog.models import Movie, MovieGenre
from boxoffice.core import pgdriver
from tests.booking_helpers import SUCCESS_CARD, book_hold, hold, seed_showtime
from tests.conftest import settle_jobs
from tests.helpers import make_user

# Budgets per backend: (seat map anonymous, seat map signed in, hold, release, booking,
# payment confirmation, ticket list). PostgreSQL runs the seat map (signed in or not), hold
# and release as one statement each, and the owner's ticket list too (the account checked
# inside it); elsewhere the ticket list reads the caller, then the booking with its tickets,
# and a signed-in seat map reads the caller before the map.
# Booking and confirmation each write an audit entry of the money movement (one INSERT; on
# PostgreSQL within the booking's and the payment success's statements). A booking reads its
# hold (locked) with the showtime, theater, seats still held, the caller's account and loyalty
# standing (the tier discount) in one SELECT (MariaDB: five), and the showtime's pricing rules
# (one SELECT, the seat prices it freezes). A confirmation reads the caller's account with the
# payment and booking it locks (MariaDB: a SELECT of its own).
# Confirmation issues the invoice: 1 SELECT in its transaction (on PostgreSQL part of the
# confirmation's statement); after the commit, in a unit of work of its own, the counter and
# the invoice (PostgreSQL: one statement in autocommit; SQLite: BEGIN, the counter upsert,
# 1 INSERT; MariaDB: the upsert, 1 SELECT, 1 INSERT).
# Confirmation notifies: 1 SELECT (the user with their preferences; on PostgreSQL part of
# the confirmation's statement), 1 INSERT (in-app row).
# A payment's conditional UPDATE returns its row (PostgreSQL, SQLite; MariaDB reads it again),
# and on PostgreSQL whether a refund was reported before the success (elsewhere a SELECT);
# on PostgreSQL a booking's row, lines, payment and audit entry, its hold and the hold's
# seats are one statement (booking.service._hold_to_booking), and a confirmation's lines,
# seats, booking and tickets another (booking.service._confirm_at_once), no savepoint.
BUDGETS: dict[str, dict[str, int]] = {
    "postgresql": {
        "seat map": 1,
        "seat map, signed in": 1,
        "hold": 1,
        "release": 1,
        "booking": 3,
        "confirmation": 5,
        "ticket list": 1,
    },
    # SQLite counts its BEGIN and COMMIT as statements; hold and release, and the seat map's
    # two reads, run on the plain sqlite3 connection (microseconds each, no driver thread).
    "sqlite": {
        "seat map": 2,
        "seat map, signed in": 3,
        "hold": 7,
        "release": 5,
        "booking": 9,
        "confirmation": 17,
        "ticket list": 3,
    },
    "mysql": {
        "seat map": 2,
        "seat map, signed in": 3,
        "hold": 6,
        "release": 4,
        "booking": 12,
        "confirmation": 19,
        "ticket list": 2,
    },
}


@contextmanager
def counted(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app sends while the block runs."""
    statements: list[str] = []
    engine = app.state.db.engine.sync_engine

    def sent(statement: str) -> None:
        statements.append(" ".join(statement.split())[:120])

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent(statement)

    event.listen(engine, "before_cursor_execute", record)
    # SQLite's hot writes run on a plain sqlite3 connection (booking.holds_sqlite).
    plain = app.state.db.sqlite_connection()
    if plain is not None:
        plain.set_trace_callback(sent)
    # PostgreSQL's run on asyncpg's own pool or on a session's asyncpg connection
    # (core.pgdriver: DriverPool, SessionStatement), told by core.pgdriver.statements.
    try:
        with pgdriver.statements(sent):
            yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
        if plain is not None:
            plain.set_trace_callback(None)


async def test_hot_paths_stay_within_their_statement_budget(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    budget = BUDGETS[app.state.db.backend]
    show = await seed_showtime(app, rows=10, seats_per_row=20)
    customer = await make_user(app)
    used: dict[str, int] = {}

    # Warm-up: caches that fill once per process (layouts, role permissions) are not counted.
    assert (await client.get(f"/api/showtimes/{show.showtime_id}/seats")).status_code == 200

    with counted(app) as statements:
        assert (await client.get(f"/api/showtimes/{show.showtime_id}/seats")).status_code == 200
    used["seat map"] = len(statements)

    with counted(app) as statements:
        answer = await client.get(
            f"/api/showtimes/{show.showtime_id}/seats", headers=customer.headers
        )
        assert answer.status_code == 200
    used["seat map, signed in"] = len(statements)

    with counted(app) as statements:
        held = await hold(client, customer.headers, show.showtime_id, "A1", "A2", "A3", "A4")
        assert held.status_code == 201, held.text
    used["hold"] = len(statements)

    with counted(app) as statements:
        token = held.json()["lockToken"]
        released = await client.delete(
            f"/api/bookings/lock-seats/{token}", headers=customer.headers
        )
        assert released.status_code == 204
    used["release"] = len(statements)

    held = await hold(client, customer.headers, show.showtime_id, "B1", "B2", "B3", "B4")
    with counted(app) as statements:
        booked = await book_hold(
            client,
            customer.headers,
            show.showtime_id,
            held.json()["lockToken"],
            "B1",
            "B2",
            "B3",
            "B4",
        )
        assert booked.status_code == 201, booked.text
    used["booking"] = len(statements)

    with counted(app) as statements:
        paid = await client.post(
            "/api/payments/local/confirm",
            json={"paymentIntentId": booked.json()["paymentIntentId"], "card": SUCCESS_CARD},
            headers=customer.headers,
        )
        assert paid.status_code == 200, paid.text
    used["confirmation"] = len(statements)

    await settle_jobs(app)  # the confirmation's mail, sent after its commit, is not counted
    tickets_path = f"/api/bookings/{booked.json()['booking']['id']}/tickets"
    assert (await client.get(tickets_path, headers=customer.headers)).status_code == 200
    with counted(app) as statements:  # the second time: the role's permissions are cached
        listed = await client.get(tickets_path, headers=customer.headers)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["tickets"]) == 4
    used["ticket list"] = len(statements)

    over = {path: (n, budget[path]) for path, n in used.items() if n > budget[path]}
    assert not over, f"statements (used, budget): {over}; all: {used}; last: {statements}"


@pytest.mark.parametrize("seats", [1, 8])
async def test_seat_map_statements_do_not_depend_on_the_hall_size(
    app: FastAPI, client: httpx.AsyncClient, seats: int
) -> None:
    show = await seed_showtime(app, rows=seats, seats_per_row=seats)
    url = f"/api/showtimes/{show.showtime_id}/seats"
    await client.get(url)
    with counted(app) as statements:
        assert (await client.get(url)).status_code == 200
    assert len(statements) == BUDGETS[app.state.db.backend]["seat map"]


# The movie list: the page (each row with the total that match; on PostgreSQL with its
# genres), then elsewhere the page's genres, in a reader session (SQLite counts its BEGIN and
# the session's end).
MOVIE_LIST_BUDGETS = {"postgresql": 1, "sqlite": 4, "mysql": 2}


@pytest.mark.parametrize("movies", [1, 8])
async def test_movie_list_statements_do_not_depend_on_the_page_size(
    app: FastAPI, client: httpx.AsyncClient, movies: int
) -> None:
    async with app.state.db.session() as session:
        for number in range(movies):
            genres = [MovieGenre(genre="drama", position=0), MovieGenre(genre="noir", position=1)]
            title = f"Movie {number}"
            session.add(
                Movie(title=title, duration_minutes=90, search_text=title.lower(), genres=genres)
            )
    url = "/api/movies?genre=drama&search=movie"
    await client.get(url)
    with counted(app) as statements:
        listed = await client.get(url)
        assert listed.status_code == 200, listed.text
    assert [m["genres"] for m in listed.json()["movies"]] == [["drama", "noir"]] * movies
    assert listed.json()["pagination"]["total"] == movies
    assert len(statements) <= MOVIE_LIST_BUDGETS[app.state.db.backend], statements
