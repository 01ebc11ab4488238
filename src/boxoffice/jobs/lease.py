"""Leases: which process runs a periodic job this period (one row per job name)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, String, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, Database, UTCDateTime


class JobLease(Base):
    """A periodic job's lease: `holder` may run it until `expires_at`."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


def new_holder() -> str:
    """A name for one process (one app): host, pid and a random part."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


async def take_lease(database: Database, name: str, holder: str, seconds: float) -> bool:
    """Take (or renew) the lease on `name` for `seconds`, in its own short transaction.

    True when `holder` has it: the lease had expired, was already its own, or did not exist.
    One conditional UPDATE decides, so of several processes at most one gets it; the row is
    inserted on first use, and a process that loses that insert race simply does not get it.
    """
    now = utcnow()
    values = {"holder": holder, "expires_at": now + dt.timedelta(seconds=seconds)}
    async with database.session() as session:
        result = await session.execute(
            update(JobLease)
            .where(JobLease.name == name, or_(JobLease.expires_at < now, JobLease.holder == holder))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount == 1:
            return True
        if await session.scalar(select(JobLease.name).where(JobLease.name == name)) is not None:
            return False  # someone else's, still valid
        try:
            async with session.begin_nested():
                await session.execute(insert(JobLease).values(name=name, **values))
        except IntegrityError:  # another process inserted it first: theirs this period
            return False
        return True
