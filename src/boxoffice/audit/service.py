"""Writing audit entries: in the caller's session, so an entry commits (or rolls back) with the
change it describes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.audit.models import AuditEntry


def record(
    session: AsyncSession,
    action: str,
    *,
    entity_type: str,
    entity_id: uuid.UUID | str,
    actor_kind: str,
    actor_id: uuid.UUID | None = None,
    data: Mapping[str, Any] | None = None,
) -> AuditEntry:
    entry = new_entry(
        action,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_kind=actor_kind,
        actor_id=actor_id,
        data=data,
    )
    session.add(entry)
    return entry


def new_entry(
    action: str,
    *,
    entity_type: str,
    entity_id: uuid.UUID | str,
    actor_kind: str,
    actor_id: uuid.UUID | None = None,
    data: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """The entry, for a caller that writes it within a statement of its own."""
    return AuditEntry(
        actor_kind=actor_kind,
        actor_id=actor_id,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        data=dict(data or {}),
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
    )


async def list_entries(
    session: AsyncSession,
    *,
    actor_id: uuid.UUID | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[Sequence[AuditEntry], int]:
    """Newest first, filtered by actor, entity, action (exact, or a prefix ending in `.`) and
    time (`since` inclusive, `until` exclusive)."""
    filters: list[ColumnElement[bool]] = []
    if actor_id is not None:
        filters.append(AuditEntry.actor_id == actor_id)
    if entity_type is not None:
        filters.append(AuditEntry.entity_type == entity_type)
    if entity_id is not None:
        filters.append(AuditEntry.entity_id == entity_id)
    if action is not None:
        filters.append(
            AuditEntry.action.startswith(action, autoescape=True)
            if action.endswith(".")
            else AuditEntry.action == action
        )
    if since is not None:
        filters.append(AuditEntry.created_at >= since)
    if until is not None:
        filters.append(AuditEntry.created_at < until)
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*filters))
    entries = (
        await session.scalars(
            select(AuditEntry)
            .where(*filters)
            .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return entries, total or 0
