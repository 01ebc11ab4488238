"""Statements sent on the request session's own asyncpg connection (core.pgdriver.
SessionStatement) behave as if sent through the session: in its transaction, after its
pending changes, with their parameters processed by their types, and failing with
SQLAlchemy's errors (a duplicate an IntegrityError, a lost deadlock retryable). Objects made
of their rows (core.db.RowLoad) are the session's, as if the ORM had loaded them."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import BigInteger, bindparam, func, insert, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from boxoffice.audit.models import AuditEntry
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database, RowLoad
from boxoffice.core.errors import is_retryable
from boxoffice.core.pgdriver import SessionStatement, statements
from boxoffice.payments.models import Payment
from boxoffice.scheduling.models import Showtime
from tests.booking_helpers import seed_showtime

pytestmark = pytest.mark.backends("postgres")

_TRANSACTION = SessionStatement(select(func.txid_current().label("tx")))
_ENTRY = bindparam("the_entry", type_=AuditEntry.id.type)
_COUNT_ENTRY = SessionStatement(
    select(func.count().label("entries")).select_from(AuditEntry).where(AuditEntry.id == _ENTRY)
)
_INSERT_ENTRY = SessionStatement(
    insert(AuditEntry)
    .values(
        id=_ENTRY,
        created_at=bindparam("at"),
        actor_kind="system",
        actor_id=None,
        action="test.session_statement",
        entity_type="test",
        entity_id="1",
        data=bindparam("data"),
        request_id=None,
    )
    .returning(AuditEntry.data, AuditEntry.created_at)
)
_ADVISORY_LOCK = SessionStatement(
    select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)).label("locked"))
)


def _entry_params(**data: Any) -> dict[str, Any]:
    return {"the_entry": uuid.uuid4(), "at": utcnow(), "data": data}


async def test_a_first_statement_begins_the_sessions_transaction(app: FastAPI) -> None:
    database: Database = app.state.db
    params = _entry_params(kept=False)
    async with database.session() as session:
        first = await _TRANSACTION.fetchrow(session, {})
        # The session's next statement runs in the same transaction (autocommit: another id).
        assert await session.scalar(select(func.txid_current())) == first.tx
        await _INSERT_ENTRY.fetch(session, params)
        await session.rollback()
    async with database.session() as session:
        assert (await _COUNT_ENTRY.fetchrow(session, params)).entries == 0


async def test_the_statement_counts_hear_each_statement(app: FastAPI) -> None:
    # tests/test_statement_counts.py counts what core.pgdriver.statements tells it: a statement
    # sent past the engine's events must still be told, or a grown path would go unseen.
    heard: list[str] = []
    async with app.state.db.session() as session:
        with statements(heard.append):
            await _TRANSACTION.fetch(session, {})
            await _TRANSACTION.fetch(session, {})
        await session.rollback()
    assert len(heard) == 2
    assert all("txid_current" in sql for sql in heard)


async def test_the_sessions_pending_changes_are_flushed_first(app: FastAPI) -> None:
    database: Database = app.state.db
    entry = AuditEntry(
        id=uuid.uuid4(),
        created_at=utcnow(),
        actor_kind="system",
        action="test.flushed_first",
        entity_type="test",
        entity_id="1",
        data={},
    )
    async with database.session() as session:
        session.add(entry)
        assert (await _COUNT_ENTRY.fetchrow(session, {"the_entry": entry.id})).entries == 1
        await session.rollback()


async def test_parameters_go_through_their_types_and_json_comes_back_decoded(
    app: FastAPI,
) -> None:
    database: Database = app.state.db
    params = _entry_params(seats=["A1", "A2"], amount="12.50")
    async with database.session() as session:
        row = await _INSERT_ENTRY.fetchrow(session, params)
        assert row.data == {"seats": ["A1", "A2"], "amount": "12.50"}
        assert row.created_at == params["at"]
        await session.rollback()
    naive = params | {"the_entry": uuid.uuid4(), "at": params["at"].replace(tzinfo=None)}
    async with database.session() as session:
        with pytest.raises(ValueError, match="naive datetime"):  # UTCDateTime's own check
            await _INSERT_ENTRY.fetch(session, naive)
        await session.rollback()


async def test_a_duplicate_is_sqlalchemys_integrity_error_naming_its_key(app: FastAPI) -> None:
    database: Database = app.state.db
    params = _entry_params()
    async with database.session() as session:
        await _INSERT_ENTRY.fetch(session, params)
        with pytest.raises(IntegrityError) as duplicate:
            await _INSERT_ENTRY.fetch(session, params)
        # What core.errors.is_retryable matches a drawn key's duplicate against.
        assert "pk_audit_log" in str(duplicate.value.orig)
        await session.rollback()


async def test_a_lost_deadlock_is_retryable(app: FastAPI) -> None:
    database: Database = app.state.db
    first_locked, second_locked = asyncio.Event(), asyncio.Event()
    keys = (uuid.uuid4().int >> 65, uuid.uuid4().int >> 65)

    async def locker(mine: int, theirs: int, locked: asyncio.Event, other: asyncio.Event) -> None:
        async with database.session() as session:
            await _ADVISORY_LOCK.fetch(session, {"key": mine})
            locked.set()
            await other.wait()
            await _ADVISORY_LOCK.fetch(session, {"key": theirs})

    outcomes = await asyncio.gather(
        locker(keys[0], keys[1], first_locked, second_locked),
        locker(keys[1], keys[0], second_locked, first_locked),
        return_exceptions=True,
    )
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == 1, outcomes
    assert isinstance(failures[0], DBAPIError)
    assert is_retryable(failures[0])


async def test_a_statement_leaving_a_column_to_python_defaults_is_refused(app: FastAPI) -> None:
    # payments.updated_at is set by SQLAlchemy at each UPDATE (onupdate): not sent here.
    statement = SessionStatement(
        update(Payment).where(Payment.id == bindparam("the_payment")).values(status="failed")
    )
    async with app.state.db.session() as session:
        with pytest.raises(TypeError, match="every column's value bound"):
            await statement.fetch(session, {"the_payment": uuid.uuid4()})
        await session.rollback()


_LOADED_SHOWTIME = RowLoad(Showtime, "show_")
_READ_SHOWTIME = SessionStatement(
    select(*_LOADED_SHOWTIME.columns).where(Showtime.id == bindparam("the_showtime"))
)


@pytest.mark.backends("sqlite", "postgres", "mysql")
async def test_an_object_made_of_a_row_is_the_sessions_as_if_the_orm_loaded_it(
    app: FastAPI,
) -> None:
    database: Database = app.state.db
    show = await seed_showtime(app, base_price=Decimal("11.25"))
    the_showtime = {"the_showtime": uuid.UUID(show.showtime_id)}
    columns = [attr.key for attr in inspect(Showtime).column_attrs]
    async with database.session() as session:
        by_orm = await session.get(Showtime, the_showtime["the_showtime"])
        assert by_orm is not None
        expected = {name: getattr(by_orm, name) for name in columns}

    async with database.session() as session:
        loaded = _LOADED_SHOWTIME.load(
            session, await _READ_SHOWTIME.fetchrow(session, the_showtime)
        )
        # The same values as the ORM's, processed by their types: money to the cent (SQLite
        # keeps cents as integers), times aware.
        assert {name: getattr(loaded, name) for name in columns} == expected
        assert loaded.base_price == Decimal("11.25")
        assert loaded.start_time.tzinfo is not None
        assert inspect(loaded).persistent
        assert not session.dirty
        assert await session.get(Showtime, the_showtime["the_showtime"]) is loaded
        loaded.language = "fr"  # tracked: written at the commit

    async with database.session() as session:
        held = await session.get(Showtime, the_showtime["the_showtime"])
        assert held is not None
        assert held.language == "fr"
        await session.execute(
            text("UPDATE showtimes SET language = 'de' WHERE id = :id"),
            {"id": held.id.hex if database.backend != "postgresql" else held.id},
        )
        # An object the session holds already gets the row's values (populate_existing).
        again = _LOADED_SHOWTIME.load(session, await _READ_SHOWTIME.fetchrow(session, the_showtime))
        assert again is held
        assert held.language == "de"
        assert not session.dirty
