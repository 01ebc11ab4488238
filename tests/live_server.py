"""A real `boxoffice serve` (uvicorn, 2 worker processes) on the test database, for race tests.

The in-process ASGI client runs every request in the test's own process and event loop, on one
engine; races between server processes (each with its own connection pool) only show against a
real server. The server gets the session's migrated database, so test data is set up through
the in-process `app` fixture (same database, same signing key) and read back from it.

A test module loads the fixtures with `pytest_plugins = ("tests.live_server",)`:
`live` is the module's server (one per backend, default settings but the expiry job off),
`start_server(hold_ttl=2, ...)` starts one with other settings for one test. The server's
output is printed when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SECRET, Backend

WORKERS = 2
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


# A console log line at error level ("2026-11-22T02:16:39.354000Z [error    ] event ...").
_ERROR_LINE = re.compile(r"^\S+ \[(error|critical)\s*\]")


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    test_start: int = 0  # where the current test's output begins in the log

    def log(self, offset: int | None = None) -> str:
        with self.log_path.open("rb") as handle:
            handle.seek(self.test_start if offset is None else offset)
            return handle.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def logged_errors(self) -> list[str]:
        """Errors the server logged during the current test (failed jobs, unhandled errors)."""
        return [line for line in self.log().splitlines() if _ERROR_LINE.match(line)]

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A client with room for many concurrent customers. Idle connections are dropped
        after 2 s, before uvicorn's 5 s keep-alive timeout: with equal timeouts a request sent
        on a connection the server is closing at that moment fails with "Server
        disconnected"."""
        kwargs.setdefault("timeout", httpx.Timeout(60.0))
        kwargs.setdefault(
            "limits",
            httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=2.0),
        )
        return httpx.AsyncClient(base_url=self.url, **kwargs)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(backend: Backend, var_dir: Path, **settings: Any) -> dict[str, str]:
    """The server's environment: ours only (no BOXOFFICE_* leaking in from the shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    values: dict[str, Any] = {
        "database_url": backend.url,
        "var_dir": var_dir,
        "secret_key": TEST_SECRET,
        "env": "test",
        "log_level": "WARNING",
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "rate_limit_enabled": "false",
        # Two workers, and tests that run two servers at once: within the test PostgreSQL's
        # 100 connections.
        "database_hot_pool_size": 4,
    }
    values.update(settings)
    env.update({f"BOXOFFICE_{name.upper()}": str(value) for name, value in values.items()})
    return env


async def _wait_until_up(server: LiveServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as http:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {server.process.returncode}:\n{server.log()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not answer /healthz in {STARTUP_TIMEOUT:.0f} s:\n"
                    f"{server.log()}"
                )
            await asyncio.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (supervisor and workers), SIGKILL it if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.asynccontextmanager
async def run_server(backend: Backend, var_dir: Path, **settings: Any) -> AsyncIterator[LiveServer]:
    """`boxoffice serve --workers 2` on a free port until the block ends."""
    var_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = var_dir / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "boxoffice.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(WORKERS),
            ],
            env=server_env(backend, var_dir, **settings),
            cwd=var_dir,  # no stray .env file is read
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        await _wait_until_up(server)
        yield server
    finally:
        await asyncio.to_thread(_stop, process)


def _dump_log_if_failed(
    request: pytest.FixtureRequest, failed_before: int, server: LiveServer
) -> None:
    if request.session.testsfailed > failed_before:
        print(f"--- server output ({server.url}) ---\n{server.log() or '(nothing)'}")


@pytest.fixture(scope="module")
async def live_server(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    """One real server with default settings per test module and backend, but for the expiry
    and invoice-repair jobs: between tests the database is emptied under the running server,
    and PostgreSQL's TRUNCATE can deadlock with them (tests wanting them start their own)."""
    var_dir = tmp_path_factory.mktemp("live")
    async with run_server(
        backend, var_dir, expiry_interval_seconds=0, invoice_repair_interval_seconds=0
    ) as server:
        yield server


@pytest.fixture
def live(live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """The module's server; its output during the test is printed when the test fails."""
    failed_before = request.session.testsfailed
    live_server.test_start = live_server.log_size()
    yield live_server
    _dump_log_if_failed(request, failed_before, live_server)


ServerFactory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
async def start_server(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[ServerFactory]:
    """Start servers with overridden settings (`await start_server(booking_ttl=2)`)."""
    failed_before = request.session.testsfailed
    async with contextlib.AsyncExitStack() as stack:
        servers: list[LiveServer] = []

        async def start(**settings: Any) -> LiveServer:
            var_dir = tmp_path / f"live{len(servers)}"
            server = await stack.enter_async_context(run_server(backend, var_dir, **settings))
            servers.append(server)
            return server

        yield start
        for server in servers:
            _dump_log_if_failed(request, failed_before, server)
