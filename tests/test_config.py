"""Settings: URL normalisation, development secret, production refusal, SQLite pragmas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from boxoffice.app import create_app
from boxoffice.config import ConfigurationError, Settings
from boxoffice.core.db import Database, create_engine, normalize_url


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("sqlite:///var/x.db", "sqlite+aiosqlite"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg"),
        ("mysql://u@h/db", "mysql+aiomysql"),
        ("mariadb://u@h/db", "mysql+aiomysql"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_plain_urls_get_an_async_driver(raw: str, driver: str) -> None:
    assert normalize_url(raw).drivername == driver


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        normalize_url("oracle://u@h/db")


def test_default_database_is_a_sqlite_file_under_var(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path / "var")  # type: ignore[call-arg]
    assert settings.database_url == f"sqlite:///{(tmp_path / 'var' / 'boxoffice.db').as_posix()}"


def test_development_generates_one_secret_and_keeps_it(tmp_path: Path) -> None:
    first = Settings(_env_file=None, var_dir=tmp_path)  # type: ignore[call-arg]
    key = first.signing_key()
    assert len(key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    again = Settings(_env_file=None, var_dir=tmp_path)  # type: ignore[call-arg]
    assert again.signing_key() == key


@pytest.mark.parametrize("secret", [None, "changeme", "short-secret"])
def test_production_refuses_to_start_without_a_real_secret(
    tmp_path: Path, secret: str | None
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, env="production", var_dir=tmp_path, secret_key=secret
    )
    with pytest.raises(ConfigurationError):
        create_app(settings)
    assert not (tmp_path / "secret_key").exists()


def test_production_starts_with_a_real_secret(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, env="production", var_dir=tmp_path, secret_key="k" * 48
    )
    assert create_app(settings).state.signing_key == "k" * 48


def test_serve_command_refuses_production_without_secret(tmp_path: Path) -> None:
    env = {"BOXOFFICE_ENV": "production", "BOXOFFICE_VAR_DIR": str(tmp_path), "PATH": "/usr/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "boxoffice.cli", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "BOXOFFICE_SECRET_KEY" in result.stderr


def test_env_file_and_prefix_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("BOXOFFICE_HOLD_TTL=42\nBOXOFFICE_PAYMENT_PROVIDER=local\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOXOFFICE_BOOKING_TTL", "77")
    settings = Settings()
    assert settings.hold_ttl == 42
    assert settings.booking_ttl == 77


async def test_sqlite_connections_use_wal_foreign_keys_and_immediate_writes(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    database = Database(engine)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 10000
        statements: list[str] = []

        from sqlalchemy import event

        def record(conn: object, cursor: object, statement: str, *args: object) -> None:
            statements.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", record)
        # BEGIN is issued by exec_driver_sql inside the begin event, so it is recorded too.
        async with database.session(write=True) as session:
            await session.execute(text("SELECT 1"))
        async with database.session(write=False) as session:
            await session.execute(text("SELECT 1"))
        begins = [s for s in statements if s.startswith("BEGIN")]
        assert begins == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]
    finally:
        await engine.dispose()


def test_production_refuses_weak_password_hashing(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="OWASP"):
        Settings(  # type: ignore[call-arg]
            _env_file=None, env="production", var_dir=tmp_path, argon2_memory_kib=1024
        )
