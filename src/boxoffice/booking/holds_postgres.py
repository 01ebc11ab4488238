"""PostgreSQL's hold and release: each one statement, one round trip, in autocommit, on
asyncpg's own pool (core.pgdriver).

The same rules as `holds.lock_seats` and `holds.release` (which SQLite and MariaDB run), put
into one statement of data-modifying CTEs so that a hold costs the database one round trip
instead of nine (BEGIN, customer, showtime, labels, old holds, row locks, insert, update,
COMMIT). A single statement is atomic by itself, so it runs in autocommit.

How a hold stays exact under a rush:
* `locked` takes the row locks of the wanted seats and of the customer's previous hold in
  (seat_id) order, like `lock_seat_rows`, so concurrent holds never deadlock; under READ
  COMMITTED, a row that was changed while we waited is re-read in its committed version.
* `verdict` judges from those locked versions; the writes (`released`, `created`, `seated`)
  happen only when everything holds (`go`), so a refused hold changes nothing.
* The answer row tells the caller which rule failed, in the order the generic path checks
  them.

Seats are reached by key too: the wanted ones and those of the customer's earlier hold by
(showtime, seat), the earlier hold's found among the showtime's held seats, and only when
there is one (an OR of the two had the planner filter every seat of the showtime: ~0.1-0.3 ms
of a hold's ~1 ms on a 300-seat hall); the release looks among the held seats as well.
Rows of `holds` are always reached through an index by the customer and showtime or by id,
never by a join with a CTE: the planner estimates a CTE at one row and, with statistics that
lag behind a growing holds table (an onsale's first minutes), chose to scan the whole table
against it (measured: 10 ms a hold at 18,000 holds instead of 1 ms; tests/test_query_plans.py).

How the cap on a customer's held seats (BOXOFFICE_MAX_HELD_SEATS_PER_CUSTOMER) stays exact
when one customer holds on several showtimes at once: the count of their live holds is read
from the statement's snapshot, taken when it started; a hold committed while we waited for a
lock is not in it, and a lock taken inside the statement cannot change that. So concurrent
holds of one capped customer take turns on the customer's `users` row (`me`, locked before any
seat), and every hold that is made also writes that row (`bumped` here, `holds._take_turn` on
lock-best's path: a no-op UPDATE, i.e. a new row version). Whoever finds, once it has the
lock, a newer version of the row than its snapshot shows (`raced`: the xmin differs) may have
counted without a hold committed meanwhile: it changes nothing and says so, and
`holds.lock_seats` runs it again in a transaction that took the lock first, so the statement's
snapshot is fresh (BEGIN, lock, statement, COMMIT: only when one customer raced themselves).
Uncontended, the cap costs no round trip.

Both statements commit asynchronously (`set_config('synchronous_commit', 'off', true)`: for
their own transaction only): a hold is a claim of a few minutes, not a sale, and waiting for
the disk's flush at each one was most of an onsale's hold latency tail (the rush's hold p99
in six runs before and five after: 86-183 ms, then 41-152; median 109 -> 50). A server crash may
forget the holds and releases of its last fraction of a second: their customers find the hold
gone (410, hold again) or the seats held until the hold would have expired. Nothing is sold
twice or lost that was sold: a booking reads its hold under lock and commits synchronously,
which makes every hold written before it durable too.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from boxoffice.accounts.service import token_is_current_sql
from boxoffice.booking.verdicts import STAFF_ROLES, HoldRequest, HoldVerdict, ReleaseVerdict
from boxoffice.core.db import Database
from boxoffice.core.pgdriver import DriverPool

# Parameters: $1 user_id, $2 showtime_id, $3 labels, $4 now, $5 need_verified,
# $6 closes_after, $7 count, $8 hold_id, $9 labels_json, $10 expires, $11 max_held (0: no cap),
# $12 staff roles (not capped), $13 the token's issue time (NULL: none). Arrays in and out are
# text[]: asyncpg knows that type, where varchar[] would cost a type lookup on each new
# connection.
_HOLD_SQL = f"""
WITH customer AS (
    SELECT email_verified_at IS NOT NULL AS verified, xmin AS version FROM users
    WHERE id = $1 AND is_active AND {token_is_current_sql("$13")}
), me AS MATERIALIZED (
    SELECT xmin AS version FROM users
    WHERE id = $1 AND is_active AND $11 > 0 AND NOT role = ANY($12::text[])
    FOR NO KEY UPDATE
), show AS (
    SELECT screen_id, status, start_time FROM showtimes WHERE id = $2
), wanted AS (
    SELECT s.id AS seat_id, s.label FROM seats s
    JOIN show ON s.screen_id = show.screen_id
    JOIN showtime_seats x ON x.showtime_id = $2 AND x.seat_id = s.id
    WHERE s.label = ANY($3::text[])
), old AS (
    SELECT id FROM holds
    WHERE user_id = $1 AND showtime_id = $2 AND status = 'active'
), locked AS MATERIALIZED (
    SELECT ss.seat_id, ss.status, ss.held_until, ss.hold_id, ss.booking_id
    FROM showtime_seats ss
    WHERE ss.showtime_id = $2
      AND ss.seat_id = ANY(ARRAY(
          SELECT seat_id FROM wanted
          UNION ALL
          SELECT o.seat_id FROM showtime_seats o
          WHERE o.showtime_id = $2 AND o.status = 'held'
            AND o.hold_id = ANY(ARRAY(SELECT id FROM old)) AND EXISTS (SELECT 1 FROM old)
      ))
      AND (SELECT count(*) FROM me) >= 0  -- the customer's lock first, then the seats
    ORDER BY ss.seat_id
    FOR UPDATE
), verdict AS MATERIALIZED (
    SELECT
        (SELECT verified FROM customer) AS verified,
        (SELECT status FROM show) AS show_status,
        (SELECT start_time FROM show) AS starts,
        ARRAY(SELECT label FROM wanted)::text[] AS known,
        ARRAY(
            SELECT w.label FROM wanted w JOIN locked l ON l.seat_id = w.seat_id
            WHERE NOT (
                l.status = 'available'
                OR (l.status = 'held' AND l.held_until < $4)
                OR (l.status = 'held' AND l.booking_id IS NULL
                    AND l.hold_id IN (SELECT id FROM old))
            )
        )::text[] AS taken,
        EXISTS (SELECT 1 FROM me) AS limited,
        (SELECT coalesce(sum(json_array_length(h.seat_labels)), 0) FROM holds h
         WHERE h.user_id = $1 AND h.status = 'active' AND h.showtime_id <> $2
           AND h.expires_at > $4 AND EXISTS (SELECT 1 FROM me)) AS held,
        EXISTS (
            SELECT 1 FROM me, customer WHERE NOT me.version = customer.version
        ) AS raced
), go AS (
    SELECT 1 FROM verdict
    WHERE verified IS NOT NULL AND (verified OR NOT $5)
      AND show_status = 'scheduled' AND starts > $6
      AND cardinality(known) = $7 AND cardinality(taken) = 0
      AND NOT raced AND (NOT limited OR held + $7 <= $11)
), bumped AS (
    UPDATE users SET is_active = is_active
    WHERE id = $1 AND EXISTS (SELECT 1 FROM me) AND EXISTS (SELECT 1 FROM go)
), released AS (
    UPDATE holds SET status = 'released'
    WHERE user_id = $1 AND showtime_id = $2 AND status = 'active'
      AND id = ANY(ARRAY(SELECT id FROM old)) AND EXISTS (SELECT 1 FROM go)
    RETURNING id
), created AS (
    INSERT INTO holds (id, showtime_id, user_id, status, seat_labels, created_at, expires_at,
                       extensions)
    SELECT $8, $2, $1, 'active', CAST($9 AS JSON), $4, $10, 0
    FROM go
    RETURNING id
), seated AS (
    UPDATE showtime_seats ss
    SET status = CASE WHEN w.seat_id IS NULL THEN 'available' ELSE 'held' END,
        hold_id = CASE WHEN w.seat_id IS NULL THEN NULL ELSE $8 END,
        held_until = CASE WHEN w.seat_id IS NULL THEN NULL ELSE $10 END,
        booking_id = NULL
    FROM locked l LEFT JOIN wanted w ON w.seat_id = l.seat_id
    WHERE ss.showtime_id = $2 AND ss.seat_id = l.seat_id
      AND EXISTS (SELECT 1 FROM go)
      AND (w.seat_id IS NOT NULL OR (l.status = 'held' AND l.booking_id IS NULL))
    RETURNING ss.seat_id
)
SELECT verified, show_status, starts, known, taken, limited, held, raced,
       (SELECT count(*) FROM seated) AS seated, (SELECT count(*) FROM created) AS created
