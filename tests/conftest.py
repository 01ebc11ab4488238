"""Test fixtures: the app over HTTP on every configured database backend.

SQLite always runs. PostgreSQL runs when BOXOFFICE_TEST_POSTGRES_URL is set, MariaDB/MySQL when
BOXOFFICE_TEST_MYSQL_URL is set (CI sets both, and with CI=true an unreachable service fails
the run instead of skipping). Each test session creates a fresh database per backend with
`alembic upgrade head`; each test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from boxoffice.app import create_app
from boxoffice.config import Settings
from boxoffice.core.db import create_engine
from boxoffice.jobs.runner import InProcessRunner
from boxoffice.migrations import alembic_config
from boxoffice.models import Base

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Tables whose rows migrations seed: kept between tests.
SEEDED_TABLES = {"roles", "role_permissions", "alembic_version"}
TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
GENEROUS_RATE_LIMITS = [
    f"rate_limit_{name}"
    for name in (
        "default",
        "default_per_ip",
        "login_per_email",
        "login_per_ip",
        "register_per_ip",
        "password_per_email",
        "password_per_ip",
        "email_verification",
        "email_verification_per_ip",
        "mfa",
        "mfa_per_ip",
        "holds",
        "holds_per_ip",
    )
]


@dataclass(frozen=True)
class Backend:
    name: str
    url: str  # the test database of this session


def _server_urls() -> dict[str, str | None]:
    return {
        "postgres": os.environ.get("BOXOFFICE_TEST_POSTGRES_URL"),
        "mysql": os.environ.get("BOXOFFICE_TEST_MYSQL_URL"),
    }


_SKIPPED: dict[str, str] = {}
_AVAILABLE: list[str] = ["sqlite"]


def _probe(url: str) -> str | None:
    """None when the server answers, else the reason."""

    async def ping() -> None:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        asyncio.run(asyncio.wait_for(ping(), 10))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    for name, url in _server_urls().items():
        if not url:
            if IN_CI:
                raise pytest.UsageError(
                    f"CI=true but no {name} URL is set (BOXOFFICE_TEST_{name.upper()}_URL)"
                )
            _SKIPPED[name] = "not configured"
            continue
        problem = _probe(url)
        if problem:
            if IN_CI:
                raise pytest.UsageError(
                    f"CI=true and the {name} test server is unreachable: {problem}"
                )
            _SKIPPED[name] = f"unreachable ({problem})"
            continue
        _AVAILABLE.append(name)
    _check_redis()


def _probe_redis(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_redis() -> None:
    url = os.environ.get("BOXOFFICE_TEST_REDIS_URL")
    if not url:
        if IN_CI:
            raise pytest.UsageError("CI=true but BOXOFFICE_TEST_REDIS_URL is not set")
        _SKIPPED["redis"] = "not configured"
        return
    problem = _probe_redis(url)
    if problem:
        if IN_CI:
            raise pytest.UsageError(f"CI=true and the redis test server is unreachable: {problem}")
        _SKIPPED["redis"] = f"unreachable ({problem})"


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"database backends: {', '.join(_AVAILABLE)}"]
    lines += [f"skipped backend {name}: {why}" for name, why in _SKIPPED.items()]
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, why in _SKIPPED.items():
        terminalreporter.write_line(f"backend {name} skipped: {why}")


def _backend_param_ids(metafunc: pytest.Metafunc) -> list[str]:
    marker = metafunc.definition.get_closest_marker("backends")
    wanted = set(marker.args) if marker else None
    return [name for name in _AVAILABLE if wanted is None or name in wanted]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        names = _backend_param_ids(metafunc)
        metafunc.parametrize("backend_name", names, ids=names, scope="session")


# ---------------------------------------------------------------------------------------------
# Databases


async def _create_server_database(name: str, server_url: str) -> str:
    url = make_url(server_url)
    db_name = f"boxoffice_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(url, pool_size=1)
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f"CREATE DATABASE {db_name}"))
    finally:
        await admin.dispose()
    return url.set(database=db_name).render_as_string(hide_password=False)


async def _drop_server_database(server_url: str, test_url: str) -> None:
    db_name = make_url(test_url).database
    admin = create_engine(server_url, pool_size=1)
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if admin.dialect.name == "postgresql":
                await conn.execute(text(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            else:
                await conn.execute(text(f"DROP DATABASE IF EXISTS {db_name}"))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session")
async def backend(
    backend_name: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    """A freshly migrated database of one backend, for the whole test session."""
    server_url = _server_urls().get(backend_name)
    if backend_name == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "boxoffice.db"
        url = f"sqlite:///{path}"
    else:
        assert server_url
        url = await _create_server_database(backend_name, server_url)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    try:
        yield Backend(backend_name, url)
    finally:
        if server_url:
            await _drop_server_database(server_url, url)


def make_settings(backend: Backend, var_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": backend.url,
        "var_dir": var_dir,
        "secret_key": TEST_SECRET,
        "database_pool_size": 5,
        "database_hot_pool_size": 3,
        # Every unit of work admitted at once: race tests hold N transactions open together
        # (barriers); tests/test_admission.py and the providers' tests set a limit.
        "database_concurrency": 0,
        "log_level": "WARNING",
        # Cheap argon2 so the suite does not spend minutes hashing test passwords.
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        # No background expiry sweeping the shared database under other tests; tests of the
        # job run it themselves or ask for it with `make_client(expiry_interval_seconds=1)`.
        "expiry_interval_seconds": 0,
        "invoice_repair_interval_seconds": 0,
        # Nor loyalty earning for past shows; its tests run `earn_once` themselves.
        "loyalty_interval_seconds": 0,
        # Nor reconciliation: it would ask providers about other tests' payments.
        "reconcile_interval_seconds": 0,
        # Nor show reminders for other tests' bookings; their tests run `remind_once`.
        "reminder_interval_seconds": 0,
        # Nor settlement recording for other tests' contracts; its tests run `record_once`.
        "settlement_interval_seconds": 0,
        # Nor the purge of unverified accounts; its tests run `retention_once`.
        "retention_interval_seconds": 0,
        # Movies without a rental contract are scheduled freely (the public contract's
        # behaviour); tests of the strict mode ask for `require_film_contracts=True`.
        "require_film_contracts": False,
        # Failed-login locks out of other tests' way (every client is 127.0.0.1);
        # tests/test_account_security.py sets small thresholds of its own.
        "login_max_failures": 1000,
        "login_account_max_failures": 1000,
        "login_ip_max_failures": 100_000,
        # Rate limits the shared app (one client address for the whole session) never reaches;
        # tests of the limits ask `make_client` for strict ones. Promo lookups keep their
        # defaults, which their tests count on.
        **dict.fromkeys(GENEROUS_RATE_LIMITS, "1000000/minute"),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def reset_database(app: FastAPI) -> None:
    """Empty every table but the seeded ones, in one statement where the backend allows."""
    db = app.state.db
    tables = [t.name for t in Base.metadata.sorted_tables if t.name not in SEEDED_TABLES]
    async with db.engine.connect() as conn:
        if db.backend == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        elif db.backend == "mysql":
            await conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for table in reversed(tables):
                await conn.execute(text(f"DELETE FROM {table}"))
            await conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
        else:
            for table in reversed(tables):
                await conn.execute(text(f"DELETE FROM {table}"))
        await conn.commit()


@pytest.fixture(scope="session")
async def app(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FastAPI]:
    """The app with default settings on one backend, shared by the session's tests."""
    application = create_app(make_settings(backend, tmp_path_factory.mktemp("var")))
    async with LifespanManager(application):
        yield application


