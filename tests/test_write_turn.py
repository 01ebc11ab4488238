"""SQLite's write turn across processes (a lock file), including a writer given up while it
waited: the turn must not stay taken."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from boxoffice.core.db import WriteTurn


async def test_one_writer_at_a_time_across_lock_holders(tmp_path: Path) -> None:
    # Two WriteTurns on one file stand for two server processes (each its own descriptor).
    first, second = WriteTurn(tmp_path / "db.writelock"), WriteTurn(tmp_path / "db.writelock")
    order: list[str] = []
    async with first:
        waiter = asyncio.create_task(second.__aenter__())
        await asyncio.sleep(0.2)
        assert not waiter.done()  # the other "process" waits for the file lock
        order.append("first")
    await asyncio.wait_for(waiter, 5)
    order.append("second")
    await second.__aexit__(None, None, None)
    assert order == ["first", "second"]


async def test_a_writer_cancelled_while_waiting_leaves_the_turn_free(tmp_path: Path) -> None:
    first, second = WriteTurn(tmp_path / "db.writelock"), WriteTurn(tmp_path / "db.writelock")
    async with first:
        waiter = asyncio.create_task(second.__aenter__())
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    # The cancelled waiter's thread takes the file lock now and must give it back: both
    # sides can write again, one after the other.
    for _ in range(2):
        for turn in (second, first):
            await asyncio.wait_for(turn.__aenter__(), 5)
            await turn.__aexit__(None, None, None)