FROM verdict, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
"""

# Taken first by the locked retry (see the module's docstring).
_LOCK_CUSTOMER_SQL = "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE"

# Parameters: $1 user_id, $2 hold_id, $3 the token's issue time (NULL: none). One answer row
# even without such a hold: the account is judged first, as on the generic path.
_RELEASE_SQL = f"""
WITH caller AS MATERIALIZED (
    SELECT EXISTS (
        SELECT 1 FROM users WHERE id = $1 AND is_active AND {token_is_current_sql("$3")}
    ) AS customer
), target AS MATERIALIZED (
    SELECT h.id, h.showtime_id, h.status, h.user_id = $1 AS mine
    FROM holds h WHERE h.id = $2
    FOR UPDATE OF h
), go AS (
    SELECT id, showtime_id FROM target
    WHERE mine AND status = 'active' AND (SELECT customer FROM caller)
), locked AS MATERIALIZED (
    SELECT ss.showtime_id, ss.seat_id FROM showtime_seats ss JOIN go
      ON ss.showtime_id = go.showtime_id AND ss.status = 'held' AND ss.hold_id = go.id
    ORDER BY ss.seat_id
    FOR UPDATE OF ss
), freed AS (
    UPDATE showtime_seats ss SET status = 'available', hold_id = NULL, held_until = NULL
    FROM locked l, go
    WHERE ss.showtime_id = l.showtime_id AND ss.seat_id = l.seat_id
      AND ss.hold_id = go.id AND ss.status = 'held' AND ss.booking_id IS NULL
    RETURNING ss.seat_id
), marked AS (
    UPDATE holds SET status = 'released'
    WHERE holds.id = $2 AND EXISTS (SELECT 1 FROM go) RETURNING holds.id
)
SELECT t.status, t.mine, c.customer, (SELECT count(*) FROM marked) AS marked
FROM caller c LEFT JOIN target t ON true,
     (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
"""


async def hold(database: Database, request: HoldRequest, *, locked: bool = False) -> HoldVerdict:
    """The hold statement in autocommit; `locked`: in a transaction that first locks the
    customer's row (after a `raced` verdict)."""
    driver = _driver(database)
    params = _hold_params(request)
    if locked:
        async with driver.transaction() as connection:
            async with driver.translated(connection, _LOCK_CUSTOMER_SQL):
                await connection.execute(_LOCK_CUSTOMER_SQL, request.user_id)
            async with driver.translated(connection, _HOLD_SQL):
                row = await connection.fetchrow(_HOLD_SQL, *params)
    else:
        row = await driver.fetchrow(_HOLD_SQL, *params)
    assert row is not None  # the statement always answers one row
    return HoldVerdict(
        customer_known=row["verified"] is not None,
        customer_verified=bool(row["verified"]),
        showtime_status=row["show_status"],
        starts=row["starts"],
        known_labels=list(row["known"]),
        taken_labels=list(row["taken"]),
        done=row["created"] == 1 and row["seated"] >= len(request.labels),
        limited=row["limited"],
        held_elsewhere=row["held"],
        raced=row["raced"],
    )


def _hold_params(request: HoldRequest) -> tuple[Any, ...]:
    return (
        request.user_id,
        request.showtime_id,
        request.labels,
        request.now,
        request.need_verified,
        request.closes_after,
        len(request.labels),
        request.hold_id,
        json.dumps(request.labels),
        request.expires,
        request.max_held,
        list(STAFF_ROLES),
        request.token_issued_at,
    )


async def release(
    database: Database,
    *,
    hold_id: uuid.UUID,
    user_id: uuid.UUID,
    token_issued_at: dt.datetime | None,
) -> ReleaseVerdict:
    row = await _driver(database).fetchrow(_RELEASE_SQL, user_id, hold_id, token_issued_at)
    assert row is not None  # the statement always answers one row
    return ReleaseVerdict(
        found=bool(row["mine"]),
        customer_active=bool(row["customer"]),
        status=row["status"],
        released=row["marked"] == 1,
    )


def _driver(database: Database) -> DriverPool:
    assert database.driver is not None, "PostgreSQL only"
    return database.driver
