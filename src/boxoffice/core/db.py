"""Engine, sessions and column types shared by every feature.

One `AsyncSession` per request: services only `flush()`; the session commits once when the
handler succeeded (before the answer is sent) and rolls back on any error. Work that must
happen only if the data is really stored (mail, jobs) is registered with `after_commit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar

import structlog
from fastapi import Depends, Request
from sqlalchemy import (
    CTE,
    JSON,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    bindparam,
    event,
    insert,
    inspect,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    make_transient_to_detached,
    mapped_column,
)
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from boxoffice.config import Settings
from boxoffice.core.admission import Admission
from boxoffice.core.clock import utcnow
from boxoffice.core.errors import BoxofficeError, database_unreachable
from boxoffice.core.pgdriver import DriverPool
from boxoffice.core.pgdriver import Row as DriverRow

log = structlog.get_logger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}


def normalize_url(raw: str) -> URL:
    """Accept plain `sqlite:///`, `postgresql://`, `mysql://` URLs and pick the async driver."""
    url = make_url(raw)
    backend, _, driver = url.drivername.partition("+")
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"unsupported database URL scheme: {url.drivername}")
    if not driver or driver in {"pysqlite", "psycopg2", "pymysql", "mysqldb"}:
        url = url.set(drivername=ASYNC_DRIVERS[backend])
    if url.get_backend_name() == "mysql" and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


def sqlite_time(value: dt.datetime) -> str:
    """An aware datetime as a `UTCDateTime` column holds it on SQLite (naive UTC text), for
    the statements that run on the plain `sqlite3` connection."""
    # isoformat with its timespec: strftime's "%Y-%m-%d %H:%M:%S.%f", at a third of the cost.
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware datetimes stored in UTC on every backend.

    SQLite and MySQL keep naive values: they are written as UTC and read back as aware UTC.
    MySQL gets microsecond precision (its DATETIME default drops fractions).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """Exact decimals with a fixed scale: NUMERIC(precision, scale), or an integer count of the
    smallest unit on SQLite (which has no exact decimals)."""

    impl = Numeric(12, 2)
    cache_ok = True
    precision = 12
    scale = 2

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Integer())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(value).quantize(Decimal(1).scaleb(-self.scale))
        return int(amount.scaleb(self.scale)) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        unit = Decimal(1).scaleb(-self.scale)
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale).quantize(unit)
        return Decimal(value).quantize(unit)


class Money(ExactDecimal):
    """Exact money amounts: NUMERIC(12,2), or integer minor units on SQLite."""

    cache_ok = True


class Ratio(ExactDecimal):
    """Factors and rates to four places (a 0.8500 multiplier, 0.0700 VAT): NUMERIC(8,4)."""

    impl = Numeric(8, 4)
    cache_ok = True
    precision = 8
    scale = 4


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4, sort_order=-1)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


def constant(value: str) -> ColumnElement[str]:
    """A string constant of a statement written into its SQL rather than bound, for values
    that pick rows (a seat's status). PostgreSQL plans a prepared statement anew at each run
    while its generic plan looks costlier than the custom ones; with `status = $4` the generic
    plan must assume an average status (many rows), with `status = 'held'` it knows there are
    few, so it costs the same and the statement settles on it after its fifth run: no more
    planning per run (0.6 ms of PostgreSQL's CPU a booking for the hold read). Code constants
    only: the value is quoted, not escaped for any other use."""
    return literal_column("'" + value.replace("'", "''") + "'", String())


class RowInsert:
    """The INSERT of one new object's row, built once with a bound parameter per column, to
    be written as a part (`cte`) of a larger statement instead of by the unit of work: a
    flush costs a round trip and its bookkeeping per table (PostgreSQL's fused writes, see
    booking.service). Bind `params(obj)`, then `adopt` the objects once the statement ran."""

    def __init__(
        self, model: type[Base], name: str, *, when: ColumnElement[bool] | None = None
    ) -> None:
        """`when`: a condition on the rest of the statement (say, that its UPDATE changed a
        row) without which no row is written."""
        self._columns = [(attr.key, attr.columns[0]) for attr in inspect(model).column_attrs]
        self._prefix = f"{name}_"
        values = [bindparam(self._prefix + key, type_=column.type) for key, column in self._columns]
        names = [column.name for _, column in self._columns]
        statement = (
            insert(model).values(dict(zip(names, values, strict=True)))
            if when is None
            else insert(model).from_select(names, select(*values).where(when))
        )
        self.cte: CTE = statement.cte(name)

    def params(self, obj: Base) -> dict[str, Any]:
        """`obj`'s row as this statement's parameters. The columns' Python-side defaults (ids,
        timestamps) are applied to `obj` too, as a flush would."""
        values: dict[str, Any] = {}
        # Every column goes into the object's dict, so that `adopt` leaves none to load; a
        # plain write, as the ORM's loading does (`adopt` resets the history anyway): setting
        # each attribute fired its change events, ~0.1 ms for a booking's three rows.
        state = instance_state(obj).dict
        for key, column in self._columns:
            value = state.get(key)
            if value is None and column.default is not None:
                default: Any = column.default
                if not (default.is_scalar or default.is_callable):
                    raise TypeError(f"{column} has a default RowInsert cannot apply")
                value = default.arg(None) if default.is_callable else default.arg
            state[key] = value
            values[self._prefix + key] = value
        return values


def adopt(session: AsyncSession, *objects: Base) -> None:
    """Objects whose rows a statement has just inserted become the session's, as if loaded:
    clean (no INSERT at the next flush) and tracked for later changes."""
    for obj in objects:
        make_transient_to_detached(obj)
        session.add(obj)


class RowLoad:
    """One model's columns in a statement sent past the ORM (core.pgdriver.SessionStatement),
    each labelled `<prefix><column>` so that several models share a row, and the object such
    a row makes: the session's, as if the ORM had loaded it (an object of that identity the
    session holds already gets the row's values, as `populate_existing` would do). Values
    from the driver go through their types' result processing first (an aware UTC time, an
    exact decimal), as SQLAlchemy's own rows did."""

    def __init__(self, model: type[Base], prefix: str) -> None:
        self._model = model
        self._new_instance = inspect(model).class_manager.new_instance
        attrs = inspect(model).column_attrs
        self._fields = [
            (attr.key, attr.columns[0], prefix + attr.columns[0].name) for attr in attrs
        ]
        self.columns = [column.label(label) for _, column, label in self._fields]
        (key,) = inspect(model).primary_key
        self._key = prefix + key.name
        # (attribute, label, processor): none for SQLAlchemy's rows, processed already; for
        # the driver's (PostgreSQL), made at the first one.
        self._plain: list[_Field] = [(name, label, None) for name, _, label in self._fields]
        self._driver: list[_Field] | None = None

    def load(self, session: AsyncSession, row: Any) -> Any:
        """The object of `row` (the driver's or SQLAlchemy's), or None when its key is NULL
        (an outer join that found nothing)."""
        if isinstance(row, DriverRow):
            column = row.__getitem__  # by name, without the attribute lookup's detour
            fields = self._driver or self._driver_fields(session.get_bind().dialect)
        else:
            column = row._mapping.__getitem__
            fields = self._plain
        key = column(self._key)
        if key is None:
            return None
        values = {}
        for name, label, process in fields:
            value = column(label)
            values[name] = value if process is None or value is None else process(value)
        held = session.sync_session.identity_map.get(identity_key(self._model, key))
        if held is not None:
            for name, value in values.items():
                set_committed_value(held, name, value)
            return held
        # As the ORM's loading does: the values straight into the new object's dict, without
        # its constructor's change events (in isolation 11 against 28 µs for a user's 16
        # columns).
        obj = self._new_instance()
        instance_state(obj).dict.update(values)
        adopt(session, obj)
        return obj

    def _driver_fields(self, dialect: Dialect) -> list[_Field]:
        # asyncpg decodes the plain types as SQLAlchemy's asyncpg dialect reads them (uuid,
        # text, numeric as Decimal, timestamptz, json by the codec it sets): only the
        # project's own types have something to add.
        self._driver = [
            (
                name,
                label,
                partial(column.type.process_result_value, dialect=dialect)
                if isinstance(column.type, TypeDecorator)
                else None,
            )
            for name, column, label in self._fields
        ]
        return self._driver


