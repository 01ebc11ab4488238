"""asyncpg's own pool, for PostgreSQL's one-statement hot paths: the hold, the release and the
seat map's states.

Each of them is one statement in autocommit, so SQLAlchemy has nothing to do for them but
lend a connection and pass the statement through, and that alone cost more CPU than the rest
of the statement's client side: measured per statement (the release, 3,000 calls), 390 µs
through a pooled SQLAlchemy connection, 290 µs on the driver connection of a SQLAlchemy
checkout, 135 µs on asyncpg's pool. Everything else (sessions, the ORM, migrations) stays on
the engine.

`SessionStatement` is the same saving for the statements of a unit of work: a Core statement
compiled once and sent on the request session's own asyncpg connection, inside its
transaction, instead of through the session (measured per statement, a keyed one-row read:
~220 µs of client CPU through the `AsyncSession`, ~55 µs on its driver connection).

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
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import ClauseElement, Executable
from sqlalchemy.engine import URL, CursorResult, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler

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
# Who is told the statements sent past the engine (`statements`): the statement-count tests.
_LISTENERS: list[StatementListener] = []


@contextmanager
def statements(listener: StatementListener) -> Iterator[None]:
    """Tell `listener` every statement sent on a driver connection while the block runs (the
    hot pool's through asyncpg's query logger, `SessionStatement`'s directly; the engine's own
    are told by its `before_cursor_execute` event). Costs nothing when nobody listens."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


class DriverPool:
    """A lazily opened asyncpg pool of at most `size` connections to the engine's database."""

    def __init__(self, url: URL, *, size: int, acquire_timeout: float = 30.0) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._size = size
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

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
        for listener in _LISTENERS:
            connection.add_query_logger(_QueryLogger(listener))
        return connection

    async def _release(self, connection: asyncpg.Connection) -> None:
        if _LISTENERS and _alive(connection):
            for listener in _LISTENERS:
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


class Row(asyncpg.Record):
    """A row whose columns read as attributes too, as SQLAlchemy's rows do."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters' names in $n order
    processors: tuple[Callable[[Any], Any] | None, ...]  # their types' bind processors
    fixed: Mapping[str, Any]  # the values the statement carries itself (`.values(status=...)`)


class SessionStatement:
    """A Core statement for a unit of work's hot path, compiled once: on PostgreSQL sent on
    the session's own asyncpg connection, in its transaction; elsewhere through the session.

    Sending it through the session costs ~150-250 µs of CPU more a statement (SQLAlchemy's
    execution context, compiled-cache lookup, result metadata; see the module's docstring)
    for the same round trip. What SQLAlchemy did that matters is done here too: the
    parameters go through their types' bind processors (JSON is serialised, money quantized,
    times checked aware), the session's pending changes are flushed first (its autoflush), a
    transaction is begun if the session has not sent its first statement yet, and errors come
    out as SQLAlchemy's (`IntegrityError` for a duplicate, `DBAPIError` with the SQLSTATE
    `core.errors.is_retryable` reads). Rows come as asyncpg decodes them: for the columns of
    these statements (uuid, text, boolean, numeric at its column's scale, timestamptz in UTC,
    json through the codec SQLAlchemy sets on each connection) that is what SQLAlchemy's
    result processing makes of them; a statement with other columns must check that first.
    Expanding parameters (`IN` of a bound list) are refused: write code constants into the
    SQL (`core.db.constant`) or bind an array (`= ANY(...)`); so are columns whose value
    SQLAlchemy computes at each execution (`onupdate`): bind them.

    It leans on three internals of SQLAlchemy's asyncpg adapter (its `_transaction`, its
    `_start_transaction` and `_handle_exception`): SQLAlchemy is pinned (constraints.txt), and
    tests/test_session_statements.py fails if any of them changes meaning.
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    async def fetch(self, session: AsyncSession, params: Mapping[str, Any]) -> Sequence[Any]:
        """The statement's rows (none for one without RETURNING), read by attribute."""
        dialect = session.get_bind().dialect
        if dialect.name != "postgresql":
            result = await session.execute(self.statement, params)
            if isinstance(result, CursorResult) and not result.returns_rows:
                return []  # an INSERT or UPDATE without RETURNING
            return result.all()
        if session.new or session.dirty or session.deleted:
            await session.flush()
        adapted = await _adapted_connection(session)
        compiled = self._compiled or self._compile(dialect)
        args = [
            (process(value) if process is not None else value)
            for process, value in zip(
                compiled.processors,
                (
                    params[name] if name in params else compiled.fixed[name]
                    for name in compiled.names
                ),
                strict=True,
            )
        ]
        for listener in _LISTENERS:
            listener(compiled.sql)
        try:
            if adapted._transaction is None and not adapted.autocommit:
                # SQLAlchemy's adapter begins on a unit of work's first statement: so here.
                await adapted._start_transaction()
            driver = cast(asyncpg.Connection, adapted.driver_connection)
            return await driver.fetch(compiled.sql, *args, record_class=Row)
        except _DRIVER_ERRORS as exc:
            raise _as_sqlalchemy_error(dialect, adapted, compiled.sql, args, exc) from exc

    async def fetchrow(self, session: AsyncSession, params: Mapping[str, Any]) -> Any:
        """The statement's first row, or None."""
        rows = await self.fetch(session, params)
        return rows[0] if rows else None

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = cast(SQLCompiler, cast(ClauseElement, self.statement).compile(dialect=dialect))
        names = tuple(compiled.positiontup or ())
        binds = [compiled.binds[name] for name in names]
        if any(bind.expanding for bind in binds):
            raise TypeError("SessionStatement cannot send expanding parameters")
        if compiled.insert_prefetch or compiled.update_prefetch or any(b.callable for b in binds):
            # SQLAlchemy computes these (a column's Python default) at each execution.
            raise TypeError("SessionStatement needs every column's value bound")
        self._compiled = _Compiled(
            compiled.string,
            names,
            tuple(bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds),
            {
                name: bind.effective_value
                for name, bind in zip(names, binds, strict=True)
                if not bind.required
            },
        )
        return self._compiled


_ADAPTED = "boxoffice.adapted_connection"


async def _adapted_connection(session: AsyncSession) -> Any:
    """SQLAlchemy's adaptation of the asyncpg connection the session's transaction runs on,
    kept in the session while that transaction lasts (asking the session for it again costs
    two greenlet switches, ~50 µs)."""
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_ADAPTED)
    if transaction is not None and kept is not None and kept[0] is transaction:
        return kept[1]
    connection = await session.connection()
    adapted = (await connection.get_raw_connection()).dbapi_connection
    session.info[_ADAPTED] = (session.sync_session.get_transaction(), adapted)
    return adapted


def _as_sqlalchemy_error(
    dialect: Dialect, adapted: Any, sql: str, args: list[Any], exc: BaseException
) -> DBAPIError:
    """The driver's error as SQLAlchemy raises it for the same statement: translated by its
    adapter into the DBAPI's error classes, then wrapped (IntegrityError, OperationalError...)."""
    dbapi: Any = dialect.dbapi
    try:
        adapted._handle_exception(exc)  # raises it translated (or as it is, if not the driver's)
    except dbapi.Error as translated:
        invalidated = dialect.is_disconnect(translated, adapted, None)
        return DBAPIError.instance(
            sql, args, translated, dbapi.Error, connection_invalidated=invalidated, dialect=dialect
        )
    except Exception:  # not the driver's (an OSError): the connection is gone
        pass
    return DBAPIError(sql, args, exc, connection_invalidated=True)
