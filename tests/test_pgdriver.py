"""asyncpg's own pool for PostgreSQL's hot statements (core.pgdriver) fails the way the engine
does: 503 for a database that is gone, refuses or is saturated, a retryable error for a lost
deadlock, and a pool that reconnects by itself after its connections died."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from boxoffice.core.errors import DatabaseUnavailable, install_error_handlers, is_retryable
from boxoffice.core.pgdriver import DriverPool, statements
from tests.conftest import Backend

pytestmark = pytest.mark.backends("postgres")


def _driver(backend: Backend, **options: float) -> DriverPool:
    size = int(options.pop("size", 2))
    return DriverPool(make_url(backend.url), size=size, **options)


async def _server(backend: Backend) -> asyncpg.Connection:
    return await asyncpg.connect(make_url(backend.url).render_as_string(hide_password=False))


async def test_a_connection_killed_mid_statement_fails_as_lost_and_the_pool_reconnects(
    backend: Backend,
) -> None:
    driver = _driver(backend, size=1)
    admin = await _server(backend)
    try:
        before = await driver.fetchrow("SELECT pg_backend_pid() AS pid")
        assert before is not None
        running = asyncio.create_task(driver.fetchrow("SELECT pg_sleep(30) AS slept"))
        await asyncio.sleep(0.3)
        await admin.execute("SELECT pg_terminate_backend($1)", before["pid"])

        with pytest.raises(DBAPIError) as lost:
            await running
        # What the error handler answers 503 for, as for the engine's invalidated connections.
        assert lost.value.connection_invalidated
        assert not is_retryable(lost.value)

        after = await driver.fetchrow("SELECT pg_backend_pid() AS pid")
        assert after is not None
        assert after["pid"] != before["pid"]
    finally:
        await admin.close()
        await driver.close()


async def test_a_server_that_is_not_there_answers_503() -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    driver = DriverPool(make_url("postgresql://postgres@127.0.0.1:9/none"), size=1)
    try:
        with pytest.raises(DatabaseUnavailable) as refused:
            await driver.fetchrow("SELECT 1")
        assert refused.value.status == 503
    finally:
        await driver.close()


async def test_every_connection_busy_for_the_acquire_timeout_answers_503(backend: Backend) -> None:
    driver = _driver(backend, size=1, acquire_timeout=0.3)
    release = asyncio.Event()

    async def occupy() -> None:
        async with driver.transaction():
            await release.wait()

    # What a client gets: the app's error handlers (the engine's pool timeout's answer).
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/one")
    async def one() -> dict[str, int]:
        await driver.fetchrow("SELECT 1")
        return {"one": 1}

    busy = asyncio.create_task(occupy())
    try:
        await asyncio.sleep(0.2)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            overloaded = await http.get("/one")
        assert overloaded.status_code == 503
        assert overloaded.json()["code"] == "service_unavailable"
        assert "overloaded" in overloaded.json()["detail"]
    finally:
        release.set()
        await busy
        await driver.close()


async def test_a_lost_deadlock_is_retryable_and_rolled_back(backend: Backend) -> None:
    driver = _driver(backend, size=2)
    both_locked_first = asyncio.Barrier(2)

    async def lock(first: int, second: int) -> None:
        async with driver.transaction() as connection:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", first)
            await both_locked_first.wait()
            async with driver.translated(connection, "lock"):
                await connection.execute("SELECT pg_advisory_xact_lock($1)", second)

    try:
        outcomes = await asyncio.gather(lock(1, 2), lock(2, 1), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failures) == 1, outcomes  # PostgreSQL aborts one of the two
        assert isinstance(failures[0], DBAPIError)
        assert is_retryable(failures[0])  # RetryingRoute runs the request again
        assert not failures[0].connection_invalidated

        # Nothing of either transaction is left holding a lock.
        admin = await _server(backend)
        try:
            for key in (1, 2):
                assert await admin.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)
        finally:
            await admin.close()
    finally:
        await driver.close()


async def test_a_connection_goes_back_without_a_reset_round_trip_and_with_no_transaction(
    backend: Backend,
) -> None:
    driver = _driver(backend, size=1)
    sent: list[str] = []
    try:
        with statements(sent.append):
            await driver.fetchrow("SELECT 1")
            await driver.fetchrow("SELECT 2")
        assert sent == ["SELECT 1", "SELECT 2"]

        # asyncpg's default reset (RESET ALL, UNLISTEN *, ...: a round trip per request) would
        # have undone this between the two uses of the pool's one connection.
        await driver.fetchrow("SELECT set_config('application_name', 'not reset', false)")
        kept = await driver.fetchrow("SELECT current_setting('application_name') AS name")
        assert kept is not None
        assert kept["name"] == "not reset"

        with contextlib.suppress(RuntimeError):
            async with driver.transaction() as connection:
                await connection.execute("SELECT pg_advisory_xact_lock(7)")
                raise RuntimeError("the handler failed")
        row = await driver.fetchrow(
            "SELECT pg_current_xact_id_if_assigned() IS NULL AS idle,"
            " pg_try_advisory_xact_lock(7) AS free"
        )
        assert row is not None
        assert row["idle"]
        assert row["free"]
    finally:
        await driver.close()


async def test_a_connection_whose_statement_failed_before_the_server_answered_is_not_reused(
    backend: Backend,
) -> None:
    """The pool skips asyncpg's reset, which doubled as a health check: a connection whose
    statement ended without the server's answer (here: the driver refused to send it, missing
    an argument; under a database restart: a statement cut mid-way) is thrown away, while one
    that got the server's error answer stays."""
    driver = _driver(backend, size=1)
    try:
        first = await driver.fetchrow("SELECT pg_backend_pid() AS pid")
        assert first is not None

        with pytest.raises(DBAPIError) as server_said_no:
            await driver.fetchrow("SELECT 1 / $1::int AS boom", 0)
        assert not server_said_no.value.connection_invalidated  # a 500: a bug, not an outage
        same = await driver.fetchrow("SELECT pg_backend_pid() AS pid")
        assert same is not None
        assert same["pid"] == first["pid"]

        with pytest.raises(DBAPIError) as unsent:
            await driver.fetchrow("SELECT $1::int AS n")
        assert not unsent.value.connection_invalidated
        fresh = await driver.fetchrow("SELECT pg_backend_pid() AS pid")
        assert fresh is not None
        assert fresh["pid"] != first["pid"]
    finally:
        await driver.close()
