"""`Idempotency-Key` support: the same key with the same body returns the first answer.

The record is inserted at the start of the request's transaction. A concurrent duplicate
blocks on the primary key until the first request commits (PostgreSQL, MariaDB) or waits for
the write lock (SQLite), then finds the stored answer and replays it; a duplicate of a request
that failed finds no record and runs again. The same key with another body is a 422.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, UTCDateTime
from boxoffice.core.errors import (
    PROBLEM_MEDIA_TYPE,
    BoxofficeError,
    Conflict,
    Unprocessable,
    problem_response,
)

MAX_KEY_LENGTH = 200

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat the request with the same key to get the first answer again.",
    ),
]


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)  # "POST /api/bookings"
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"
    title = "Idempotency-Key reused with another request"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"
    title = "A request with this Idempotency-Key is still being processed"


@dataclass
class Replay:
    status_code: int
    body: dict[str, Any]


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, default=str, separators=(",", ":")).encode()
    ).hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Unprocessable(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.",
            code="invalid_idempotency_key",
        )
    return key


async def claim(
    session: AsyncSession, *, user_id: uuid.UUID, scope: str, key: str, fingerprint: str
) -> Replay | None:
    """Claim the key for this request, or return the answer to replay.

    Must be the first write of the transaction: on a duplicate the transaction is rolled back
    and a new one reads the stored answer.
    """
    key = check_key(key)
    record = IdempotencyRecord(user_id=user_id, scope=scope, key=key, request_hash=fingerprint)
    try:
        async with session.begin_nested():
            session.add(record)
            await session.flush()
        return None
    except IntegrityError:
        pass
    existing = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id,
            IdempotencyRecord.scope == scope,
            IdempotencyRecord.key == key,
        )
    )
    if existing is None:  # the first request failed and was rolled back meanwhile
        raise IdempotencyInProgress("Retry the request.")
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body.")
    if existing.status_code is None or existing.response_body is None:
        raise IdempotencyInProgress("The first request with this key has not finished.")
    return Replay(existing.status_code, existing.response_body)


async def store(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    scope: str,
    key: str,
    status_code: int,
    body: dict[str, Any],
) -> None:
    record = await session.get(IdempotencyRecord, (user_id, scope, check_key(key)))
    if record is not None:
        record.status_code = status_code
        record.response_body = body


async def run_once(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    key: str | None,
    scope: str,
    body: BaseModel,
    run: Callable[[], Awaitable[BaseModel]],
    status_code: int = 200,
) -> Any:
    """Run the call once per Idempotency-Key: a repeat with the same body gets the first
    answer (a kept failure such as a declined card included), another body a 422."""
    if key is None:
        return await run()
    fingerprint = request_fingerprint(body.model_dump(mode="json"))
    replay = await claim(session, user_id=user_id, scope=scope, key=key, fingerprint=fingerprint)
    if replay is not None:
        media_type = PROBLEM_MEDIA_TYPE if replay.status_code >= 400 else None
        return JSONResponse(replay.body, status_code=replay.status_code, media_type=media_type)
    try:
        answer = await run()
    except BoxofficeError as exc:
        if exc.commit:  # the failure's writes are kept, so it is the answer repeats get
            problem = problem_response(
                None, exc.status, exc.code, exc.detail, title=exc.title, **exc.extra
            )
            await store(
                session,
                user_id=user_id,
                scope=scope,
                key=key,
                status_code=exc.status,
                body=json.loads(bytes(problem.body)),
            )
        raise
    await store(
        session,
        user_id=user_id,
        scope=scope,
        key=key,
        status_code=status_code,
        body=answer.model_dump(mode="json", by_alias=True),
    )
    return answer
