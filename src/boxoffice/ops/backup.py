"""Backup and restore of the configured database (`boxoffice db backup` / `db restore`).

SQLite: an online backup through SQLite's backup API (one read transaction over every page,
so the copy is consistent while servers keep writing in WAL mode); a restore replaces the file
atomically, and only when no process has the database open. PostgreSQL: `pg_dump
--format=custom` and `pg_restore --clean --single-transaction`. MariaDB/MySQL: the dump tool
with `--single-transaction`, restored through the command-line client. Passwords go to the
tools through their environment (PGPASSWORD, MYSQL_PWD), never on a command line.

Backups hold password hashes and personal data: files are written 0600 into a 0700 folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from boxoffice.config import Settings
from boxoffice.core.db import create_engine, normalize_url
from boxoffice.migrations import alembic_config

EXTENSIONS = {"sqlite": "sqlite3", "postgresql": "dump", "mysql": "sql"}
SQLITE_MAGIC = b"SQLite format 3\x00"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
STAMP_PATTERN = re.compile(r"boxoffice-[a-z]+-(\d{8}T\d{6}Z)")
TOOL_TIMEOUT_SECONDS = 6 * 3600


class BackupError(Exception):
    """A backup or restore that cannot go ahead (the CLI prints it and exits with
    `exit_code`: 2 when nothing was tried, 1 when a tool ran and failed)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    """The configured database."""

    backend: str  # sqlite, postgresql or mysql
    url: URL

    @classmethod
    def of(cls, settings: Settings) -> Target:
        url = normalize_url(settings.database_url)
        return cls(url.get_backend_name(), url)

    @property
    def sqlite_path(self) -> Path:
        if not self.url.database or self.url.database == ":memory:":
            raise BackupError("an in-memory SQLite database cannot be backed up or restored")
        return Path(self.url.database)

    def describe(self) -> str:
        if self.backend == "sqlite":
            return f"the SQLite database {self.sqlite_path}"
        where = f"{self.url.host or 'localhost'}:{self.url.port or 'default port'}"
        kind = "PostgreSQL" if self.backend == "postgresql" else "MariaDB/MySQL"
        return f"the {kind} database {self.url.database} on {where}"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    backend: str


@dataclass(frozen=True)
class BackupInfo:
    """What a backup file holds, checked before a restore."""

    path: Path
    backend: str
    revision: str
    made_at: dt.datetime | None  # None when neither the name nor the file says
    tables: frozenset[str]


def default_output(settings: Settings, backend: str, now: dt.datetime | None = None) -> Path:
    """var/backups/boxoffice-<backend>-<UTC timestamp>.<ext>"""
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime(STAMP_FORMAT)
    return settings.var_dir / "backups" / f"boxoffice-{backend}-{stamp}.{EXTENSIONS[backend]}"


def human_size(size: int) -> str:
    value, unit = float(size), "bytes"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


# ---------------------------------------------------------------------------------------------
# Backup


def backup(settings: Settings, output: Path | None = None) -> BackupResult:
    """Write a backup of the configured database to `output` (default: `default_output`).
    The file appears under its name only when complete. Synchronous: not for an event loop."""
    target = Target.of(settings)
    path = output or default_output(settings, target.backend)
    if path.exists() and path.is_dir():
        raise BackupError(f"{path} is a directory; give a file name")
    if output is None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    elif not path.parent.is_dir():
        raise BackupError(f"no such directory: {path.parent}")
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        if target.backend == "sqlite":
            _sqlite_backup(target, partial)
        elif target.backend == "postgresql":
            _pg_backup(target, partial)
        else:
            _mysql_backup(target, partial)
        _fsync(partial)
        os.replace(partial, path)
        _fsync_dir(path.parent)
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(path=path, size=path.stat().st_size, backend=target.backend)


