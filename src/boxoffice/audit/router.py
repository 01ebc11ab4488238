"""`GET /api/admin/audit-log`: who did what to money, roles, prices and schedules."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from boxoffice.accounts.deps import require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.audit import service
from boxoffice.audit.schemas import AuditEntryOut, AuditPage
from boxoffice.core.db import SessionDep
from boxoffice.core.schema import AwareDatetime, Page

router = APIRouter(prefix="/api/admin", tags=["admin: audit"])

AuditReader = Annotated[User, Depends(require(Permission.AUDIT_READ))]


@router.get("/audit-log", response_model=AuditPage, summary="The audit log, newest first")
async def audit_log(
    _: AuditReader,
    session: SessionDep,
    page: Page,
    actor_id: Annotated[uuid.UUID | None, Query(alias="actorId")] = None,
    entity_type: Annotated[str | None, Query(alias="entityType", max_length=32)] = None,
    entity_id: Annotated[str | None, Query(alias="entityId", max_length=64)] = None,
    action: Annotated[
        str | None,
        Query(max_length=64, description="exact, or a prefix ending in '.' (e.g. `payment.`)"),
    ] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
) -> AuditPage:
    entries, total = await service.list_entries(
        session,
        actor_id=actor_id,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
        since=since,
        until=until,
        offset=page.offset,
        limit=page.limit,
    )
    return AuditPage(
        entries=[AuditEntryOut.of(e) for e in entries], pagination=page.pagination(total)
    )
