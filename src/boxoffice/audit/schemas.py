"""Audit log answers."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from boxoffice.audit.models import AuditEntry
from boxoffice.core.schema import CamelModel, Pagination


class AuditEntryOut(CamelModel):
    id: uuid.UUID
    created_at: dt.datetime
    actor_kind: str
    actor_id: uuid.UUID | None
    action: str
    entity_type: str
    entity_id: str
    data: dict[str, Any]
    request_id: str | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls.model_validate(entry, from_attributes=True)


class AuditPage(CamelModel):
    entries: list[AuditEntryOut]
    pagination: Pagination
