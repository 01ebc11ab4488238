"""Pricing routes: a showtime's seat prices (public) and pricing-rule administration."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from boxoffice.accounts.deps import require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page, reject_empty_patch
from boxoffice.pricing import service
from boxoffice.pricing.schemas import (
    PricingRuleCreate,
    PricingRuleList,
    PricingRuleOut,
    PricingRuleUpdate,
    ShowtimePricesOut,
)

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["pricing"])
admin_router = APIRouter(prefix="/api/admin", route_class=RetryingRoute, tags=["admin: pricing"])

PricingManager = Annotated[User, Depends(require(Permission.PRICING_MANAGE))]


@router.get(
    "/showtimes/{showtime_id}/prices",
    summary="The price of each seat class of a showtime, with the pricing rules applied",
)
async def showtime_prices(session: SessionDep, showtime_id: uuid.UUID) -> ShowtimePricesOut:
    return ShowtimePricesOut.of(await service.showtime_prices(session, showtime_id))


@admin_router.post("/pricing-rules", status_code=201, summary="Add a pricing rule")
async def create_rule(
    session: SessionDep, user: PricingManager, body: PricingRuleCreate
) -> PricingRuleOut:
    rule = await service.create_rule(session, body.model_dump(by_alias=False), actor_id=user.id)
    return PricingRuleOut.of(rule)


@admin_router.get("/pricing-rules", summary="Pricing rules in the order they apply")
async def list_rules(
    session: SessionDep,
    _: PricingManager,
    page: Page,
    active: bool | None = None,
    theater_id: Annotated[uuid.UUID | None, Query(alias="theaterId")] = None,
    movie_id: Annotated[uuid.UUID | None, Query(alias="movieId")] = None,
) -> PricingRuleList:
    rules, total = await service.list_rules(
        session,
        active=active,
        theater_id=theater_id,
        movie_id=movie_id,
        offset=page.offset,
        limit=page.limit,
    )
    return PricingRuleList(
        rules=[PricingRuleOut.of(rule) for rule in rules], pagination=page.pagination(total)
    )


@admin_router.get("/pricing-rules/{rule_id}", summary="One pricing rule")
async def get_rule(session: SessionDep, _: PricingManager, rule_id: uuid.UUID) -> PricingRuleOut:
    return PricingRuleOut.of(await service.get_rule(session, rule_id))


@admin_router.patch("/pricing-rules/{rule_id}", summary="Change a pricing rule")
async def update_rule(
    session: SessionDep, user: PricingManager, rule_id: uuid.UUID, body: PricingRuleUpdate
) -> PricingRuleOut:
    changes = reject_empty_patch(body.changes())
    return PricingRuleOut.of(await service.update_rule(session, rule_id, changes, actor_id=user.id))


@admin_router.delete("/pricing-rules/{rule_id}", status_code=204, summary="Delete a pricing rule")
async def delete_rule(session: SessionDep, user: PricingManager, rule_id: uuid.UUID) -> Response:
    await service.delete_rule(session, rule_id, actor_id=user.id)
    return Response(status_code=204)
