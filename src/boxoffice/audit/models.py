"""The audit log: who did what to money, roles, prices, schedules and contracts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, UTCDateTime


class ActorKind:
    CUSTOMER = "customer"
    STAFF = "staff"
    PROVIDER = "provider"  # a payment provider's event (webhook) or answer (reconciliation)
    SYSTEM = "system"  # a job: expiry, reconciliation


class AuditEntry(IdMixin, Base):
    """Append-only. `actor_id` is a plain id, not a foreign key: entries outlive accounts."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity_type", "entity_id"),
        Index("ix_audit_log_created", "created_at"),
        Index("ix_audit_log_actor", "actor_id"),
    )

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    request_id: Mapped[str | None] = mapped_column(String(64))
