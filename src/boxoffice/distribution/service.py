"""Distributors, contracts, the scheduling rule, settlements and their payment history."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.core.schema import reject_empty_patch
from boxoffice.distribution import settlement
from boxoffice.distribution.exceptions import (
    AlreadyPaid,
    ContractInUse,
    ContractNotFound,
    DistributorInUse,
    DistributorNameTaken,
    DistributorNotFound,
    InvalidContract,
    NoValidContract,
    SettlementEntryNotFound,
)
from boxoffice.distribution.models import Contract, Distributor, SettlementEntry, SettlementStatus
from boxoffice.distribution.schemas import (
    ContractCreate,
    ContractUpdate,
    DistributorCreate,
    DistributorUpdate,
)
from boxoffice.payments.models import Refund
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import Theater

# Bookings whose money was taken (a refunded one too: its refunds are subtracted).
PAID_STATUSES = (BookingStatus.CONFIRMED, BookingStatus.USED, BookingStatus.REFUNDED)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"{value:.2f}"
        if isinstance(value, uuid.UUID | dt.date):
            return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
        if isinstance(value, list):
            return [one(item) for item in value]
        return value

    return {key: one(value) for key, value in values.items()}


# ---------------------------------------------------------------------------------------------
# Distributors


async def get_distributor(session: AsyncSession, distributor_id: uuid.UUID) -> Distributor:
    distributor = await session.get(Distributor, distributor_id)
    if distributor is None:
        raise DistributorNotFound(f"No distributor with id {distributor_id}.")
    return distributor


async def _check_name_free(
    session: AsyncSession, name: str, except_id: uuid.UUID | None = None
) -> None:
    taken = await session.scalar(
        select(Distributor.id).where(Distributor.name == name, Distributor.id != except_id)
        if except_id
        else select(Distributor.id).where(Distributor.name == name)
    )
    if taken is not None:
        raise DistributorNameTaken(f"A distributor named {name!r} exists.")


async def create_distributor(
    session: AsyncSession, data: DistributorCreate, actor_id: uuid.UUID | None
) -> Distributor:
    values = data.model_dump(by_alias=False)
    await _check_name_free(session, data.name)
    distributor = Distributor(**values)
    session.add(distributor)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:  # a concurrent create of the same name
        raise DistributorNameTaken(f"A distributor named {data.name!r} exists.") from None
    _audit(session, "distributor.created", "distributor", distributor.id, actor_id, values)
    return distributor


async def list_distributors(
    session: AsyncSession, offset: int, limit: int
) -> tuple[Sequence[Distributor], int]:
    total = await session.scalar(select(func.count()).select_from(Distributor))
    rows = (
        await session.scalars(
            select(Distributor)
            .order_by(Distributor.name, Distributor.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return rows, total or 0


async def update_distributor(
    session: AsyncSession,
    distributor_id: uuid.UUID,
    data: DistributorUpdate,
    actor_id: uuid.UUID | None,
) -> Distributor:
    changes = reject_empty_patch(data.model_dump(by_alias=False, exclude_unset=True))
    distributor = await get_distributor(session, distributor_id)
    if "name" in changes:
        await _check_name_free(session, changes["name"], distributor.id)
    for name, value in changes.items():
        setattr(distributor, name, value)
    await session.flush()
    _audit(session, "distributor.updated", "distributor", distributor.id, actor_id, changes)
    return distributor


async def delete_distributor(
    session: AsyncSession, distributor_id: uuid.UUID, actor_id: uuid.UUID | None
) -> None:
    distributor = await get_distributor(session, distributor_id)
    contracts = await session.scalar(
        select(func.count()).select_from(Contract).where(Contract.distributor_id == distributor.id)
    )
    if contracts:
        raise DistributorInUse("The distributor has contracts: delete them first.")
    await session.delete(distributor)
    await session.flush()
    _audit(
        session,
        "distributor.deleted",
        "distributor",
        distributor_id,
        actor_id,
        {"name": distributor.name},
    )


def _audit(
    session: AsyncSession,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    data: dict[str, Any],
) -> None:
    audit.record(
        session,
        action,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_kind=ActorKind.STAFF if actor_id else ActorKind.SYSTEM,
        actor_id=actor_id,
        data=_plain(data),
    )


# ---------------------------------------------------------------------------------------------
# Contracts


async def get_contract(session: AsyncSession, contract_id: uuid.UUID) -> Contract:
    contract = await session.get(Contract, contract_id)
    if contract is None:
        raise ContractNotFound(f"No contract with id {contract_id}.")
    return contract


def _check_dates(start: dt.date, end: dt.date) -> None:
    if end < start:
        raise InvalidContract("The end date is before the start date.", field="endDate")


def _stored_terms(terms: Sequence[Decimal]) -> list[str]:
    return [f"{percent:.2f}" for percent in terms]


def terms_of(contract: Contract) -> list[Decimal]:
    return [Decimal(str(percent)) for percent in contract.terms]


async def create_contract(
    session: AsyncSession, data: ContractCreate, actor_id: uuid.UUID | None
) -> Contract:
    _check_dates(data.start_date, data.end_date)
    await get_distributor(session, data.distributor_id)
    if await session.get(Movie, data.movie_id) is None:
        raise InvalidContract(f"No movie with id {data.movie_id}.", code="movie_not_found")
    values = data.model_dump(by_alias=False)
    values["terms"] = _stored_terms(data.terms)
    contract = Contract(**values)
    session.add(contract)
    await session.flush()
    _audit(session, "contract.created", "contract", contract.id, actor_id, values)
    return contract


async def list_contracts(
    session: AsyncSession,
    offset: int,
    limit: int,
    *,
    distributor_id: uuid.UUID | None = None,
    movie_id: uuid.UUID | None = None,
) -> tuple[Sequence[Contract], int]:
    filters: list[ColumnElement[bool]] = []
    if distributor_id is not None:
        filters.append(Contract.distributor_id == distributor_id)
    if movie_id is not None:
        filters.append(Contract.movie_id == movie_id)
    total = await session.scalar(select(func.count()).select_from(Contract).where(*filters))
    rows = (
        await session.scalars(
            select(Contract)
            .where(*filters)
            .order_by(Contract.start_date, Contract.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return rows, total or 0


async def update_contract(
    session: AsyncSession, contract_id: uuid.UUID, data: ContractUpdate, actor_id: uuid.UUID | None
) -> Contract:
    changes = reject_empty_patch(data.model_dump(by_alias=False, exclude_unset=True))
    contract = await get_contract(session, contract_id)
    _check_dates(
        changes.get("start_date", contract.start_date), changes.get("end_date", contract.end_date)
    )
    if "distributor_id" in changes:
        await get_distributor(session, changes["distributor_id"])
    if "terms" in changes:
        changes["terms"] = _stored_terms(changes["terms"])
    for name, value in changes.items():
        setattr(contract, name, value)
    await session.flush()
    _audit(session, "contract.updated", "contract", contract.id, actor_id, changes)
    return contract


async def delete_contract(
    session: AsyncSession, contract_id: uuid.UUID, actor_id: uuid.UUID | None
) -> None:
    contract = await get_contract(session, contract_id)
    recorded = await session.scalar(
        select(func.count())
        .select_from(SettlementEntry)
        .where(SettlementEntry.contract_id == contract.id)
    )
    if recorded:
        raise ContractInUse("Settlements were recorded under this contract: deactivate it.")
    await session.delete(contract)
    await session.flush()
    _audit(session, "contract.deleted", "contract", contract_id, actor_id, {})


# ---------------------------------------------------------------------------------------------
# The scheduling rule


async def check_showtime_contract(
    session: AsyncSession,
    *,
    movie_id: uuid.UUID,
    theater_timezone: str,
    start_time: dt.datetime,
    format: str,
    currency: str,
    required: bool,
) -> None:
    """A movie with a contract (or any movie, when `required`) is scheduled only on a day and
    in a format an active contract covers (the show's local date in the theater's timezone),
    in the theater's currency (a contract settles the shows sold in its currency)."""
    contracts = (await session.scalars(select(Contract).where(Contract.movie_id == movie_id))).all()
    if not contracts and not required:
        return
    day = start_time.astimezone(ZoneInfo(theater_timezone)).date()
    for contract in contracts:
        if (
            contract.active
            and contract.start_date <= day <= contract.end_date
            and (contract.format is None or contract.format == format)
            and contract.currency == currency
        ):
            return
    raise NoValidContract(
        f"No active rental contract covers this movie in {format} on {day.isoformat()} "
        f"in {currency}.",
        date=day.isoformat(),
        format=format,
        currency=currency,
    )


