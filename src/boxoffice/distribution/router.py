"""Distributors and rental contracts (`/api/admin/distributors`, `/api/admin/contracts`), their
settlements and the payment history (`/api/admin/settlements/{id}/pay`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from boxoffice.accounts.deps import require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.core.db import SessionDep
from boxoffice.core.errors import Unprocessable
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page
from boxoffice.distribution import service
from boxoffice.distribution.models import SettlementStatus
from boxoffice.distribution.schemas import (
    ContractCreate,
    ContractList,
    ContractOut,
    ContractUpdate,
    DistributorCreate,
    DistributorList,
    DistributorOut,
    DistributorUpdate,
    SettlementEntryOut,
    SettlementList,
    SettlementWeekOut,
)

admin_router = APIRouter(
    prefix="/api/admin", route_class=RetryingRoute, tags=["admin: distribution"]
)

Manager = Annotated[User, Depends(require(Permission.DISTRIBUTION_MANAGE))]
From = Annotated[dt.date | None, Query(alias="from", description="First week start (inclusive)")]
To = Annotated[dt.date | None, Query(alias="to", description="Last week start (inclusive)")]


def _period(date_from: dt.date | None, date_to: dt.date | None) -> None:
    if date_from and date_to and date_to < date_from:
        raise Unprocessable("`to` is before `from`.", code="invalid_period")


def _settlements(rows: Sequence[service.SettlementRow]) -> SettlementList:
    zero = Decimal("0.00")
    return SettlementList(
        items=[SettlementWeekOut.model_validate(row) for row in rows],
        total_due=sum((row.amount_due for row in rows), zero),
        total_paid=sum(
            (row.amount_due for row in rows if row.status == SettlementStatus.PAID), zero
        ),
    )


# Distributors


@admin_router.post("/distributors", status_code=201, summary="Create a distributor")
async def create_distributor(
    session: SessionDep, user: Manager, body: DistributorCreate
) -> DistributorOut:
    return DistributorOut.model_validate(await service.create_distributor(session, body, user.id))


@admin_router.get("/distributors", summary="List distributors by name")
async def list_distributors(session: SessionDep, _: Manager, page: Page) -> DistributorList:
    rows, total = await service.list_distributors(session, page.offset, page.limit)
    return DistributorList(
        distributors=[DistributorOut.model_validate(row) for row in rows],
        pagination=page.pagination(total),
    )


@admin_router.get("/distributors/{distributor_id}", summary="One distributor")
async def get_distributor(
    session: SessionDep, _: Manager, distributor_id: uuid.UUID
) -> DistributorOut:
    return DistributorOut.model_validate(await service.get_distributor(session, distributor_id))


@admin_router.patch("/distributors/{distributor_id}", summary="Change a distributor")
async def update_distributor(
    session: SessionDep, user: Manager, distributor_id: uuid.UUID, body: DistributorUpdate
) -> DistributorOut:
    return DistributorOut.model_validate(
        await service.update_distributor(session, distributor_id, body, user.id)
    )


@admin_router.delete(
    "/distributors/{distributor_id}",
    status_code=204,
    summary="Delete a distributor without contracts",
)
async def delete_distributor(session: SessionDep, user: Manager, distributor_id: uuid.UUID) -> None:
    await service.delete_distributor(session, distributor_id, user.id)


@admin_router.get(
    "/distributors/{distributor_id}/settlements",
    summary="The distributor's settlement report: every contract-week, what is due and paid",
)
async def distributor_settlements(
    session: SessionDep,
    _: Manager,
    distributor_id: uuid.UUID,
    date_from: From = None,
    date_to: To = None,
) -> SettlementList:
    _period(date_from, date_to)
    return _settlements(
        await service.distributor_settlements(session, distributor_id, date_from, date_to)
    )


# Contracts


@admin_router.post("/contracts", status_code=201, summary="Create a rental contract")
async def create_contract(session: SessionDep, user: Manager, body: ContractCreate) -> ContractOut:
    return ContractOut.model_validate(await service.create_contract(session, body, user.id))


@admin_router.get("/contracts", summary="List rental contracts")
async def list_contracts(
    session: SessionDep,
    _: Manager,
    page: Page,
    distributor_id: Annotated[uuid.UUID | None, Query(alias="distributorId")] = None,
    movie_id: Annotated[uuid.UUID | None, Query(alias="movieId")] = None,
) -> ContractList:
    rows, total = await service.list_contracts(
        session, page.offset, page.limit, distributor_id=distributor_id, movie_id=movie_id
    )
    return ContractList(
        contracts=[ContractOut.model_validate(row) for row in rows],
        pagination=page.pagination(total),
    )


@admin_router.get("/contracts/{contract_id}", summary="One rental contract")
async def get_contract(session: SessionDep, _: Manager, contract_id: uuid.UUID) -> ContractOut:
    return ContractOut.model_validate(await service.get_contract(session, contract_id))


@admin_router.patch("/contracts/{contract_id}", summary="Change a rental contract")
async def update_contract(
    session: SessionDep, user: Manager, contract_id: uuid.UUID, body: ContractUpdate
) -> ContractOut:
    return ContractOut.model_validate(
        await service.update_contract(session, contract_id, body, user.id)
    )


@admin_router.delete(
    "/contracts/{contract_id}",
    status_code=204,
    summary="Delete a contract with no recorded settlements",
)
async def delete_contract(session: SessionDep, user: Manager, contract_id: uuid.UUID) -> None:
    await service.delete_contract(session, contract_id, user.id)


@admin_router.get(
    "/contracts/{contract_id}/settlements",
    summary="The contract's weeks, settled (weeks starting between from and to)",
)
async def contract_settlements(
    session: SessionDep,
    _: Manager,
    contract_id: uuid.UUID,
    date_from: From = None,
    date_to: To = None,
) -> SettlementList:
    _period(date_from, date_to)
    return _settlements(
        await service.contract_settlements(session, contract_id, date_from, date_to)
    )


@admin_router.post(
    "/settlements/{entry_id}/pay",
    summary="Mark a recorded settlement paid (409 when it already is)",
)
async def pay_settlement(
    session: SessionDep, user: Manager, entry_id: uuid.UUID
) -> SettlementEntryOut:
    return SettlementEntryOut.model_validate(await service.pay_entry(session, entry_id, user.id))
