"""Migrations build exactly the models' schema on every backend, and revert cleanly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from boxoffice.accounts.permissions import DEFAULT_GRANTS
from boxoffice.core.db import create_engine
from boxoffice.migrations import alembic_config, include_object_for
from boxoffice.models import Base
from tests.conftest import Backend, _create_server_database, _drop_server_database, _server_urls


@pytest.fixture
async def empty_url(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """A brand-new, empty database on the same backend."""
    if backend.name == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server = _server_urls()[backend.name]
    assert server
    url = await _create_server_database(backend.name, server)
    try:
        yield url
    finally:
        await _drop_server_database(server, url)


async def _diff_and_tables(url: str) -> tuple[list[object], set[str], dict[str, set[str]]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:

            def inspect_schema(sync_conn: object) -> tuple[list[object], set[str]]:
                context = MigrationContext.configure(
                    sync_conn,  # type: ignore[arg-type]
                    opts={
                        "compare_type": True,
                        "compare_server_default": True,
                        "include_object": include_object_for(engine.dialect.name),
                    },
                )
                diff = compare_metadata(context, Base.metadata)
                return diff, set(inspect(sync_conn).get_table_names())  # type: ignore[arg-type]

            diff, tables = await conn.run_sync(inspect_schema)
            grants: dict[str, set[str]] = {}
            if "role_permissions" in tables:
                rows = await conn.execute(text("SELECT role, permission FROM role_permissions"))
                for role, permission in rows:
                    grants.setdefault(role, set()).add(permission)
        return diff, tables, grants
    finally:
        await engine.dispose()


async def test_upgrade_head_gives_the_models_schema_and_downgrade_empties_it(
    empty_url: str,
) -> None:
    config = alembic_config(empty_url)
    await asyncio.to_thread(command.upgrade, config, "head")

    diff, tables, grants = await _diff_and_tables(empty_url)
    assert diff == [], f"migrations and models differ: {diff}"
    assert set(Base.metadata.tables) <= tables
    assert grants == {
        role.value: {p.value for p in perms} for role, perms in DEFAULT_GRANTS.items() if perms
    }

    await asyncio.to_thread(command.downgrade, config, "base")
    _, tables_after, _ = await _diff_and_tables(empty_url)
    assert tables_after <= {"alembic_version"}

    # And up again: the downgrade left nothing behind that blocks a new upgrade.
    await asyncio.to_thread(command.upgrade, config, "head")
    diff, _, _ = await _diff_and_tables(empty_url)
    assert diff == []


def test_cli_db_upgrade_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "BOXOFFICE_VAR_DIR": str(tmp_path / "var")}
    env.pop("BOXOFFICE_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "boxoffice.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "boxoffice.db").exists()


# Foreign keys with no index led by their column, and why none is needed: each is only
# checked when a row of a small table, or a hall's seat, is deleted (admin work). Every other
# key is looked up by, or is checked whenever an account, hold or payment row goes.
UNINDEXED_FOREIGN_KEYS = {
    "film_contracts.distributor_id": "distributors are a handful of rows",
    "users.role": "the roles table is fixed",
    "pricing_rules.city_id": "a cinema's pricing rules are a few hundred rows",
    "pricing_rules.movie_id": "a cinema's pricing rules are a few hundred rows",
    "pricing_rules.theater_id": "a cinema's pricing rules are a few hundred rows",
    "holds.showtime_id": "checked once when a showtime without sales is deleted",
    "showtime_seats.seat_id": "the key is (showtime, seat); checked when a layout changes",
    "booking_lines.seat_id": "checked when a layout changes",
    "tickets.seat_id": "tickets are found by (showtime, seat); checked when a layout changes",
    "booking_snacks.snack_id": "checked when a snack is deleted",
}


def test_every_foreign_key_has_an_index_led_by_it_or_a_reason_not_to() -> None:
    missing = set()
    for table in Base.metadata.sorted_tables:
        leading = {next(iter(index.columns)).name for index in table.indexes}
        leading |= {
            next(iter(constraint.columns)).name
            for constraint in table.constraints
            if constraint.columns and not hasattr(constraint, "elements")  # not a foreign key
        }
        for key in table.foreign_keys:
            if key.parent.name not in leading:
                missing.add(f"{table.name}.{key.parent.name}")
    assert missing == set(UNINDEXED_FOREIGN_KEYS), (
        "foreign keys without an index led by their column: "
        f"{sorted(missing - set(UNINDEXED_FOREIGN_KEYS))}; no longer missing: "
        f"{sorted(set(UNINDEXED_FOREIGN_KEYS) - missing)}"
    )
