"""PostgreSQL plans of the onsale's hot statements stay key lookups on stale statistics.

The holds table grows fastest exactly when its statistics are oldest: in the first minute of an
onsale, before autovacuum analyzes it again. The planner then believes it nearly empty, and a
statement that joins it against a CTE or per seat got a plan that scans all of it on every
hold, release and signed-in seat map (measured at 18,000 holds: a hold 10 ms instead of 1, a
seat map 7 ms instead of 0.4). Here the table holds thousands of rows its statistics do not
know about, and every read of it in those statements must be by an index condition, in the
plan made for the given values and in the generic plan a prepared statement switches to.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable

from boxoffice.booking import holds_postgres
from boxoffice.booking import service as booking_service
from boxoffice.loyalty import service as loyalty
from boxoffice.scheduling import seat_map
from tests.booking_helpers import hold, hold_request, seed_showtime
from tests.helpers import make_user

UNKNOWN_HOLDS = 20_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _unkeyed_reads_of_holds(plan: dict[str, Any]) -> list[str]:
    """Scans of `holds` that are not bounded by an index condition."""
    bad = []
    for node in _nodes(plan):
        if node.get("Relation Name") != "holds" or node["Node Type"] == "ModifyTable":
            continue
        keyed = node["Node Type"] == "Bitmap Heap Scan" or "Index Cond" in node
        if not keyed:
            bad.append(f"{node['Node Type']} on holds ({node.get('Filter', 'no filter')})")
    return bad


def _literal(value: Any) -> str:
    """An argument of EXECUTE (which takes no bind parameters), typed by the PREPARE."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = "{" + ",".join(str(item) for item in value) + "}"
    elif isinstance(value, dt.datetime):
        value = value.isoformat()
    return "'" + str(value).replace("'", "''") + "'"


