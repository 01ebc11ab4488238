"""asyncpg's own pool, for PostgreSQL's one-statement hot paths: the hold, the release and the
seat map's states.

Each of them is one statement in autocommit, so SQLAlchemy has nothing to do for them but
lend a connection and pass the statement through, and that alone cost more CPU than the rest
of the statement's client side: measured per statement (the release, 3,000 calls), 390 µs
through a pooled SQLAlchemy connection, 290 µs on the driver connection of a SQLAlchemy
checkout, 135 µs on asyncpg's pool. Everything else (sessions, the ORM, migrations) stays on
the engine.

The pool's connections keep no session state (no SET, LISTEN, advisory lock or cursor: every
statement here is autocommit), so a connection going back to the pool is not reset: asyncpg's
default reset is one more round trip per request (`RESET ALL`, `UNLISTEN *`, ...). An open
transaction is still rolled back by asyncpg itself.

Failures come out as the engine's would, so the rest of the app treats them alike:
* no connection to be had (the server down, starting or full) -> `DatabaseUnavailable` (503),
  as the engine's connect hook answers; every connection busy for `acquire_timeout` -> the
  engine's `PoolTimeout` (503, overloaded);
* a deadlock or serialisation failure -> SQLAlchemy's `DBAPIError` around asyncpg's error,
  whose SQLSTATE `is_retryable` reads, so `RetryingRoute` runs the request again;
* a connection lost mid-statement -> `DBAPIError` with `connection_invalidated` (503), and
  every idle connection of the pool is expired, so the next requests connect afresh (the
  engine discards its pool generation the same way); a connection whose statement ended
  without the server's answer is thrown away, never lent again;
* any other database error -> `DBAPIError` (500, logged).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from boxoffice.core.errors import database_unreachable

# SQLSTATEs of a connection that is gone or refused: class 08 (connection exception), 57P0x
# (the server shutting down or starting), 53300 (too many connections).
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
_CONNECT_TIMEOUT = 10.0  # seconds
_DRIVER_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def _is_refusal(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, OSError) or sqlstate.startswith(_UNAVAILABLE_STATES)


def _alive(connection: asyncpg.Connection) -> bool:
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:  # it died, and asyncpg gave it back to the pool already
        return False


def _discard(connection: asyncpg.Connection) -> None:
    with suppress(asyncpg.InterfaceError):  # given back to the pool already: it is closed
        connection.terminate()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """The pool's reset: nothing to reset (see the module's docstring)."""


StatementListener = Callable[[str], None]


class DriverPool:
    """A lazily opened asyncpg pool of at most `size` connections to the engine's database."""

    def __init__(self, url: URL, *, size: int, acquire_timeout: float = 30.0) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._size = size
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._listeners: list[StatementListener] = []

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """Run one statement in autocommit and return its first row."""
        # Plain try blocks rather than the context managers `transaction` uses: on the hottest
        # path their generators cost ~3% of a hold's CPU.
        connection = await self._acquire()
        try:
            return await connection.fetchrow(sql, *args)
        except _DRIVER_ERRORS as exc:
            raise await self._lost_or_failed(connection, sql, exc) from exc
        finally:
            await self._release(connection)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one statement in autocommit and return its rows."""
        connection = await self._acquire()
        try:
            return await connection.fetch(sql, *args)
        except _DRIVER_ERRORS as exc:
            raise await self._lost_or_failed(connection, sql, exc) from exc
        finally:
            await self._release(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a transaction, committed when the block ends without an error.
        Its statements go through `translated`."""
        connection = await self._acquire()
        try:
            async with self.translated(connection, "BEGIN"):
                transaction = connection.transaction()
                await transaction.start()
            try:
                yield connection
            except BaseException:
                if _alive(connection):
                    async with self.translated(connection, "ROLLBACK"):
                        await transaction.rollback()
                raise
            async with self.translated(connection, "COMMIT"):
                await transaction.commit()
        finally:
            await self._release(connection)

    @asynccontextmanager
    async def translated(self, connection: asyncpg.Connection, sql: str) -> AsyncIterator[None]:
        """The driver's errors inside the block as the engine's (see the module's docstring)."""
        try:
            yield
        except _DRIVER_ERRORS as exc:
            raise await self._lost_or_failed(connection, sql, exc) from exc

    async def _lost_or_failed(
        self, connection: asyncpg.Connection, sql: str, exc: BaseException
    ) -> DBAPIError:
        lost = (
            _is_refusal(exc)
            or isinstance(exc, asyncpg.InternalClientError)  # its protocol lost track
            or not _alive(connection)
        )
        if lost or not isinstance(exc, asyncpg.PostgresError):
            # The statement did not end with the server's answer, so the connection's state
            # is unknown (seen: a statement cut by a server shutdown left it "in another
            # operation" for the next request). asyncpg's reset, which this pool skips, would
            # have found that out: the connection is thrown away instead of going back.
            _discard(connection)
        if lost and self._pool is not None:
            # Its siblings died with it, most likely (a restart): reconnect them all.
            await self._pool.expire_connections()
        return DBAPIError(sql, None, exc, connection_invalidated=lost)

    @contextmanager
    def statements(self, listener: StatementListener) -> Iterator[None]:
        """Tell `listener` every statement the driver sends while the block runs (asyncpg's
        query logger; for the statement-count tests). Costs nothing when nobody listens."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                # min_size 0: nothing connects until a request needs it, and a server that is
                # down when the app starts does not keep it from starting.
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._size,
                    reset=_keep_session,
                    timeout=_CONNECT_TIMEOUT,
                )
        return self._pool

    async def _acquire(self) -> asyncpg.Connection:
        pool = self._pool or await self._open()
        # A bounded wait costs a task and a timer per acquire (asyncpg's wait_for), ~5% of a
        # hold's CPU: only a request that may have to wait for a connection pays for one.
        # (Taking a free holder may mean connecting it, bounded by the connect timeout.)
        timeout = None if pool.get_idle_size() else self._acquire_timeout
        try:
            connection = await pool.acquire(timeout=timeout)
        except TimeoutError:
            # The engine's pool timeout, so that one handler answers both (503, overloaded).
            raise PoolTimeout(
                f"all {self._size} connections of the hot pool stayed busy for {timeout} s"
            ) from None
        except _DRIVER_ERRORS as exc:
            raise database_unreachable(exc) from exc
        for listener in self._listeners:
            connection.add_query_logger(_QueryLogger(listener))
        return connection

    async def _release(self, connection: asyncpg.Connection) -> None:
        if self._listeners and _alive(connection):
            for listener in self._listeners:
                connection.remove_query_logger(_QueryLogger(listener))
        if self._pool is not None:
            await self._pool.release(connection)  # one that died is back already


@dataclass(frozen=True)
class _QueryLogger:
    """asyncpg's query logger telling a listener the statement (equal for equal listeners,
    so that it can be removed again)."""

    listener: StatementListener

    def __call__(self, record: Any) -> None:
        self.listener(record.query)