# ---------------------------------------------------------------------------------------------
# Settlements


@dataclass(frozen=True)
class SettlementRow:
    """One contract-week, settled (the reports' row)."""

    distributor_id: uuid.UUID
    distributor_name: str
    contract_id: uuid.UUID
    movie_title: str
    format: str | None
    week_start: dt.date
    week_end: dt.date
    currency: str
    gross: Decimal
    net: Decimal
    share_percent: Decimal
    distributor_share: Decimal
    guarantee_topup: Decimal
    amount_due: Decimal
    status: str  # open (not recorded yet) | due | paid
    week_number: int = 0
    entry_id: uuid.UUID | None = None
    paid_at: dt.datetime | None = None


def _day_start_utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


async def _movements(
    session: AsyncSession, contract: Contract, weeks: Sequence[dt.date]
) -> list[settlement.Movement]:
    """The contract's ticket money (+ bookings, - refunds), each in the week it counts in."""
    weekday = contract.week_start_weekday
    # Local dates are at most 14 hours off UTC: a day of slack on either side.
    since = _day_start_utc(weeks[0] - dt.timedelta(days=1))
    until = _day_start_utc(weeks[-1] + settlement.WEEK + dt.timedelta(days=1))
    stmt = (
        select(
            Booking.id,
            Booking.final_amount,
            Booking.total_amount,
            Booking.snacks_amount,
            Showtime.start_time,
            Theater.timezone,
            Theater.vat_rate,
        )
        .join(Showtime, Showtime.id == Booking.showtime_id)
        .join(Theater, Theater.id == Showtime.theater_id)
        .where(
            Showtime.movie_id == contract.movie_id,
            Showtime.start_time >= since,
            Showtime.start_time < until,
            Booking.status.in_(PAID_STATUSES),
            Booking.confirmed_at.is_not(None),
            Showtime.currency == contract.currency,
        )
    )
    if contract.format is not None:
        stmt = stmt.where(Showtime.format == contract.format)
    in_weeks = set(weeks)
    bookings: dict[uuid.UUID, tuple[dt.date, Decimal, Decimal, ZoneInfo]] = {}
    movements: list[settlement.Movement] = []
    for booking_id, final, total, snacks, start, timezone, vat_rate in await session.execute(stmt):
        zone = ZoneInfo(timezone)
        week = settlement.week_start_for(start.astimezone(zone).date(), weekday)
        if week not in in_weeks:
            continue
        ratio = settlement.ticket_ratio(total, snacks)
        bookings[booking_id] = (week, ratio, vat_rate, zone)
        movements.append(settlement.Movement(week, final * ratio, vat_rate))
    if not bookings:
        return movements
    refunds = await session.execute(
        select(Refund.booking_id, Refund.amount, Refund.created_at).where(
            Refund.booking_id.in_(list(bookings)), Refund.status == "succeeded"
        )
    )
    for booking_id, amount, created_at in refunds:
        week, ratio, vat_rate, zone = bookings[booking_id]
        counted = settlement.attribute_refund(
            week, created_at.astimezone(zone).date(), weekday, weeks
        )
        movements.append(settlement.Movement(counted, -amount * ratio, vat_rate))
    return movements


