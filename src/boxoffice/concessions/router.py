"""Snack routes: the public menu, preorders, the pickup counter and admin CRUD."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from boxoffice.accounts.deps import CurrentUser, require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.accounts.service import check_may_book
from boxoffice.booking.preorders import create_preorder
from boxoffice.concessions import service
from boxoffice.concessions.schemas import (
    PickupIn,
    PickupLine,
    PickupOut,
    PreorderCreatedOut,
    PreorderIn,
    SnackAdminList,
    SnackAdminOut,
    SnackCreate,
    SnackMenu,
    SnackOut,
    SnackUpdate,
)
from boxoffice.core import idempotency
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page
from boxoffice.payments.service import PaymentContext

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["concessions"])
admin_router = APIRouter(
    prefix="/api/admin", route_class=RetryingRoute, tags=["admin: concessions"]
)

Manager = Annotated[User, Depends(require(Permission.CONCESSIONS_MANAGE))]
Cashier = Annotated[User, Depends(require(Permission.CONCESSIONS_PICKUP))]
Category = Annotated[str | None, Query(max_length=32, description="One category, case-insensitive")]


async def _customer_who_may_book(request: Request, user: CurrentUser) -> User:
    check_may_book(user, request.app.state.settings)
    return user


Booker = Annotated[User, Depends(_customer_who_may_book)]


@router.get("/snacks", summary="The snack menu, by category and name")
async def list_menu(session: SessionDep, category: Category = None) -> SnackMenu:
    snacks = await service.menu(session, category=category)
    return SnackMenu(snacks=[SnackOut.of(s) for s in snacks])


@router.post(
    "/concessions/preorders",
    status_code=status.HTTP_201_CREATED,
    response_model=PreorderCreatedOut,
    summary="Order snacks for a showtime without seats; pay, then collect with the pickup code",
    responses={
        404: {"description": "not_found (showtime) or snack_not_found"},
        409: {"description": "showtime_closed, snack_unavailable or out_of_stock"},
        422: {"description": "validation_error or invalid_snack_order"},
    },
)
async def preorder(
    body: PreorderIn,
    request: Request,
    user: Booker,
    session: SessionDep,
    idempotency_key: idempotency.IdempotencyKey = None,
) -> Any:
    async def run() -> PreorderCreatedOut:
        done = await create_preorder(
            session,
            request.app.state.settings,
            PaymentContext.of(request.app),
            user,
            body.showtime_id,
            [service.SnackOrder(item.snack_id, item.quantity) for item in body.snacks],
        )
        return PreorderCreatedOut.of(done.booking, done.snacks, done.payment)

    return await idempotency.run_once(
        session,
        user_id=user.id,
        key=idempotency_key,
        scope="POST /api/concessions/preorders",
        body=body,
        run=run,
        status_code=status.HTTP_201_CREATED,
    )


@router.post(
    "/concessions/pickup",
    summary="Hand out a paid order's snacks (once)",
    responses={
        404: {"description": "pickup_not_found"},
        409: {"description": "already_collected (with collectedAt) or not_collectable"},
    },
)
async def pickup(body: PickupIn, _: Cashier, session: SessionDep) -> PickupOut:
    done = await service.collect(session, body.pickup_code)
    assert done.booking.snacks_collected_at is not None
    return PickupOut(
        booking_id=done.booking.id,
        reference=done.booking.reference,
        showtime_id=done.booking.showtime_id,
        snacks=[PickupLine(name=line.name, quantity=line.quantity) for line in done.lines],
        collected_at=done.booking.snacks_collected_at,
    )


@admin_router.post("/snacks", status_code=status.HTTP_201_CREATED, summary="Add a snack")
async def create_snack(session: SessionDep, body: SnackCreate, admin: Manager) -> SnackAdminOut:
    return SnackAdminOut.of(await service.create_snack(session, body, admin.id))


@admin_router.get("/snacks", summary="All snacks with their stock")
async def admin_list_snacks(
    session: SessionDep, page: Page, _: Manager, category: Category = None
) -> SnackAdminList:
    snacks, total = await service.list_snacks(
        session, category=category, offset=page.offset, limit=page.limit
    )
    return SnackAdminList(
        snacks=[SnackAdminOut.of(s) for s in snacks], pagination=page.pagination(total)
    )


@admin_router.get("/snacks/{snack_id}", summary="One snack with its stock")
async def admin_get_snack(session: SessionDep, snack_id: uuid.UUID, _: Manager) -> SnackAdminOut:
    return SnackAdminOut.of(await service.get_snack(session, snack_id))


@admin_router.patch("/snacks/{snack_id}", summary="Change a snack (price, availability, stock…)")
async def update_snack(
    session: SessionDep, snack_id: uuid.UUID, body: SnackUpdate, admin: Manager
) -> SnackAdminOut:
    return SnackAdminOut.of(await service.update_snack(session, snack_id, body, admin.id))


@admin_router.delete(
    "/snacks/{snack_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a snack never ordered (409 snack_in_use otherwise: set available=false)",
)
async def delete_snack(session: SessionDep, snack_id: uuid.UUID, admin: Manager) -> None:
    await service.delete_snack(session, snack_id, admin.id)
