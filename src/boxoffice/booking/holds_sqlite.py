"""SQLite's hold and release: one short synchronous transaction on the event loop.

The same rules as `holds.lock_seats` and `holds.release`. Through aiosqlite every statement
is several round trips to the driver's thread (about 54 for a hold through the ORM, 6 ms);
SQLite itself needs some tens of microseconds per statement. So the hottest writes run on a
plain `sqlite3` connection of this process, inside the write turn the request already holds
(`core.db.WriteTurn`: no other writer of any process is active), and block the event loop
for well under a millisecond. Values are stored exactly as SQLAlchemy stores them (UUIDs as
32 hex digits, naive UTC datetimes with microseconds, JSON as text).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from boxoffice.accounts.service import TOKEN_IS_CURRENT_SQLITE, sqlite_issued_at
from boxoffice.booking.verdicts import STAFF_ROLES, HoldRequest, HoldVerdict, ReleaseVerdict
from boxoffice.core.db import sqlite_time


def _aware(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


# The rows a hold may take (`scheduling.service.seat_is_free`).
_FREE = "(ss.status = 'available' OR (ss.status = 'held' AND ss.held_until < ?))"

_Verdict = TypeVar("_Verdict")


def _transaction(
    conn: sqlite3.Connection, work: Callable[[], _Verdict], keep: Callable[[_Verdict], bool]
) -> _Verdict:
    """`work` in one write transaction: committed if `keep(verdict)`, rolled back otherwise
    (a refused hold may have written before it found a seat taken) and on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        verdict = work()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT" if keep(verdict) else "ROLLBACK")
    return verdict


def hold(conn: sqlite3.Connection, request: HoldRequest) -> HoldVerdict:
    return _transaction(conn, lambda: _hold(conn, request), lambda verdict: verdict.done)


def _hold(conn: sqlite3.Connection, request: HoldRequest) -> HoldVerdict:
    user, show, hold_hex = request.user_id.hex, request.showtime_id.hex, request.hold_id.hex
    labels = request.labels
    # One row even without the showtime: the account is judged first, as on the generic path.
    verified, role, status, start_time, screen_id = conn.execute(
        "SELECT u.verified, u.role, st.status, st.start_time, st.screen_id FROM (SELECT 1)"
        " LEFT JOIN (SELECT email_verified_at IS NOT NULL AS verified, role FROM users"
        f" WHERE id = ? AND is_active AND {TOKEN_IS_CURRENT_SQLITE}) u"
        " LEFT JOIN showtimes st ON st.id = ?",
        (user, sqlite_issued_at(request.token_issued_at), show),
    ).fetchone()
    # The cap needs no lock here: the write turn lets one writer in at a time.
    limited = request.max_held > 0 and role is not None and role not in STAFF_ROLES
    refused = HoldVerdict(
        customer_known=verified is not None,
        customer_verified=bool(verified),
        showtime_status=status,
        starts=_aware(start_time),
        known_labels=[],
        taken_labels=[],
        done=False,
    )
    if (
        verified is None
        or (request.need_verified and not verified)
        or status != "scheduled"
        or start_time <= sqlite_time(request.closes_after)
    ):
        return refused
    marks = ",".join("?" * len(labels))
    seats = dict(
        conn.execute(
            "SELECT s.label, s.id FROM seats s JOIN showtime_seats ss"
            " ON ss.seat_id = s.id AND ss.showtime_id = ?"
            f" WHERE s.screen_id = ? AND s.label IN ({marks})",
            (show, screen_id, *labels),
        ).fetchall()
    )
    if any(label not in seats for label in labels):
        return replace(refused, known_labels=[label for label in labels if label in seats])
    stamp, expires = sqlite_time(request.now), sqlite_time(request.expires)
    # The holds this one replaces and, with the cap, the seats held live on other showtimes.
    mine = conn.execute(
        "SELECT id, showtime_id = ?, json_array_length(seat_labels) FROM holds"
        " WHERE user_id = ? AND status = 'active' AND (showtime_id = ? OR (? AND expires_at > ?))",
        (show, user, show, limited, stamp),
    ).fetchall()
    old = [hold_id for hold_id, here, _ in mine if here]
    held = sum(count for _, here, count in mine if not here)
    if limited and held + len(labels) > request.max_held:
        return replace(refused, known_labels=labels, limited=True, held_elsewhere=held)
    if old:
        old_marks = ",".join("?" * len(old))
        conn.execute(
            "UPDATE showtime_seats SET status = 'available', hold_id = NULL, held_until = NULL"
            f" WHERE showtime_id = ? AND hold_id IN ({old_marks}) AND status = 'held'"
            " AND booking_id IS NULL",
            (show, *old),
        )
        conn.execute(f"UPDATE holds SET status = 'released' WHERE id IN ({old_marks})", old)
    conn.execute(
        "INSERT INTO holds (id, showtime_id, user_id, status, seat_labels, created_at,"
        " expires_at, extensions) VALUES (?, ?, ?, 'active', ?, ?, ?, 0)",
        (hold_hex, show, user, json.dumps(labels), stamp, expires),
    )
    seat_ids = [seats[label] for label in labels]
    seat_marks = ",".join("?" * len(seat_ids))
    taken = conn.execute(
        "UPDATE showtime_seats AS ss SET status = 'held', hold_id = ?, held_until = ?,"
        f" booking_id = NULL WHERE ss.showtime_id = ? AND ss.seat_id IN ({seat_marks})"
        f" AND {_FREE}",
        (hold_hex, expires, show, *seat_ids, stamp),
    ).rowcount
    if taken == len(seat_ids):
        return replace(refused, known_labels=labels, done=True)
    ours = {
        row[0]
        for row in conn.execute(
            "SELECT seat_id FROM showtime_seats WHERE showtime_id = ?"
            f" AND seat_id IN ({seat_marks}) AND hold_id = ?",
            (show, *seat_ids, hold_hex),
        )
    }
    return replace(
        refused,
        known_labels=labels,
        taken_labels=[label for label in labels if seats[label] not in ours],
    )


def release(
    conn: sqlite3.Connection,
    *,
    hold_id: uuid.UUID,
    user_id: uuid.UUID,
    token_issued_at: dt.datetime | None,
) -> ReleaseVerdict:
    return _transaction(
        conn,
        lambda: _release(conn, hold_id.hex, user_id.hex, sqlite_issued_at(token_issued_at)),
        lambda verdict: verdict.released,
    )


def _release(
    conn: sqlite3.Connection, hold_hex: str, user: str, issued: str | None
) -> ReleaseVerdict:
    # One row even without such a hold: the account is judged first, as on the generic path.
    status, mine, show, active = conn.execute(
        "SELECT h.status, h.user_id = ?, h.showtime_id, c.active FROM (SELECT EXISTS"
        f" (SELECT 1 FROM users WHERE id = ? AND is_active AND {TOKEN_IS_CURRENT_SQLITE})"
        " AS active) c LEFT JOIN holds h ON h.id = ?",
        (user, user, issued, hold_hex),
    ).fetchone()
    released = bool(mine and active and status == "active")
    if released:
        conn.execute(
            "UPDATE showtime_seats SET status = 'available', hold_id = NULL, held_until = NULL"
            " WHERE showtime_id = ? AND hold_id = ? AND status = 'held' AND booking_id IS NULL",
            (show, hold_hex),
        )
        conn.execute("UPDATE holds SET status = 'released' WHERE id = ?", (hold_hex,))
    return ReleaseVerdict(
        found=bool(mine), customer_active=bool(active), status=status, released=released
    )
