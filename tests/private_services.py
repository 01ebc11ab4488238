"""Private PostgreSQL and Redis servers that a test may stop, restart or kill.

The shared test servers (BOXOFFICE_TEST_POSTGRES_URL, BOXOFFICE_TEST_REDIS_URL) serve every
test run on the machine, so fault tests never touch them: they start their own here, on a free
port, with their data in a temporary directory that is removed afterwards.

    with private_postgres() as pg:      # pg.url: postgresql://postgres@127.0.0.1:<port>/postgres
        pg.restart()                    # `pg_ctl stop -m fast`, then start again
    with private_redis() as redis:      # redis.url: redis://127.0.0.1:<port>/0
        redis.kill(); redis.start()     # SIGKILL, and a new server on the same port

PostgreSQL needs `initdb` and `pg_ctl` (BOXOFFICE_TEST_PG_BIN, else
/usr/lib/postgresql/<version>/bin or the PATH); as root they run as the `postgres` user through
`runuser`, since initdb refuses root. Redis needs `redis-server` on the PATH. When a binary is
missing, `require` skips the test with the reason printed, but with CI=true it fails it.

As fixtures (`private_pg`, `private_redis_server`), load the module as a plugin:
`pytest_plugins = ("tests.private_services",)`; a module that imports from it instead (as
tests/test_faults.py does) uses the context managers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def require(reason: str | None) -> None:
    """Skip the test when `reason` says a private service cannot run; with CI=true, fail."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    print(f"skipped: {reason}")
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def _pg_bin_dir() -> Path | None:
    configured = os.environ.get("BOXOFFICE_TEST_PG_BIN")
    candidates = [Path(configured)] if configured else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def postgres_problem() -> str | None:
    """Why a private PostgreSQL cannot run here, or None."""
    if _pg_bin_dir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) for a private cluster"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without `runuser` (initdb refuses root)"
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no `postgres` user to run initdb as"
    return None


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this test only: trust auth, TCP on 127.0.0.1:`port`."""

    bin_dir: Path
    root: Path  # data/, the socket and the log live here
    port: int
    as_postgres: bool  # run the binaries as the `postgres` user (we are root)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}\n"
                f"{self.log()}"
            )

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-sync", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-w", "-t", str(int(START_TIMEOUT)),
            "-l", str(self.root / "postgres.log"), "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-w", "-m", mode)

    def restart(self) -> None:
        """Stop (disconnecting every client) and start again, on the same port."""
        self.stop()
        self.start()

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and _port_answers(self.port)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh private cluster, running until the block ends; then stopped and deleted."""
    require(postgres_problem())
    bin_dir = _pg_bin_dir()
    assert bin_dir is not None
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="boxoffice-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    server = PrivatePostgres(bin_dir, root, free_port(), as_postgres)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Redis


def redis_problem() -> str | None:
    if shutil.which("redis-server") is None:
        return "no `redis-server` binary for a private Redis"
    return None


@dataclass
class PrivateRedis:
    """A redis-server of this test only, without persistence, on 127.0.0.1:`port`."""

    port: int
    process: subprocess.Popen[bytes] | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _port_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self._collect()
                raise RuntimeError(f"redis-server did not start:\n{output}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the server vanishes with everything it held (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._collect()

    def _collect(self) -> str:
        if self.process is None or self.process.stdout is None or self.process.stdout.closed:
            return ""
        if self.process.poll() is None:
            return ""
        output = self.process.stdout.read().decode(errors="replace")
        self.process.stdout.close()
        self.logs.append(output)
        return output


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    require(redis_problem())
    server = PrivateRedis(free_port())
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture
def private_redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server
