"""The benchmark server: boxoffice's own app plus two ceiling endpoints measured in the same run.

* `GET /bench/constant` answers a constant JSON through the same stack (uvicorn, FastAPI,
  boxoffice's middleware): no route of ours can be faster than this (the framework ceiling).
* `POST /bench/raw/lock-seats` and `DELETE /bench/raw/lock-seats/{token}` do the same hold
  (and release) as `/api/bookings/lock-seats` with the raw driver in one statement and no
  checks beyond the seat condition: what the database allows at all (the database ceiling).
  They reach the seats by the same keys as the app's statements (the release: among the
  showtime's held seats), so the ceiling is never the slower statement.
  On PostgreSQL this is asyncpg (its pool with no reset round trip on release, like the
  app's own pool for these statements, core.pgdriver); on SQLite the standard library's
  sqlite3 (one short write transaction, since SQLite has no data-modifying CTE, run on the
  event loop inside the write turn).

Started by `bench/run.py` as `boxoffice serve --app bench.ceilings:create_bench_app --workers 2`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI
from pydantic import BaseModel

from boxoffice.app import create_app
from boxoffice.core.db import WriteTurn, normalize_url

PG_HOLD = """
WITH hold AS (
    INSERT INTO holds (id, showtime_id, user_id, status, seat_labels, created_at, expires_at,
                       extensions)
    VALUES ($1, $2, $3, 'active', $4::text::json, $5, $6, 0)
    RETURNING id, expires_at
)
UPDATE showtime_seats AS ss
SET status = 'held', hold_id = hold.id, held_until = hold.expires_at
FROM hold, showtimes AS st, seats AS s,
     (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
WHERE st.id = $2 AND s.screen_id = st.screen_id AND s.label = ANY($7::text[])
  AND ss.showtime_id = $2 AND ss.seat_id = s.id
  AND (ss.status = 'available' OR (ss.status = 'held' AND ss.held_until < $5))
"""

PG_RELEASE = """
WITH hold AS (
    UPDATE holds SET status = 'released' WHERE id = $1 AND status = 'active'
    RETURNING id, showtime_id
)
UPDATE showtime_seats AS ss SET status = 'available', hold_id = NULL, held_until = NULL
FROM hold, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
WHERE ss.showtime_id = hold.showtime_id AND ss.status = 'held' AND ss.hold_id = hold.id
"""


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Nothing to reset: the ceiling's statements leave no session state."""


class RawHoldIn(BaseModel):
    showtimeId: uuid.UUID
    seatNumbers: list[str]
    userId: uuid.UUID


def create_bench_app() -> FastAPI:
    app = create_app()
    routes_before = len(app.router.routes)
    url = normalize_url(app.state.settings.database_url)
    backend = url.get_backend_name()
    state: dict[str, Any] = {}

    @app.get("/bench/constant", include_in_schema=False)
    async def constant() -> dict[str, Any]:
        return {"status": "ok", "items": [1, 2, 3]}

    if backend == "postgresql":

        async def pool() -> asyncpg.Pool:
            if "pool" not in state:
                state["pool"] = await asyncpg.create_pool(
                    user=url.username,
                    password=url.password,
                    host=url.host,
                    port=url.port,
                    database=url.database,
                    min_size=4,
                    max_size=10,
                    # As the app's own pool (core.pgdriver): no reset round trip on release.
                    reset=_keep_session,
                )
            return state["pool"]

        async def hold_db(body: RawHoldIn, hold_id: uuid.UUID, now: dt.datetime) -> int:
            async with (await pool()).acquire() as conn:
                status = await conn.execute(
                    PG_HOLD,
                    hold_id,
                    body.showtimeId,
                    body.userId,
                    json.dumps(body.seatNumbers),
                    now,
                    now + dt.timedelta(minutes=10),
                    body.seatNumbers,
                )
            return int(status.split()[-1])

        async def release_db(token: uuid.UUID) -> None:
            async with (await pool()).acquire() as conn:
                await conn.execute(PG_RELEASE, token)

    else:
        path = url.database or ""

        def connection() -> sqlite3.Connection:
            if "conn" not in state:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                for pragma in ("busy_timeout=10000", "synchronous=NORMAL"):  # as the app's
                    conn.execute(f"PRAGMA {pragma}")
                state["conn"] = conn
            return state["conn"]  # type: ignore[no-any-return]

        # The app's own write turn (and lock file): the same coordination across processes.
        lock = WriteTurn(Path(f"{path}.writelock"))

        def hold_sync(body: RawHoldIn, hold_id: uuid.UUID, now: dt.datetime) -> int:
            conn = connection()
            naive = now.replace(tzinfo=None)
            expires = naive + dt.timedelta(minutes=10)
            marks = ",".join("?" * len(body.seatNumbers))
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO holds (id, showtime_id, user_id, status, seat_labels,"
                    " created_at, expires_at, extensions)"
                    " VALUES (?, ?, ?, 'active', ?, ?, ?, 0)",
                    (
                        hold_id.hex,
                        body.showtimeId.hex,
                        body.userId.hex,
                        json.dumps(body.seatNumbers),
                        naive,
                        expires,
                    ),
                )
                taken = conn.execute(
                    "UPDATE showtime_seats SET status = 'held', hold_id = ?, held_until = ?"
                    " WHERE showtime_id = ? AND seat_id IN (SELECT s.id FROM seats s"
                    " JOIN showtimes st ON st.screen_id = s.screen_id"
                    f" WHERE st.id = ? AND s.label IN ({marks}))"
                    " AND (status = 'available' OR (status = 'held' AND held_until < ?))",
                    (
                        hold_id.hex,
                        expires,
                        body.showtimeId.hex,
                        body.showtimeId.hex,
                        *body.seatNumbers,
                        naive,
                    ),
                ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return int(taken)

        def release_sync(token: uuid.UUID) -> None:
            conn = connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "UPDATE showtime_seats SET status = 'available', hold_id = NULL,"
                    " held_until = NULL WHERE hold_id = ?"
                    " AND showtime_id = (SELECT showtime_id FROM holds WHERE id = ?)",
                    (token.hex, token.hex),
                )
                conn.execute("UPDATE holds SET status = 'released' WHERE id = ?", (token.hex,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        # Synchronously on the event loop, inside the write turn that every writer of every
        # process takes (so the lock is free and nothing waits): the fastest way to SQLite.
        async def hold_db(body: RawHoldIn, hold_id: uuid.UUID, now: dt.datetime) -> int:
            async with lock:
                return hold_sync(body, hold_id, now)

        async def release_db(token: uuid.UUID) -> None:
            async with lock:
                release_sync(token)

    @app.post("/bench/raw/lock-seats", status_code=201, include_in_schema=False)
    async def raw_hold(body: RawHoldIn) -> dict[str, Any]:
        hold_id = uuid.uuid4()
        taken = await hold_db(body, hold_id, dt.datetime.now(dt.UTC))
        return {"lockToken": str(hold_id), "taken": taken}

    @app.delete("/bench/raw/lock-seats/{token}", status_code=204, include_in_schema=False)
    async def raw_release(token: uuid.UUID) -> None:
        await release_db(token)

    # The ceilings go first in the route table: matching them costs the least any route can.
    ceilings = app.router.routes[routes_before:]
    del app.router.routes[routes_before:]
    app.router.routes[0:0] = ceilings
    return app
