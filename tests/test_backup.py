"""`boxoffice db backup` and `db restore`, run as the real command on each backend.

Each test works on a database of its own (a fresh file, or a fresh database on the test
server, migrated to head), so restoring never touches the session's shared database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from boxoffice.app import create_app
from boxoffice.booking.models import Booking
from boxoffice.core.db import create_engine
from boxoffice.migrations import alembic_config
from tests.booking_helpers import book, book_and_pay, seat_statuses, seed_showtime
from tests.conftest import Backend, make_settings
from tests.helpers import make_user

BOXOFFICE = str(Path(sys.executable).parent / "boxoffice")


# --- set-up ----------------------------------------------------------------------------------


async def _server_admin(url: str, statement: str) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
async def fresh(backend: Backend, tmp_path: Path) -> AsyncIterator[Backend]:
    """A database of the test's backend for this test alone, migrated to head."""
    if backend.name == "mysql" and not (shutil.which("mariadb-dump") or shutil.which("mysqldump")):
        pytest.skip("no mariadb-dump or mysqldump on PATH")
    if backend.name == "sqlite":
        url = f"sqlite:///{tmp_path / 'live' / 'boxoffice.db'}"
    else:
        name = f"boxoffice_backup_{uuid.uuid4().hex[:10]}"
        await _server_admin(backend.url, f"CREATE DATABASE {name}")
        url = make_url(backend.url).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    try:
        yield Backend(backend.name, url)
    finally:
        if backend.name == "postgres":
            name = make_url(url).database
            await _server_admin(backend.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        elif backend.name == "mysql":
            await _server_admin(backend.url, f"DROP DATABASE IF EXISTS {make_url(url).database}")


@asynccontextmanager
async def running_app(
    database: Backend, var_dir: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on `database`, as a server would run it; stopped (engine disposed) on exit."""
    application = create_app(make_settings(database, var_dir))
    async with (
        LifespanManager(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://testserver"
        ) as http,
    ):
        yield application, http


def run_cli(
    database: Backend, var_dir: Path, *args: str, stdin: str = "", path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    env.update(
        BOXOFFICE_DATABASE_URL=database.url,
        BOXOFFICE_VAR_DIR=str(var_dir),
        BOXOFFICE_LOG_LEVEL="WARNING",
    )
    if path is not None:
        env["PATH"] = path
    var_dir.mkdir(parents=True, exist_ok=True)
    # cwd: keep the repository's .env (if any) out of it.
    return subprocess.run(
        [BOXOFFICE, "db", *args],
        env=env,
        cwd=var_dir,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def cli(database: Backend, var_dir: Path, *args: str, **kwargs: Any) -> Any:
    return await asyncio.to_thread(run_cli, database, var_dir, *args, **kwargs)


async def snapshot(app: FastAPI) -> dict[str, Any]:
    """Bookings with their seats, tickets and payments, the seat inventory, the users."""
    queries = {
        "users": "SELECT email FROM users",
        "bookings": "SELECT id, status, final_amount, refunded_amount FROM bookings",
        "lines": "SELECT booking_id, seat_label, unit_price, refunded FROM booking_lines",
        "tickets": "SELECT id, booking_id, seat_label, status FROM tickets",
        "payments": "SELECT booking_id, provider_ref, status, amount, refunded_amount "
        "FROM payments",
        "refunds": "SELECT booking_id, amount FROM refunds",
        "seats": "SELECT seat_id, status, booking_id FROM showtime_seats",
    }
    async with app.state.db.session(write=False) as session:
        return {
            name: sorted(tuple(str(v) for v in row) for row in await session.execute(text(sql)))
            for name, sql in queries.items()
        }


# --- backup and restore ----------------------------------------------------------------------


async def test_restore_brings_back_the_bookings_of_the_backup(
    fresh: Backend, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    async with running_app(fresh, var) as (app, http):
        show = await seed_showtime(app)
        alice = await make_user(app)
        bob = await make_user(app)
        paid = await book_and_pay(http, alice.headers, show.showtime_id, "A1", "A2")
        other = await book_and_pay(http, bob.headers, show.showtime_id, "B1")
        pending = (await book(http, bob.headers, show.showtime_id, "C1"))["booking"]
        before = await snapshot(app)

        # Online: the server is up while the backup is made.
        result = await cli(fresh, var, "backup")
        assert result.returncode == 0, result.stderr

        # Later changes: a refund, a new customer with a paid booking.
        cancelled = await http.post(f"/api/bookings/{paid['id']}/cancel", headers=alice.headers)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "refunded"
        carol = await make_user(app)
        later = await book_and_pay(http, carol.headers, show.showtime_id, "D1")
        assert await snapshot(app) != before

    written = Path(result.stdout.split("backup written to ")[1].split(" (")[0])
    extension = {"sqlite": "sqlite3", "postgres": "dump", "mysql": "sql"}[fresh.name]
    assert written.parent == var / "backups"
    assert written.name.startswith(f"boxoffice-{fresh.name.replace('postgres', 'postgresql')}-")
    assert written.suffix == f".{extension}"
    assert written.stat().st_mode & 0o777 == 0o600  # password hashes and personal data

    restored = await cli(fresh, var, "restore", str(written), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "boxoffice db upgrade" in restored.stdout
    assert "boxoffice payments reconcile" in restored.stdout

    async with running_app(fresh, var) as (app, http):
        assert await snapshot(app) == before
        booking = await http.get(f"/api/bookings/{paid['id']}", headers=alice.headers)
        assert booking.status_code == 200, booking.text
        assert booking.json()["booking"]["status"] == "confirmed"
        assert sorted(booking.json()["booking"]["seatNumbers"]) == ["A1", "A2"]
        tickets = await http.get(f"/api/bookings/{paid['id']}/tickets", headers=alice.headers)
        assert tickets.status_code == 200, tickets.text
        assert len(tickets.json()["tickets"]) == 2
        kept = await http.get(f"/api/bookings/{other['id']}", headers=bob.headers)
        assert kept.json()["booking"]["status"] == "confirmed"
        waiting = await http.get(f"/api/bookings/{pending['id']}", headers=bob.headers)
        assert waiting.json()["booking"]["status"] == "pending"
        seats = await seat_statuses(http, show.showtime_id)
        assert seats["A1"]["status"] == seats["A2"]["status"] == seats["B1"]["status"]
        assert seats["A1"]["status"] != seats["D1"]["status"]  # D1 was sold after the backup
        async with app.state.db.session(write=False) as session:
            for booking_id, expected in ((later["id"], None), (paid["id"], "confirmed")):
                status = await session.scalar(
                    select(Booking.status).where(Booking.id == uuid.UUID(booking_id))
                )
                assert status == expected


async def test_restore_refuses_what_is_not_a_backup_of_this_app(
    fresh: Backend, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    async with running_app(fresh, var) as (app, _):
        user = await make_user(app)
    backup_file = tmp_path / "backup.bin"
    assert (await cli(fresh, var, "backup", "--output", str(backup_file))).returncode == 0

    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 100)
    other_sqlite = tmp_path / "other.db"
    with sqlite3.connect(other_sqlite) as conn:
        conn.execute("CREATE TABLE things (x)")
    for wrong in (junk, other_sqlite, tmp_path / "missing.dump"):
        result = await cli(fresh, var, "restore", str(wrong), "--yes")
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith("error: "), result.stderr

    # A real backup still asks first; "no" changes nothing.
    declined = await cli(fresh, var, "restore", str(backup_file), stdin="n\n")
    assert declined.returncode == 1, declined.stdout + declined.stderr
    assert "restored" not in declined.stdout

    async with running_app(fresh, var) as (app, _):
        emails = (await snapshot(app))["users"]
    assert (user.email,) in emails


@pytest.mark.backends("sqlite")
async def test_sqlite_restore_refuses_while_a_server_has_the_database_open(
    fresh: Backend, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    backup_file = tmp_path / "backup.sqlite3"
    async with running_app(fresh, var) as (app, _):
        user = await make_user(app)
        assert (await cli(fresh, var, "backup", "-o", str(backup_file))).returncode == 0
        await make_user(app)
        result = await cli(fresh, var, "restore", str(backup_file), "--yes")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "in use" in result.stderr
        assert len((await snapshot(app))["users"]) == 2  # untouched
    # Stopped, the same restore goes through.
    assert (await cli(fresh, var, "restore", str(backup_file), "--yes")).returncode == 0
    async with running_app(fresh, var) as (app, _):
        assert (await snapshot(app))["users"] == [(user.email,)]


@pytest.mark.backends("sqlite")
async def test_sqlite_backup_is_consistent_while_writers_commit(
    fresh: Backend, tmp_path: Path
) -> None:
    """A writer commits batches of three cities in a loop while the backup runs: the copy
    passes SQLite's checks and holds whole batches only, and everything committed before the
    backup started."""
    path = make_url(fresh.url).database
    assert path
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def insert_batch(conn: sqlite3.Connection, batch: str, size: int, pad: int = 0) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO cities (id, name, timezone, created_at, updated_at) "
            "VALUES (?, ?, 'UTC', ?, ?)",
            [(uuid.uuid4().hex, f"{batch}/{i}/{'x' * pad}", now, now) for i in range(size)],
        )
        conn.execute("COMMIT")

    setup = connect()
    insert_batch(setup, "bulk", 3 * 5000, pad=1000)  # some megabytes to copy
    setup.close()

    stop = threading.Event()
    committed: list[int] = []

    def writer() -> None:
        conn = connect()
        try:
            while not stop.is_set():
                insert_batch(conn, f"batch{len(committed)}", 3)
                committed.append(1)
        finally:
            conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not committed:
            await asyncio.sleep(0.01)
        before = len(committed)
        backup_file = tmp_path / "online.sqlite3"
        result = await cli(fresh, tmp_path / "var", "backup", "--output", str(backup_file))
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr

    with sqlite3.connect(backup_file) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("PRAGMA foreign_key_check").fetchall() == []
        sizes = copy.execute(
            "SELECT substr(name, 1, instr(name, '/') - 1) AS batch, count(*) FROM cities "
            "GROUP BY batch"
        ).fetchall()
        assert copy.execute("SELECT version_num FROM alembic_version").fetchone()
    batches = dict(sizes)
    assert batches.pop("bulk") == 3 * 5000
    assert all(count == 3 for count in batches.values()), batches
    assert before <= len(batches) <= len(committed)


# --- server tools ----------------------------------------------------------------------------


@pytest.mark.backends("postgres")
async def test_pg_dump_missing_or_older_than_the_server_is_a_clear_error(
    fresh: Backend, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    missing = await cli(fresh, tmp_path / "var", "backup", path=str(empty))
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "pg_dump not found" in missing.stderr

    old = tmp_path / "old-bin"
    old.mkdir()
    fake = old / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    fake.chmod(0o755)
    too_old = await cli(fresh, tmp_path / "var", "backup", path=str(old))
    assert too_old.returncode == 2, too_old.stdout + too_old.stderr
    assert "pg_dump 9 is older than the PostgreSQL" in too_old.stderr
    assert not (tmp_path / "var" / "backups").exists() or not any(
        (tmp_path / "var" / "backups").iterdir()
    )


@pytest.mark.backends("postgres", "mysql")
async def test_restore_refuses_a_database_with_tables_the_backup_does_not_know(
    fresh: Backend, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    backup_file = tmp_path / "before.dump"
    assert (await cli(fresh, var, "backup", "-o", str(backup_file))).returncode == 0
    engine = create_engine(fresh.url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE later_feature (id INTEGER PRIMARY KEY)"))
    finally:
        await engine.dispose()
    result = await cli(fresh, var, "restore", str(backup_file), "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "later_feature" in result.stderr
    assert "boxoffice db downgrade" in result.stderr
