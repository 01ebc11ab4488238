"""`/api/me/notifications`: the caller's in-app notifications."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from boxoffice.accounts.deps import CurrentUser
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import PageParams
from boxoffice.notifications import service
from boxoffice.notifications.schemas import NotificationOut, NotificationPage, ReadAllOut

router = APIRouter(prefix="/api/me", route_class=RetryingRoute, tags=["notifications"])


@router.get("/notifications", response_model=NotificationPage)
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    unread: Annotated[bool, Query(description="Only the unread ones")] = False,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
    page_size: Annotated[
        int | None, Query(alias="pageSize", ge=1, le=100, description="Same as `limit`")
    ] = None,
) -> NotificationPage:
    """Newest first, `?page=&limit=` (or `pageSize`) as every list; `unreadCount` counts all
    unread notifications of the caller, whatever the page."""
    paging = PageParams(page=page, limit=limit or page_size or 20)
    found = await service.list_notifications(
        session, user.id, unread_only=unread, offset=paging.offset, limit=paging.limit
    )
    return NotificationPage(
        notifications=[NotificationOut.of(row) for row in found.notifications],
        unread_count=found.unread,
        pagination=paging.pagination(found.total),
    )


@router.post("/notifications/read-all", response_model=ReadAllOut)
async def read_all(user: CurrentUser, session: SessionDep) -> ReadAllOut:
    marked, unread = await service.mark_all_read(session, user.id)
    return ReadAllOut(marked=marked, unread_count=unread)


@router.post("/notifications/{notification_id}/read", response_model=NotificationOut)
async def read(
    notification_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> NotificationOut:
    """Marks it read; again is no change. 404 for a notification that is not the caller's."""
    return NotificationOut.of(await service.mark_read(session, user.id, notification_id))