def _private_file(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def _sqlite_backup(target: Target, partial: Path) -> None:
    source_path = target.sqlite_path
    if not source_path.exists():
        raise BackupError(f"no database at {source_path} (BOXOFFICE_DATABASE_URL)")
    os.close(_private_file(partial))  # the copy is created private, before any data is in it
    try:
        source = sqlite3.connect(f"file:{source_path}?mode=rw", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source_path}: {exc}") from exc
    try:
        _check_app_database(source, str(source_path))
        copy = sqlite3.connect(partial)
        try:
            # pages=-1: every page in one step, i.e. inside one read transaction of the source,
            # which in WAL mode does not block the writers and sees one committed state.
            source.backup(copy, pages=-1)
            # A single self-contained file (the live database is in WAL mode; the servers
            # switch a restored file back to WAL when they open it).
            copy.execute("PRAGMA journal_mode=DELETE")
            if copy.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise BackupError("the copy failed its integrity check", exit_code=1)
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup failed: {exc}", exit_code=1) from exc
    finally:
        source.close()


def _check_app_database(conn: sqlite3.Connection, name: str) -> str:
    """The migration revision of a SQLite database of this app; BackupError otherwise."""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{name} is not a boxoffice database ({exc})") from exc
    if row is None:
        raise BackupError(f"{name} is not a boxoffice database (no migration revision)")
    return str(row[0])


def _pg_backup(target: Target, partial: Path) -> None:
    pg_dump = _tool("pg_dump", hint="install the PostgreSQL client tools (postgresql-client)")
    client_major = _tool_major(pg_dump)
    server_major = asyncio.run(_pg_server_major(target.url))
    if client_major < server_major:
        raise BackupError(
            f"pg_dump {client_major} is older than the PostgreSQL {server_major} server and "
            f"cannot dump it: install the PostgreSQL {server_major} client tools"
        )
    _run_to_file(
        [pg_dump, "--format=custom", "--no-password"], _pg_env(target.url), partial, "pg_dump"
    )


def _mysql_backup(target: Target, partial: Path) -> None:
    dump = _tool("mariadb-dump", "mysqldump", hint="install the MariaDB (or MySQL) client tools")
    command = [
        dump,
        *_mysql_connection_args(target.url),
        "--single-transaction",
        "--routines",
        "--triggers",
        "--hex-blob",
        "--no-tablespaces",
        "--default-character-set=utf8mb4",
        str(target.url.database),
    ]
    _run_to_file(command, _mysql_env(target.url), partial, Path(dump).name)


# ---------------------------------------------------------------------------------------------
# Restore


def inspect_backup(settings: Settings, path: Path) -> BackupInfo:
    """Check that `path` is a backup of this app for the configured backend, made by this or
    an older version; what it holds. BackupError (nothing changed) otherwise."""
    target = Target.of(settings)
    if not path.is_file():
        raise BackupError(f"no such file: {path}")
    if target.backend == "sqlite":
        revision, tables = _sqlite_inspect(path)
    elif target.backend == "postgresql":
        revision, tables = _pg_inspect(path)
    else:
        revision, tables = _mysql_inspect(path)
    if revision not in _known_revisions(settings):
        raise BackupError(
            f"{path} is at migration revision {revision}, unknown to this version of "
            "boxoffice: restore it with the version that made it"
        )
    return BackupInfo(path, target.backend, revision, _made_at(path), tables)


def restore(settings: Settings, info: BackupInfo) -> None:
    """Replace the configured database's data with the backup's. Servers and workers must be
    stopped (on SQLite this is checked: an open database refuses)."""
    target = Target.of(settings)
    if target.backend == "sqlite":
        _sqlite_restore(target, info.path)
        return
    extra = asyncio.run(_tables_of(target.url)) - info.tables
    if extra:
        raise BackupError(
            f"{target.describe()} has tables the backup does not know "
            f"({', '.join(sorted(extra))}), made by a newer version: first run "
            f"`boxoffice db downgrade {info.revision}`, or restore into an empty database"
        )
    if target.backend == "postgresql":
        _pg_restore(target, info.path)
    else:
        _mysql_restore(target, info.path)


def next_steps(info: BackupInfo) -> str:
    made = info.made_at.strftime("%Y-%m-%d %H:%M:%S UTC") if info.made_at else "unknown"
    return "\n".join(
        [
            f"restored {info.path} (made {made}, migration revision {info.revision}).",
            "Next:",
            "  1. boxoffice db upgrade        # a backup from an older version gets the newer "
            "schema",
            "  2. start the servers and workers",
            "  3. boxoffice payments reconcile --older-than 0",
            "     # payments pending in the backup that customers paid after it was made are "
            "confirmed",
            f"  4. payments started after {made} are not in the database: their provider "
            "webhooks are",
            "     logged as payment_event_unmatched; refund or re-book them from the provider's "
            "dashboard",
        ]
    )


def _sqlite_inspect(path: Path) -> tuple[str, frozenset[str]]:
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise BackupError(f"{path} is not a SQLite database")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from exc
    try:
        revision = _check_app_database(conn, str(path))
        if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
            raise BackupError(f"{path} is damaged (it fails SQLite's integrity check)")
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a usable SQLite database ({exc})") from exc
    finally:
        conn.close()
    return revision, frozenset(str(name) for (name,) in rows)


def _sqlite_restore(target: Target, backup_path: Path) -> None:
    live = target.sqlite_path
    live.parent.mkdir(parents=True, exist_ok=True)
    if live.exists():
        _sqlite_refuse_if_open(live)
    # Stale WAL files of the old database would be replayed onto the restored one: remove
    # them before the new file takes the name.
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    staging = live.with_name(f".{live.name}.restore-{os.getpid()}")
    os.close(_private_file(staging))
    if live.exists():  # the restored file keeps the live one's permissions
        os.chmod(staging, live.stat().st_mode & 0o777)
    try:
        source = sqlite3.connect(f"file:{backup_path}?mode=ro", uri=True)
        copy = sqlite3.connect(staging)
        try:
            source.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
            source.close()
        _fsync(staging)
        os.replace(staging, live)
        _fsync_dir(live.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"restore failed, {live} unchanged: {exc}", exit_code=1) from exc
    finally:
        staging.unlink(missing_ok=True)


def _sqlite_refuse_if_open(live: Path) -> None:
    """An exclusive lock is refused while any other connection has the database open (a
    server's pool keeps connections open): the servers are still running."""
    conn = sqlite3.connect(live, timeout=1, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise BackupError(
                f"{live} is in use: stop every server and worker (and anything else that has "
                "it open) before restoring"
            ) from exc
        # A damaged file (the reason for the restore, perhaps) cannot be locked either.
    except sqlite3.DatabaseError:
        pass
    finally:
        conn.close()


def _pg_inspect(path: Path) -> tuple[str, frozenset[str]]:
    pg_restore = _tool("pg_restore", hint="install the PostgreSQL client tools (postgresql-client)")
    listing = _run([pg_restore, "--list", str(path)], os.environ.copy())
    if listing.returncode != 0:
        raise BackupError(
            f"{path} is not a PostgreSQL backup (pg_restore --list: {_last_line(listing)})"
        )
    tables = frozenset(
        match.group(1)
        for match in re.finditer(r"^\d+; \d+ \d+ TABLE \S+ (\S+) ", listing.stdout, re.M)
    )
    if "alembic_version" not in tables:
        raise BackupError(f"{path} is not a boxoffice backup (no alembic_version table)")
    data = _run(
        [pg_restore, "--data-only", "--table=alembic_version", "--file=-", str(path)],
        os.environ.copy(),
    )
    match = re.search(
        r"^COPY \S*alembic_version \(version_num\) FROM stdin;\n(\S+)\n", data.stdout, re.M
    )
    if data.returncode != 0 or match is None:
        raise BackupError(f"{path} is not a boxoffice backup (no migration revision)")
    return match.group(1), tables


def _pg_restore(target: Target, path: Path) -> None:
    pg_restore = _tool("pg_restore", hint="install the PostgreSQL client tools (postgresql-client)")
    command = [
        pg_restore,
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        "--no-password",
        f"--dbname={target.url.database}",
        str(path),
    ]
    result = _run(command, _pg_env(target.url))
    if result.returncode != 0:
        raise BackupError(
            f"pg_restore failed; the database is unchanged (one transaction):\n{result.stderr}",
            exit_code=1,
        )


MYSQL_DUMP_HEADER = re.compile(rb"^-- (MariaDB|MySQL) dump", re.M)


def _mysql_inspect(path: Path) -> tuple[str, frozenset[str]]:
    with path.open("rb") as handle:
        head = handle.read(4096)
    if not MYSQL_DUMP_HEADER.search(head):
        raise BackupError(f"{path} is not a MariaDB/MySQL dump")
    tables: set[str] = set()
    revision: str | None = None
    in_versions = False  # the INSERT may put its VALUES on the next line (MariaDB 10.11)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("CREATE TABLE `"):
                tables.add(line.split("`")[1])
            elif line.startswith("INSERT INTO `alembic_version`"):
                in_versions = True
            if in_versions:
                found = re.search(r"\('([^']+)'\)", line)
                if found:
                    revision = found.group(1)
                in_versions = found is None and not line.rstrip().endswith(";")
    if "alembic_version" not in tables or revision is None:
        raise BackupError(f"{path} is not a boxoffice backup (no migration revision)")
    return revision, frozenset(tables)


def _mysql_restore(target: Target, path: Path) -> None:
    client = _tool("mariadb", "mysql", hint="install the MariaDB (or MySQL) client tools")
    command = [
        client,
        *_mysql_connection_args(target.url),
        "--default-character-set=utf8mb4",
        str(target.url.database),
    ]
    with path.open("rb") as dump:
        result = _run(command, _mysql_env(target.url), stdin=dump)
    if result.returncode != 0:
        raise BackupError(
            f"{Path(client).name} failed part-way (MariaDB cannot undo table changes): run "
            f"the restore again.\n{result.stderr}",
            exit_code=1,
        )


# ---------------------------------------------------------------------------------------------
# Helpers


def _tool(*names: str, hint: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BackupError(f"{' or '.join(names)} not found on PATH: {hint}")


def _tool_major(tool: str) -> int:
    result = _run([tool, "--version"], os.environ.copy())
    match = re.search(r"(\d+)(?:\.\d+)*", result.stdout)
    if result.returncode != 0 or match is None:
        raise BackupError(f"cannot tell the version of {tool}: {result.stdout}{result.stderr}")
    return int(match.group(1))


async def _pg_server_major(url: URL) -> int:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            number = (await conn.execute(text("SHOW server_version_num"))).scalar_one()
    finally:
        await engine.dispose()
    return int(number) // 10000


async def _tables_of(url: URL) -> frozenset[str]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return frozenset(names)


def _pg_env(url: URL) -> dict[str, str]:
    env = os.environ.copy()
    values = {
        "PGHOST": url.host,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
    }
    ssl = url.query.get("sslmode") or url.query.get("ssl")
    if isinstance(ssl, str):
        values["PGSSLMODE"] = ssl
    env.update({name: str(value) for name, value in values.items() if value})
    return env


def _mysql_env(url: URL) -> dict[str, str]:
    env = os.environ.copy()
    env.pop("MYSQL_PWD", None)
    if url.password:
        env["MYSQL_PWD"] = str(url.password)
    return env


def _mysql_connection_args(url: URL) -> list[str]:
    args = [f"--host={url.host or 'localhost'}"]
    if url.port:
        args.append(f"--port={url.port}")
    if url.username:
        args.append(f"--user={url.username}")
    socket = url.query.get("unix_socket")
    if isinstance(socket, str):
        args.append(f"--socket={socket}")
    return args


def _run(
    command: list[str], env: dict[str, str], stdin: int | IO[bytes] = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            env=env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_SECONDS,
            check=False,
        )
    except OSError as exc:
        raise BackupError(f"cannot run {command[0]}: {exc}") from exc


def _run_to_file(command: list[str], env: dict[str, str], partial: Path, name: str) -> None:
    fd = _private_file(partial)
    with os.fdopen(fd, "wb") as out:
        try:
            result = subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.PIPE,
                timeout=TOOL_TIMEOUT_SECONDS,
                check=False,
            )
        except OSError as exc:
            raise BackupError(f"cannot run {command[0]}: {exc}") from exc
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise BackupError(f"{name} failed: {message}", exit_code=1)


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"


def _known_revisions(settings: Settings) -> set[str]:
    scripts = ScriptDirectory.from_config(alembic_config(settings.database_url))
    return {script.revision for script in scripts.walk_revisions()}


def _made_at(path: Path) -> dt.datetime | None:
    """From the default file name's timestamp, else the file's modification time."""
    match = STAMP_PATTERN.search(path.name)
    if match:
        return dt.datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be synced
        _fsync(path)
