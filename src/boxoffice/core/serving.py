"""Serving the API with several worker processes, each with a listening socket of its own.

uvicorn's workers share the supervisor's one listening socket, so one accept queue, and the
worker that wakes first takes every connection waiting there. A burst of new connections (an
onsale opening) lands mostly on one process: measured in the benchmark's rush, 45 of 64
customers on one of two workers, whose queue then set the burst's latency while the other
process had little to do. On Linux each worker here binds a socket of its own to the address
with SO_REUSEPORT, and the kernel spreads new connections over them by a hash of the
connection's addresses (the remedy nginx's `reuse_port` and gunicorn's `reuse_port` use).

uvicorn's supervisor (`Multiprocess`: restarts, signals, health checks) is kept. It hands each
worker process the sockets it was given, pickled; it is given an `_OwnListener` instead, which
each worker unpickles as a fresh socket bound in the address's SO_REUSEPORT group. The
supervisor itself listens on nothing (a socket it held would take its share of the
connections and never accept them). Before starting, a plain bind checks that nothing else
listens on the address: sockets with SO_REUSEPORT would otherwise share it silently with
another server of the same user.
"""

from __future__ import annotations

import errno
import socket
import sys
from dataclasses import dataclass
from typing import Any, cast

import uvicorn
from uvicorn.supervisors import Multiprocess


class AddressInUse(RuntimeError):
    pass


def serve(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """`uvicorn.run(app, factory=True, ...)`, with a listening socket per worker when there
    are several and the kernel balances SO_REUSEPORT groups (Linux)."""
    # Port 0 (any free port) must be one port for all workers: only a shared socket has it.
    if workers < 2 or port == 0 or not balances_connections():
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, **options)
        return
    config = uvicorn.Config(app, factory=True, host=host, port=port, workers=workers, **options)
    check_address_free(host, port)
    # A stand-in for the socket list: each worker process unpickles its own listener.
    listeners = cast(list[socket.socket], [_OwnListener(host, port)])
    Multiprocess(config, sockets=listeners).run()


def balances_connections() -> bool:
    """Whether the kernel spreads connections over an SO_REUSEPORT group (Linux does; other
    systems accept the option but may give every connection to one socket)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def check_address_free(host: str, port: int) -> None:
    """Raise `AddressInUse` when something listens on host:port already."""
    with socket.socket(_family(host)) as probe:
        # SO_REUSEADDR: connections of an earlier server left in TIME_WAIT are no obstacle;
        # without SO_REUSEPORT, a listening socket is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse(f"{host}:{port} is in use by another server") from exc
            raise


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port in its SO_REUSEPORT group (asyncio's server listens)."""
    sock = socket.socket(_family(host))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class _OwnListener:
    """Pickled into each worker process, where it becomes `listening_socket(host, port)`."""

    host: str
    port: int

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return listening_socket, (self.host, self.port)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