_Field = tuple[str, str, Callable[[Any], Any] | None]


AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the session's transaction has committed; dropped on rollback."""
    session.info.setdefault("after_commit", []).append(callback)


def _connect_or_unavailable(
    dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: Any
) -> Any:
    """Open a new server connection; failing to, answer 503 rather than 500.

    While the server is down asyncpg raises a bare `ConnectionRefusedError` (SQLAlchemy wraps
    only driver errors), and while it starts up or shuts down "cannot connect now", which
    SQLAlchemy wraps as a plain DBAPIError; both reached clients as a 500 during a database
    restart."""
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as exc:
        raise database_unreachable(exc) from exc


def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry | None) -> None:
    # Let SQLAlchemy's begin event issue BEGIN itself (the driver's deferred BEGIN loses
    # concurrent read-modify-writes), then set the pragmas every connection needs.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA busy_timeout=10000",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE) so they queue on busy_timeout
    # instead of failing when a read transaction tries to upgrade; readers stay deferred.
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str | URL, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    url = normalize_url(str(url) if isinstance(url, URL) else url)
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"echo": echo}
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # A fixed pool: under load, requests wait for one of `pool_size` connections rather
        # than opening overflow connections (a PostgreSQL connection is a process; opening
        # and closing them per burst costs more than the wait). No pre-ping: it is a round
        # trip per request (about a fifth of a small request's CPU here). A connection that
        # died with its server fails its request with 503, and SQLAlchemy then discards every
        # pooled connection of that generation, so the next requests reconnect.
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_pre_ping=False, pool_recycle=1800)
        if backend == "mysql":
            # As on PostgreSQL: a locking read or conditional UPDATE sees the latest committed
            # rows, not the snapshot REPEATABLE READ took before the lock wait.
            kwargs["isolation_level"] = "READ COMMITTED"
    engine = create_async_engine(url, **kwargs)
    if backend != "sqlite":
        event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


