"""Fuzz every operation of /openapi.json with schemathesis, in-process over ASGI.

Each operation gets schema-conforming (positive) and schema-violating (negative) requests,
as a customer, or as an admin for /api/admin/*; every answer must not be a 5xx, and its
status code, content type and body must be the ones the OpenAPI document describes.

The run is reproducible (derandomized: the same requests each time) and bounded:
BOXOFFICE_FUZZ_EXAMPLES examples per operation and mode (default 15: about a minute).
A deeper local run: `BOXOFFICE_FUZZ_EXAMPLES=400 .venv/bin/pytest tests/test_fuzz_openapi.py`
(about 15 minutes).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from alembic import command
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from boxoffice.app import create_app
from boxoffice.config import Settings
from boxoffice.demo import load_demo
from boxoffice.migrations import alembic_config
from tests.conftest import Backend, make_settings
from tests.helpers import make_user

EXAMPLES = int(os.environ.get("BOXOFFICE_FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SQLITE_ONLY = (
    "the OpenAPI fuzz runs on SQLite only: what it checks (status codes, content types and "
    "body shapes of the answers) does not depend on the database, and another backend would "
    "add minutes to CI without new coverage"
)


@pytest.fixture
def fuzz_settings(backend_name: str, tmp_path: Path) -> Settings:
    """Settings on a database of its own: fuzzing writes garbage other tests need not see."""
    if backend_name != "sqlite":
        pytest.skip(SQLITE_ONLY)
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    command.upgrade(alembic_config(url), "head")
    # No rate limits: thousands of requests from one client would mostly measure those.
    return make_settings(Backend("sqlite", url), tmp_path / "var", rate_limit_enabled=False)


# Path parameters that name a stored object, and its table: positive cases use an existing
# one half of the time, so the fuzzer reaches past "404 not found" into the routes' logic.
ID_TABLES = {
    "city_id": "cities",
    "theater_id": "theaters",
    "screen_id": "screens",
    "movie_id": "movies",
    "showtime_id": "showtimes",
    "user_id": "users",
    "snack_id": "snacks",
    "promo_id": "promo_codes",
    "rule_id": "pricing_rules",
    "distributor_id": "distributors",
    "contract_id": "film_contracts",
}


@dataclass(frozen=True)
class Seeded:
    headers: dict[str, dict[str, str]]  # per role
    ids: dict[str, list[str]]  # per path parameter name


def _seed(fuzz_settings: Settings) -> Seeded:
    """The demo data, a customer and an admin, stored before the fuzzed app starts."""
    seeding = create_app(fuzz_settings)

    async def seed() -> Seeded:
        try:
            async with seeding.state.db.session() as session:
                await load_demo(session)
            customer = await make_user(seeding, "customer")
            admin = await make_user(seeding, "admin")
            erased = await make_user(seeding, "customer")
            ids: dict[str, list[str]] = {}
            async with seeding.state.db.engine.connect() as conn:
                for name, table in ID_TABLES.items():
                    rows = await conn.execute(text(f"SELECT id FROM {table} LIMIT 4"))
                    ids[name] = [str(uuid.UUID(str(row[0]))) for row in rows]
        finally:
            await seeding.state.db.dispose()
        headers = {"customer": customer.headers, "admin": admin.headers, "erased": erased.headers}
        return Seeded(headers, ids)

    return asyncio.run(seed())


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: schemathesis.GenerationMode,
    headers: dict[str, str],
    ids: dict[str, list[str]],
) -> None:
    strategy = operation.as_strategy(generation_mode=mode)
    if mode == schemathesis.GenerationMode.POSITIVE and any(
        "{" + name + "}" in operation.path for name in ids
    ):

        def known(pair: tuple[schemathesis.Case, int]) -> schemathesis.Case:
            case, pick = pair
            for name in case.path_parameters or {}:
                if pick < 4 and ids.get(name):
                    case.path_parameters[name] = ids[name][pick % len(ids[name])]
            return case

        strategy = st.tuples(strategy, st.integers(0, 7)).map(known)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    fuzz()


def _role(operation: schemathesis.APIOperation) -> str:
    if operation.path.startswith("/api/admin/"):
        return "admin"
    if operation.method.upper() == "DELETE" and operation.path == "/api/me":
        return "erased"  # erasing the account: not the one the other operations use
    return "customer"


def test_every_operation_answers_as_documented(fuzz_settings: Settings) -> None:
    seeded = _seed(fuzz_settings)
    app = create_app(fuzz_settings)
    failures: list[str] = []
    operations = 0
    try:
        # Loading the schema starts the app's lifespan in schemathesis' event loop thread.
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            role = _role(operation)
            for mode in (
                schemathesis.GenerationMode.POSITIVE,
                schemathesis.GenerationMode.NEGATIVE,
            ):
                try:
                    _fuzz(operation, mode, seeded.headers[role], seeded.ids)
                except Unsatisfiable:
                    pass  # negative mode, and nothing in the request the schema constrains
                except (Exception, BaseExceptionGroup) as exc:  # collect them all
                    failures.append(f"{operation.label} ({mode}, {role}):\n{exc}")
    finally:
        asgi.shutdown_lifespans()  # the app's shutdown: jobs, database
    assert operations > 100
    assert not failures, f"{len(failures)} findings:\n\n" + "\n\n".join(failures)