async def settle_jobs(app: FastAPI, timeout: float = 30.0) -> None:
    """Wait until the app's in-process jobs (queued, running, retrying) are done."""
    if isinstance(app.state.jobs, InProcessRunner):
        await asyncio.wait_for(app.state.jobs.wait_until_idle(), timeout)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the shared app; the database is empty when the test starts."""
    # A previous test's jobs (e.g. a confirmation mail) must not run into this one's data.
    await settle_jobs(app)
    await reset_database(app)
    _clear_outbox(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield http


AppFactory = Callable[..., Awaitable[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
async def make_client(
    backend: Backend, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[httpx.AsyncClient]]]:
    """Build an app with overridden settings (e.g. `hold_ttl=1`) on the same database."""
    stack: list[tuple[LifespanManager, httpx.AsyncClient]] = []

    async def factory(*, client_address: str | None = None, **overrides: Any) -> httpx.AsyncClient:
        """`client_address`: the peer address the app sees (default 127.0.0.1, a loopback
        peer, which has no per-IP rate-limit windows)."""
        application = create_app(make_settings(backend, tmp_path / "var", **overrides))
        manager = LifespanManager(application)
        await manager.__aenter__()
        if not stack:
            await reset_database(application)
        peer = {"client": (client_address, 40000)} if client_address else {}
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application, **peer), base_url="http://testserver"
        )
        stack.append((manager, http))
        return http

    yield factory
    for manager, http in reversed(stack):
        await http.aclose()
        await manager.__aexit__(None, None, None)


def _clear_outbox(app: FastAPI) -> None:
    outbox: Path = app.state.settings.outbox_dir
    if outbox.exists():
        for item in [*outbox.glob("*.eml"), *outbox.glob("sms-*.txt")]:
            item.unlink()


@pytest.fixture
def outbox(app: FastAPI) -> Callable[[], list[Path]]:
    """The .eml files the app wrote, oldest first."""

    def read() -> list[Path]:
        folder: Path = app.state.settings.outbox_dir
        return sorted(folder.glob("*.eml")) if folder.exists() else []

    return read


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = os.environ.get("BOXOFFICE_TEST_REDIS_URL")
    if not url or "redis" in _SKIPPED:
        pytest.skip(f"Redis tests skipped: {_SKIPPED.get('redis', 'not configured')}")
    return url