class Database:
    """The engine and its two session factories (writer and reader) for one app."""

    def __init__(
        self, engine: AsyncEngine, *, hot_pool_size: int = 10, concurrency: int = 0
    ) -> None:
        self.engine = engine
        # Units of work of this process running at once (core.admission; 0: the pool decides).
        self.admission = Admission(concurrency)
        self.backend = engine.dialect.name
        # PostgreSQL's one-statement hot paths (hold, release, seat map) run on asyncpg's own
        # pool: see core.pgdriver. Opened on first use, so processes that never serve them
        # (the job worker, the CLI) never connect it.
        self.driver = (
            DriverPool(engine.url, size=hot_pool_size) if self.backend == "postgresql" else None
        )
        # Readers never write: on SQLite they start deferred (no write lock); on the servers
        # they run in autocommit, each statement on its own snapshot, which saves the BEGIN and
        # COMMIT round trips of every GET.
        read_engine = (
            engine.execution_options(sqlite_begin="DEFERRED")
            if self.backend == "sqlite"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._writer = async_sessionmaker(engine, expire_on_commit=False)
        self._reader = async_sessionmaker(read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Writers take turns: in this process first come first
        # served (an asyncio lock), across server processes through a lock file, rather than
        # all polling SQLite's own lock (busy_timeout): a poller sleeps between tries and keeps
        # losing to newcomers, which held two processes to about 150 writes per second.
        self._write_turn: contextlib.AbstractAsyncContextManager[Any] | None = None
        self._sqlite_path: str | None = None
        self._sqlite_connection: sqlite3.Connection | None = None
        if self.backend == "sqlite":
            path = engine.url.database
            if path and path != ":memory:":
                self._sqlite_path = path
                self._write_turn = WriteTurn(Path(f"{path}.writelock"))
            else:
                self._write_turn = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            create_engine(settings.database_url, pool_size=settings.database_pool_size),
            hot_pool_size=settings.database_hot_pool_size,
            concurrency=settings.database_concurrency,
        )

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on error, then run after-commit hooks.

        A `BoxofficeError` with `commit=True` (e.g. a detected refresh-token reuse that revoked
        a token family) keeps its writes although the request answers with an error.
        """
        async with self.admission.enter():
            session = (self._writer if write else self._reader)()
            session.info["database"] = self
            turn = self._write_turn if write and self._write_turn else contextlib.nullcontext()
            try:
                async with turn:
                    try:
                        yield session
                        await session.commit()
                    except BaseException as exc:
                        if isinstance(exc, BoxofficeError) and exc.commit:
                            await session.commit()
                        else:
                            await session.rollback()
                        raise
                    finally:
                        await session.close()
            except BoxofficeError as exc:
                if exc.commit:
                    await _run_after_commit(session)
                raise
            await _run_after_commit(session)  # outside the turn: mail may be slow

    @asynccontextmanager
    async def sqlite_write_turn(self) -> AsyncIterator[sqlite3.Connection | None]:
        """On a SQLite file: this process's turn to write, and the plain `sqlite3` connection
        for a short synchronous transaction in it (the hold and release, booking.holds_sqlite),
        without a session. None (and no turn) elsewhere."""
        connection = self.sqlite_connection()
        if connection is None or self._write_turn is None:
            yield None
            return
        async with self._write_turn:
            yield connection

    def sqlite_connection(self) -> sqlite3.Connection | None:
        """A plain `sqlite3` connection to a file database, for the few hot writes that run
        synchronously inside the write turn (see booking.holds_sqlite); None otherwise."""
        if self._sqlite_path is None:
            return None
        if self._sqlite_connection is None:
            conn = sqlite3.connect(self._sqlite_path, isolation_level=None, check_same_thread=False)
            _sqlite_connect(conn, None)
            self._sqlite_connection = conn
        return self._sqlite_connection

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.driver is not None:
            await self.driver.close()
        if self._sqlite_connection is not None:
            self._sqlite_connection.close()
            self._sqlite_connection = None
        await self.engine.dispose()


class WriteTurn:
    """SQLite's write turn: one writer at a time among this process's coroutines (asyncio
    lock) and among all processes on the database (an exclusive `flock` on a lock file; a
    waiting process is woken by the kernel the moment the lock is free)."""

    def __init__(self, path: Path) -> None:
        self._local = asyncio.Lock()
        self._path = path
        self._fd: int | None = None

    async def __aenter__(self) -> None:
        await self._local.acquire()
        waiting: asyncio.Future[None] | None = None
        try:
            fd = self._file()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
            await asyncio.shield(waiting)
        except BaseException:
            if waiting is None:
                self._local.release()
            else:
                # The waiting thread cannot be stopped. When it gets the file lock, give it
                # back, and only then let this process's next writer in (they share the file).
                waiting.add_done_callback(self._give_back)
            raise

    async def __aexit__(self, *_: object) -> None:
        try:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._local.release()

    def _file(self) -> int:
        if self._fd is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def _give_back(self, waiting: asyncio.Future[None]) -> None:
        try:
            if not waiting.cancelled() and waiting.exception() is None:
                fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._local.release()


async def _run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop("after_commit", []):
        try:
            await callback()
        except Exception:  # the data is stored; a failed side effect must not fail the request
            log.exception("after_commit_failed", callback=getattr(callback, "__name__", "?"))


def get_database(request: Request) -> Database:
    # Called by the handlers that open what they need themselves (hold, release, seat map,
    # ticket list) rather than declared as a dependency: FastAPI's solving of one costs
    # ~3% of a hold's CPU.
    db: Database = request.app.state.db
    return db


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    write = request.method not in {"GET", "HEAD", "OPTIONS"}
    async with get_database(request).session(write=write) as session:
        yield session


# scope="function": the session commits when the handler returns, before the answer is sent.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]
