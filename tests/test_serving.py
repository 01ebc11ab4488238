"""Several worker processes, each listening on a socket of its own (core.serving).

With uvicorn's one shared socket, a burst of new connections went mostly to one worker
(measured: 48/16, 48/16 and 55/9 of 64 connections between two workers); with a socket per
worker in the port's SO_REUSEPORT group the kernel spreads them.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from boxoffice.core import serving

if TYPE_CHECKING:
    from tests.conftest import Backend
    from tests.live_server import LiveServer

pytest_plugins = ("tests.live_server",)

pytestmark = pytest.mark.skipif(
    not serving.balances_connections(),
    reason="a socket per worker needs the kernel's SO_REUSEPORT balancing (Linux)",
)


def _listeners_of_one_port(count: int) -> list[socket.socket]:
    """`count` worker listeners as the supervisor hands them over (pickled), on one port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handed_over = pickle.dumps(serving._OwnListener("127.0.0.1", port))
    listeners = [pickle.loads(handed_over) for _ in range(count)]
    for listener in listeners:
        listener.listen(128)
        listener.setblocking(False)
    return listeners


def _accept_all(listener: socket.socket) -> list[socket.socket]:
    accepted = []
    while True:
        try:
            accepted.append(listener.accept()[0])
        except BlockingIOError:
            return accepted


def test_each_worker_gets_its_own_listener_and_a_share_of_a_burst() -> None:
    listeners = _listeners_of_one_port(2)
    port = listeners[0].getsockname()[1]
    assert listeners[1].getsockname()[1] == port
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
    shares: list[list[socket.socket]] = []
    try:
        shares = [_accept_all(listener) for listener in listeners]
        counts = sorted(len(share) for share in shares)
        # The kernel hashes each connection's addresses: both get some, none are lost (the
        # chance that one of two gets all 64 is 2^-63).
        assert sum(counts) == 64, counts
        assert counts[0] > 0, counts
    finally:
        for sock in [*clients, *listeners, *(s for share in shares for s in share)]:
            sock.close()


def test_an_address_in_use_is_refused_before_starting() -> None:
    (listener,) = _listeners_of_one_port(1)
    port = listener.getsockname()[1]
    with pytest.raises(serving.AddressInUse):
        serving.check_address_free("127.0.0.1", port)
    listener.close()
    serving.check_address_free("127.0.0.1", port)


@pytest.mark.backends("sqlite")
async def test_the_server_listens_once_per_worker_and_a_second_one_refuses_its_port(
    live: LiveServer, tmp_path: Path, backend: Backend
) -> None:
    from tests.live_server import WORKERS, server_env

    port = urlsplit(live.url).port
    assert port is not None
    # One socket per worker (the supervisor itself listens on nothing), once both started.
    for _ in range(100):
        if _listening_sockets(port) == WORKERS:
            break
        await asyncio.sleep(0.1)
    assert _listening_sockets(port) == WORKERS
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/healthz")).status_code == 200

    second = subprocess.run(
        [sys.executable, "-m", "boxoffice.cli", "serve", "--workers", "2", "--port", str(port)],
        env=server_env(backend, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert second.returncode == 1, second.stderr
    assert f"127.0.0.1:{port} is in use" in second.stderr
    assert _listening_sockets(port) == WORKERS


def _listening_sockets(port: int) -> int:
    """Sockets listening on the port (Linux's /proc/net/tcp: state 0A is LISTEN)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"
    )
