"""`GET /api/me/points`: the customer's points, tier and ledger."""

from __future__ import annotations

from fastapi import APIRouter

from boxoffice.accounts.deps import CurrentUser
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page
from boxoffice.loyalty import service
from boxoffice.loyalty.schemas import PointsOut

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["loyalty"])


@router.get(
    "/me/points",
    response_model=PointsOut,
    summary="Your points balance, tier and points history (newest first)",
)
async def my_points(user: CurrentUser, session: SessionDep, page: Page) -> PointsOut:
    view, entries, total = await service.statement(
        session, user.id, offset=page.offset, limit=page.limit
    )
    return PointsOut.of(view, entries, page.pagination(total))
