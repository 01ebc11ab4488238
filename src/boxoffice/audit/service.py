"""Writing audit entries: in the caller's session, so an entry commits (or rolls back) with the
change it describes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import structlog
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
    entry = AuditEntry(
        actor_kind=actor_kind,
        actor_id=actor_id,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        data=dict(data or {}),
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
    )
    session.add(entry)
    return entry