async def settle_contract(
    session: AsyncSession, contract: Contract
) -> list[settlement.WeekFigures]:
    """Every week of the contract, settled from the bookings and refunds so far."""
    weeks = settlement.contract_weeks(
        contract.start_date, contract.end_date, contract.week_start_weekday
    )
    return settlement.settle(
        weeks,
        terms_of(contract),
        await _movements(session, contract, weeks),
        house_allowance=contract.house_allowance,
        minimum_guarantee=contract.minimum_guarantee,
    )


async def _rows(
    session: AsyncSession,
    contracts: Sequence[Contract],
    date_from: dt.date | None,
    date_to: dt.date | None,
) -> list[SettlementRow]:
    if not contracts:
        return []
    ids = [contract.id for contract in contracts]
    entries = {
        (entry.contract_id, entry.week_start): entry
        for entry in await session.scalars(
            select(SettlementEntry).where(SettlementEntry.contract_id.in_(ids))
        )
    }
    names = dict(
        (
            await session.execute(
                select(Distributor.id, Distributor.name).where(
                    Distributor.id.in_({contract.distributor_id for contract in contracts})
                )
            )
        ).all()
    )
    titles = dict(
        (
            await session.execute(
                select(Movie.id, Movie.title).where(
                    Movie.id.in_({contract.movie_id for contract in contracts})
                )
            )
        ).all()
    )
    rows: list[SettlementRow] = []
    for contract in contracts:
        for week in await settle_contract(session, contract):
            if (date_from is not None and week.week_start < date_from) or (
                date_to is not None and week.week_start > date_to
            ):
                continue
            entry = entries.get((contract.id, week.week_start))
            rows.append(
                SettlementRow(
                    distributor_id=contract.distributor_id,
                    distributor_name=names[contract.distributor_id],
                    contract_id=contract.id,
                    movie_title=titles[contract.movie_id],
                    format=contract.format,
                    week_start=week.week_start,
                    week_end=week.week_end,
                    currency=contract.currency,
                    gross=week.gross,
                    net=week.net,
                    share_percent=week.share_percent,
                    distributor_share=week.distributor_share,
                    guarantee_topup=week.guarantee_topup,
                    amount_due=week.amount_due,
                    status=entry.status if entry else "open",
                    week_number=week.number,
                    entry_id=entry.id if entry else None,
                    paid_at=entry.paid_at if entry else None,
                )
            )
    rows.sort(
        key=lambda row: (
            row.distributor_name,
            row.movie_title,
            str(row.contract_id),
            row.week_start,
        )
    )
    return rows


