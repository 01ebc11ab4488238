"""Promo codes: admin CRUD (`/api/admin/promocodes`) and the customer's lookup."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from boxoffice.accounts.deps import CurrentUser, require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.core.db import SessionDep
from boxoffice.core.ratelimit import limited
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page
from boxoffice.promotions import service
from boxoffice.promotions.schemas import (
    PromoCheckIn,
    PromoCheckOut,
    PromoCodeCreate,
    PromoCodeList,
    PromoCodeOut,
    PromoCodeUpdate,
    PromoKindIn,
)

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["promotions"])
admin_router = APIRouter(prefix="/api/admin", route_class=RetryingRoute, tags=["admin: promotions"])

Manager = Annotated[User, Depends(require(Permission.PROMOTIONS_MANAGE))]
# Guessing codes: by default 10 lookups a minute per customer, 60 per client address (many
# customers may share one); BOXOFFICE_RATE_LIMIT_PROMO_CHECK(_PER_IP).
_check_limit = Depends(limited("promo-check"))

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    422: {"description": "promo_invalid with `reason`, or validation_error"},
    429: {"description": "rate_limited, with Retry-After"},
}


@router.post(
    "/promocodes/check",
    dependencies=[_check_limit],
    responses=_PROBLEMS,
    summary="Is this promo code good for this showtime, and what would it take off?",
)
async def check_code(session: SessionDep, user: CurrentUser, body: PromoCheckIn) -> PromoCheckOut:
    found = await service.preview(
        session,
        user_id=user.id,
        code=body.code,
        showtime_id=body.showtime_id,
        subtotal=body.subtotal,
    )
    promo = found.promo
    return PromoCheckOut(
        code=promo.code,
        description=promo.description,
        kind=PromoKindIn(promo.kind),
        value=promo.value,
        currency=found.currency,
        subtotal=found.subtotal,
        discount=found.discount,
        min_order=promo.min_order,
        max_discount=promo.max_discount,
        valid_until=promo.valid_until,
    )


@admin_router.post("/promocodes", status_code=201, summary="Create a promo code")
async def create_code(session: SessionDep, user: Manager, body: PromoCodeCreate) -> PromoCodeOut:
    return PromoCodeOut.of(await service.create_code(session, body, user))


@admin_router.get("/promocodes", summary="List promo codes, newest first")
async def list_codes(
    session: SessionDep,
    _: Manager,
    page: Page,
    active: bool | None = None,
    search: Annotated[
        str | None, Query(max_length=100, description="Part of the code or the description")
    ] = None,
) -> PromoCodeList:
    codes, total = await service.list_codes(
        session, active=active, search=search, offset=page.offset, limit=page.limit
    )
    return PromoCodeList(
        promo_codes=[PromoCodeOut.of(c) for c in codes], pagination=page.pagination(total)
    )


@admin_router.get("/promocodes/{promo_id}", summary="One promo code with its uses")
async def get_code(session: SessionDep, _: Manager, promo_id: uuid.UUID) -> PromoCodeOut:
    return PromoCodeOut.of(await service.get_code(session, promo_id))


@admin_router.patch("/promocodes/{promo_id}", summary="Change a promo code")
async def update_code(
    session: SessionDep, user: Manager, promo_id: uuid.UUID, body: PromoCodeUpdate
) -> PromoCodeOut:
    return PromoCodeOut.of(await service.update_code(session, promo_id, body, user))


@admin_router.delete(
    "/promocodes/{promo_id}",
    status_code=204,
    summary="Delete a promo code; one that was ever redeemed is deactivated instead",
)
async def delete_code(session: SessionDep, user: Manager, promo_id: uuid.UUID) -> None:
    await service.delete_code(session, promo_id, user)