async def test_hold_release_and_seat_map_read_holds_by_key_on_stale_statistics(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    if app.state.db.backend != "postgresql":
        pytest.skip("query plans are checked on PostgreSQL, the only backend with these statements")
    show = await seed_showtime(app, rows=10, seats_per_row=20)
    customer = await make_user(app)
    other = await make_user(app)
    showtime_id = uuid.UUID(show.showtime_id)

    async with app.state.db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        # Statistics taken when the table's pages held no live rows (as after a purge of old
        # holds), then thousands of rows they do not know about.
        await autocommit.execute(text("ALTER TABLE holds SET (autovacuum_enabled = off)"))
        add_unknown_holds = text(
            "INSERT INTO holds (id, showtime_id, user_id, status, seat_labels, created_at,"
            " expires_at, extensions)"
            " SELECT gen_random_uuid(), :showtime, :user, 'released', '[]', now(), now(), 0"
            " FROM generate_series(1, :count)"
        )
        unknown = {"showtime": showtime_id, "user": other.id, "count": UNKNOWN_HOLDS}
        await autocommit.execute(add_unknown_holds, unknown)
        await autocommit.execute(text("DELETE FROM holds"))
        await autocommit.execute(text("ANALYZE holds"))
        await autocommit.execute(add_unknown_holds, unknown)
        held = await hold(client, customer.headers, show.showtime_id, "A1", "A2")
        assert held.status_code == 201, held.text
        hold_id = uuid.UUID(held.json()["lockToken"])
        raw = (await autocommit.get_raw_connection()).driver_connection
        assert raw is not None
        now = dt.datetime.now(dt.UTC)
        labels = ["B1", "B2"]
        statements: dict[str, tuple[str, tuple[Any, ...]]] = {
            "hold": (
                holds_postgres._HOLD_SQL,
                holds_postgres._hold_params(
                    hold_request(customer.id, showtime_id, labels, max_held=20, token_issued_at=now)
                ),
            ),
            "release": (holds_postgres._RELEASE_SQL, (customer.id, hold_id, now)),
            "seat map": (seat_map._HEAD_AND_STATES_SQL, (showtime_id, customer.id, now, now)),
        }
        found: dict[str, list[str]] = {}
        try:
            for mode in ("force_custom_plan", "force_generic_plan"):
                await raw.execute(f"SET plan_cache_mode = {mode}")
                for name, (sql, params) in statements.items():
                    await raw.execute(f"PREPARE checked AS {sql}")
                    arguments = ", ".join(_literal(value) for value in params)
                    explained = await raw.fetchval(
                        f"EXPLAIN (FORMAT JSON) EXECUTE checked({arguments})"
                    )
                    await raw.execute("DEALLOCATE checked")
                    if isinstance(explained, str):  # no JSON codec on the connection
                        explained = json.loads(explained)
                    plan = explained[0]["Plan"]
                    found[f"{name}, {mode}"] = _unkeyed_reads_of_holds(plan)
        finally:
            await raw.execute("RESET plan_cache_mode")
            await autocommit.execute(text("ALTER TABLE holds RESET (autovacuum_enabled)"))

    assert {name: bad for name, bad in found.items() if bad} == {}
    assert len(found) == 6


def _prepared(
    statement: Executable, dialect: Dialect, params: dict[str, Any]
) -> tuple[str, list[Any]]:
    """`statement` as the driver prepares it, with its arguments in order (None for those a
    plan does not need)."""
    compiled = statement.compile(dialect=dialect)
    names = compiled.construct_params(params, _check=False)  # missing ones: NULL
    state = compiled.construct_expanded_state({name: names.get(name) for name in compiled.binds})
    return state.statement, list(state.positional_parameters)


async def test_the_bookings_statements_are_planned_once_per_connection(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """PostgreSQL plans a prepared statement anew at every run (a custom plan) while its
    generic plan looks costlier than those; planning the booking's hold read (six tables)
    took more of PostgreSQL's CPU than running it. With the seats' status written into them
    (core.db.constant), the booking's two big statements cost the same generic, and after
    the five custom plans PostgreSQL tries first it keeps the generic one."""
    if app.state.db.backend != "postgresql":
        pytest.skip("plan caching is checked on PostgreSQL, the only backend that prepares them")
    show = await seed_showtime(app, rows=10, seats_per_row=20)
    customer = await make_user(app)
    held = await hold(client, customer.headers, show.showtime_id, "A1", "A2")
    assert held.status_code == 201, held.text
    hold_id = uuid.UUID(held.json()["lockToken"])
    showtime_id = uuid.UUID(show.showtime_id)
    now = dt.datetime.now(dt.UTC)
    statements: dict[str, tuple[Executable, dict[str, Any]]] = {
        "hold read": (
            booking_service._LOCK_HOLD_WITH_SHOWTIME.statement,
            {"the_hold": hold_id, "now": now, **loyalty.standing_params(customer.id)},
        ),
        "booking": (
            booking_service._BOOKING_AT_ONCE.statement,
            {
                "the_showtime": showtime_id,
                "the_hold": hold_id,
                "now": now,
                "until": now + dt.timedelta(minutes=15),
                "the_booking": uuid.uuid4(),
                "line_ids": [uuid.uuid4(), uuid.uuid4()],
                "seat_ids": [uuid.uuid4(), uuid.uuid4()],
                "labels": ["A1", "A2"],
                "classes": ["standard", "standard"],
                "prices": [Decimal("9.50"), Decimal("9.50")],
            },
        ),
    }
    generic_plans: dict[str, int] = {}
    async with app.state.db.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        # A season of showtimes in the hall, their seats nearly all available, as the
        # statistics of any cinema's database say.
        await raw.execute(
            "INSERT INTO showtimes SELECT (jsonb_populate_record(NULL::showtimes, to_jsonb(s)"
            " || jsonb_build_object('id', gen_random_uuid(),"
            " 'start_time', s.start_time + n * interval '1 day',"
            " 'end_time', s.end_time + n * interval '1 day'))).*"
            " FROM showtimes s, generate_series(1, 299) n WHERE s.id = $1",
            showtime_id,
        )
        await raw.execute(
            "INSERT INTO showtime_seats (showtime_id, seat_id, status)"
            " SELECT s.id, x.seat_id, 'available' FROM showtimes s"
            " JOIN showtime_seats x ON x.showtime_id = $1 WHERE s.id <> $1",
            showtime_id,
        )
        await raw.execute("ANALYZE showtime_seats, holds, showtimes, seats")
        for name, (statement, params) in statements.items():
            sql, values = _prepared(statement, connection.dialect, params)
            await raw.execute(f"PREPARE checked AS {sql}")
            arguments = ", ".join(_literal(value) for value in values)
            for _ in range(7):  # EXPLAIN picks the plan as a run would, without writing
                await raw.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE checked({arguments})")
            generic_plans[name] = await raw.fetchval(
                "SELECT generic_plans FROM pg_prepared_statements WHERE name = 'checked'"
            )
            await raw.execute("DEALLOCATE checked")
    assert generic_plans == {"hold read": 2, "booking": 2}