async def settlement_report_rows(
    session: AsyncSession, date_from: dt.date, date_to: dt.date
) -> list[SettlementRow]:
    """Every contract-week whose week starts between `date_from` and `date_to` (inclusive),
    settled, by distributor, movie and week."""
    contracts = (
        await session.scalars(
            select(Contract).where(
                Contract.start_date <= date_to + settlement.WEEK,
                Contract.end_date >= date_from - settlement.WEEK,
            )
        )
    ).all()
    return await _rows(session, contracts, date_from, date_to)


async def contract_settlements(
    session: AsyncSession,
    contract_id: uuid.UUID,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> list[SettlementRow]:
    contract = await get_contract(session, contract_id)
    return await _rows(session, [contract], date_from, date_to)


async def distributor_settlements(
    session: AsyncSession,
    distributor_id: uuid.UUID,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> list[SettlementRow]:
    distributor = await get_distributor(session, distributor_id)
    contracts = (
        await session.scalars(select(Contract).where(Contract.distributor_id == distributor.id))
    ).all()
    return await _rows(session, contracts, date_from, date_to)


# ---------------------------------------------------------------------------------------------
# Payment history


def week_is_complete(week_start: dt.date, now: dt.datetime) -> bool:
    """A week is recorded a day after its last day (UTC), so it is over in every timezone."""
    return now.date() >= week_start + settlement.WEEK + dt.timedelta(days=1)


async def record_completed_weeks(session: AsyncSession, now: dt.datetime | None = None) -> int:
    """Record what is due for every completed contract-week not recorded yet; returns how many
    were recorded. Safe to run twice at once: the (contract, week) key admits one row."""
    now = now or utcnow()
    contracts = (
        await session.scalars(select(Contract).where(Contract.start_date <= now.date()))
    ).all()
    if not contracts:
        return 0
    recorded = {
        (contract_id, week_start)
        for contract_id, week_start in await session.execute(
            select(SettlementEntry.contract_id, SettlementEntry.week_start).where(
                SettlementEntry.contract_id.in_([contract.id for contract in contracts])
            )
        )
    }
    count = 0
    for contract in contracts:
        weeks = [
            week
            for week in await settle_contract(session, contract)
            if week_is_complete(week.week_start, now)
            and (contract.id, week.week_start) not in recorded
        ]
        for week in weeks:
            entry = SettlementEntry(
                contract_id=contract.id,
                week_start=week.week_start,
                amount_due=week.amount_due,
                currency=contract.currency,
                status=SettlementStatus.DUE,
                created_at=now,
            )
            try:
                async with session.begin_nested():
                    session.add(entry)
                    await session.flush()
            except IntegrityError:  # another run recorded it first
                continue
            _audit(
                session,
                "settlement.recorded",
                "settlement_entry",
                entry.id,
                None,
                {
                    "contract_id": contract.id,
                    "week_start": week.week_start,
                    "amount_due": week.amount_due,
                },
            )
            count += 1
    return count


async def list_entries(session: AsyncSession, contract_id: uuid.UUID) -> Sequence[SettlementEntry]:
    return (
        await session.scalars(
            select(SettlementEntry)
            .where(SettlementEntry.contract_id == contract_id)
            .order_by(SettlementEntry.week_start)
        )
    ).all()


async def pay_entry(
    session: AsyncSession,
    entry_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    now: dt.datetime | None = None,
) -> SettlementEntry:
    """Mark a recorded entry paid, once: the conditional update lets one of two racing
    requests through, the other gets 409."""
    now = now or utcnow()
    result = await session.execute(
        update(SettlementEntry)
        .where(SettlementEntry.id == entry_id, SettlementEntry.status == SettlementStatus.DUE)
        .values(status=SettlementStatus.PAID, paid_at=now)
        .execution_options(synchronize_session=False)
    )
    entry = await session.get(SettlementEntry, entry_id, populate_existing=True)
    if entry is None:
        raise SettlementEntryNotFound(f"No settlement entry with id {entry_id}.")
    if not getattr(result, "rowcount", 0):
        raise AlreadyPaid("This settlement was already paid.", paid_at=str(entry.paid_at))
    _audit(
        session,
        "settlement.paid",
        "settlement_entry",
        entry.id,
        actor_id,
        {
            "contract_id": entry.contract_id,
            "week_start": entry.week_start,
            "amount": entry.amount_due,
        },
    )
    return entry
