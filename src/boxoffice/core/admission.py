"""Admission: how many units of work (database sessions) of one process run at once.

In an onsale a process has many more requests than its event loop can serve at once. Let in
together, their transactions interleave: each holds its connection and its row locks (the
seats of a booking or a confirmation) through more event-loop turns while the others run,
and every request waits longer, the hold behind them included. Admitted a few at a time, the
others wait for a place before they touch the database (holding no connection and no lock),
and each transaction runs through quickly. The hot one-statement paths (hold, release, seat
map: core.pgdriver, booking.holds_sqlite) open no session and are never queued here.

The engine's pool size did the same (measured in docs/performance.md), but a booking waits
for its payment provider (Stripe, PayPal: a network round trip of hundreds of milliseconds)
inside its transaction, and a small pool would cap a process at a few bookings a second. A
unit of work calling a provider (or S3, for a stored document) gives its place back first
(`leave`) and does not queue for it again: what remains after the provider's answer is a few
statements, and queueing then, with the booking's locks held, could deadlock with admitted
units waiting for those locks.

A unit of work opened inside an admitted one (after-commit steps with their own session) runs
on its parent's admission: queueing for a second place while holding the first could
deadlock too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from sqlalchemy.exc import TimeoutError as PoolTimeout


class _Place:
    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._held = True

    def leave(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()


_place: ContextVar[_Place | None] = ContextVar("admission_place", default=None)


class Admission:
    """At most `limit` units of work at once (0: no limit); a unit that waits longer than
    `timeout` seconds fails with the engine's PoolTimeout (503, overloaded), as a request
    waiting for a pooled connection does."""

    def __init__(self, limit: int, timeout: float = 30.0) -> None:
        self.limit = limit
        self.timeout = timeout
        self._semaphore = asyncio.Semaphore(limit) if limit > 0 else None

    @asynccontextmanager
    async def enter(self) -> AsyncIterator[None]:
        semaphore = self._semaphore
        if semaphore is None or _place.get() is not None:
            yield
            return
        try:
            async with asyncio.timeout(self.timeout):
                await semaphore.acquire()
        except TimeoutError:
            raise PoolTimeout(
                f"no admission within {self.timeout:g} s ({self.limit} units of work running)"
            ) from None
        place = _Place(semaphore)
        token = _place.set(place)
        try:
            yield
        finally:
            place.leave()
            try:
                _place.reset(token)
            except ValueError:  # closed from another context (a dependency's teardown)
                _place.set(None)


def leave() -> None:
    """The current unit of work is about to wait for something outside this machine (a
    payment provider): its place goes to the next unit, and it does not queue again."""
    place = _place.get()
    if place is not None:
        place.leave()
