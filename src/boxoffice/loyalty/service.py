"""Loyalty points: earned on paid bookings, spent at checkout, tiers by points earned.

Rules: 1 point is worth 0.01 of the booking's currency. 10% of what a booking paid (final
amount minus refunds) accrues, rounded down, once per booking: when a ticket is checked in or
when the show is over (the periodic job). A refund after that takes back 10% of the refunded
amount, as far as the balance allows. Tiers go by points earned (earn minus reverse) in the
last 12 months: bronze < 2,000 <= silver < 5,000 <= gold; silver takes 5% off tickets, gold 10%.

The ledger (`points_entries`) is append-only and the account's `balance` is always the sum of
the user's entries. Spending is one conditional UPDATE (`balance >= n`), so concurrent
redemptions can never take the balance below zero. Every other change of a balance first locks
the account row; whoever also locks a booking takes the booking first (as check-in and refunds
do), so the two orders never cross. The (booking, kind, ref) unique constraint turns a repeated
event into a no-op, or a loud conflict if the locks were ever bypassed.

Callers: checkout (`redeem`, `tier_discount_rate`), expiry and unpaid cancellation
(`restore`), check-in (`earn_for_booking`), refunds (`reverse_for_refund`), the periodic job
(`earn_for_past_shows`) and `GET /api/me` (`summary`). Nothing here imports booking's services,
only its tables; the tier-upgrade message goes through a notifier registered at start-up.
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, Result, bindparam, exists, func, literal, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database, Money, constant
from boxoffice.loyalty.exceptions import (
    BookingNotFound,
    InsufficientPoints,
    InvalidPoints,
    PointsAlreadyRedeemed,
)
from boxoffice.loyalty.models import EntryKind, LoyaltyAccount, PointsEntry, Tier
from boxoffice.scheduling.models import Showtime

log = structlog.get_logger(__name__)

POINT_VALUE = Decimal("0.01")  # of the booking's currency
EARN_RATE = Decimal("0.10")
# The smallest payment that earns a point; smaller ones earn nothing and record nothing.
MIN_EARNING_PAYMENT = POINT_VALUE / EARN_RATE
CENT = Decimal("0.01")

TIERS = (Tier.BRONZE, Tier.SILVER, Tier.GOLD)  # lowest first
TIER_THRESHOLDS = {Tier.BRONZE: 0, Tier.SILVER: 2_000, Tier.GOLD: 5_000}
TIER_DISCOUNTS = {
    Tier.BRONZE: Decimal("0"),
    Tier.SILVER: Decimal("0.05"),
    Tier.GOLD: Decimal("0.10"),
}
# Points that count towards a tier.
EARNED_KINDS = (EntryKind.EARN, EntryKind.REVERSE)
PAID = (BookingStatus.CONFIRMED, BookingStatus.USED)
# Bookings undone: their redeemed points come back (a refund in full returns them with the money).
UNDONE = (BookingStatus.EXPIRED, BookingStatus.CANCELLED, BookingStatus.REFUNDED)
SHOWTIME_CANCELLED = "cancelled"


# ---------------------------------------------------------------------------------------------
# Arithmetic


def points_value(points: int) -> Decimal:
    """What `points` are worth in the booking's currency."""
    return (Decimal(points) * POINT_VALUE).quantize(CENT)


def points_for_payment(amount: Decimal) -> int:
    """Points earned by paying `amount` (10%, rounded down); nothing for nothing."""
    if amount <= 0:
        return 0
    return int((amount * EARN_RATE / POINT_VALUE).to_integral_value(rounding=ROUND_FLOOR))


def tier_for(earned: int) -> str:
    tier = Tier.BRONZE
    for candidate in TIERS:
        if earned >= TIER_THRESHOLDS[candidate]:
            tier = candidate
    return tier


def tier_discount_rate(tier: str) -> Decimal:
    """The share taken off tickets for the tier: silver 0.05, gold 0.10, else 0."""
    return TIER_DISCOUNTS.get(tier, Decimal("0"))


def _rank(tier: str) -> int:
    return TIERS.index(tier) if tier in TIERS else 0


def year_before(now: dt.datetime) -> dt.datetime:
    """The start of the 12-month window ending at `now` (29 February falls back to the 28th)."""
    try:
        return now.replace(year=now.year - 1)
    except ValueError:
        return now.replace(year=now.year - 1, day=28)


# ---------------------------------------------------------------------------------------------
# The tier-upgrade notifier

# Called inside the transaction that upgraded the tier; it sends its messages after commit.
# notifications registers one at start-up (`notifications.jobs.install`: in-app and email).
TierNotifier = Callable[[AsyncSession, uuid.UUID, str, str], Awaitable[None]]
# One per app: several apps (and mailers) may live in one process, each with its own database.
_notifiers: weakref.WeakKeyDictionary[Database, TierNotifier] = weakref.WeakKeyDictionary()


def set_tier_notifier(database: Database, notifier: TierNotifier | None) -> None:
    """Register (at start-up) what a tier upgrade in this database sends."""
    if notifier is None:
        _notifiers.pop(database, None)
    else:
        _notifiers[database] = notifier


def _notifier_for(session: AsyncSession) -> TierNotifier | None:
    database = session.info.get("database")
    return _notifiers.get(database) if database is not None else None


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class AccountView:
    balance: int
    tier: str
    earned_last_12_months: int
    next_tier: str | None  # None at the top
    points_to_next_tier: int | None


def _view(balance: int, earned: int) -> AccountView:
    tier = tier_for(earned)
    rank = _rank(tier)
    if rank + 1 < len(TIERS):
        upcoming = TIERS[rank + 1]
        return AccountView(
            balance, tier, earned, upcoming, max(TIER_THRESHOLDS[upcoming] - earned, 0)
        )
    return AccountView(balance, tier, earned, None, None)


# Points earned by `the_user` since `since`, and with the balance the customer's standing: built
# once with bound parameters (building them cost ~0.25 ms of CPU per booking). Public for a
# statement that reads the standing along (the booking's read of its hold): bind
# `standing_params`, then `account_from` the two values.
EARNED_SINCE = (
    select(func.coalesce(func.sum(PointsEntry.points), 0))
    .where(
        PointsEntry.user_id == bindparam("the_user"),
        # Code constants written into the SQL: it can then go on the driver (SessionStatement,
        # which sends no bound list).
        PointsEntry.kind.in_([constant(kind) for kind in EARNED_KINDS]),
        PointsEntry.created_at >= bindparam("since"),
    )
    .scalar_subquery()
)
BALANCE = (
    select(LoyaltyAccount.balance)
    .where(LoyaltyAccount.user_id == bindparam("the_user"))
    .scalar_subquery()
)
_STANDING = select(BALANCE, EARNED_SINCE)


def standing_params(user_id: uuid.UUID) -> dict[str, Any]:
    return {"the_user": user_id, "since": year_before(utcnow())}


def account_from(balance: int | None, earned: int | None) -> AccountView:
    """The account from its `BALANCE` and `EARNED_SINCE` (None: no account, no points)."""
    return _view(int(balance or 0), int(earned or 0))


async def _standing(session: AsyncSession, user_id: uuid.UUID) -> tuple[int, int]:
    """(balance, points earned in the last 12 months) in one statement."""
    row = (await session.execute(_STANDING, standing_params(user_id))).one()
    return int(row[0] or 0), int(row[1] or 0)


async def account(session: AsyncSession, user_id: uuid.UUID) -> AccountView:
    """The customer's balance and tier (bronze with 0 points if they never had any).

    The tier is computed from the window as it is now, so points that aged out of the last 12
    months stop counting at once; the stored tier is only the reference for upgrade notices."""
    return _view(*await _standing(session, user_id))


async def summary(session: AsyncSession, user_id: uuid.UUID) -> tuple[str, int]:
    """(tier, points) for `GET /api/me`."""
    view = await account(session, user_id)
    return view.tier, view.balance


async def statement(
    session: AsyncSession, user_id: uuid.UUID, *, offset: int, limit: int
) -> tuple[AccountView, Sequence[PointsEntry], int]:
    """The account, one page of its entries (newest first) and how many entries there are."""
    view = await account(session, user_id)
    total = await session.scalar(
        select(func.count()).select_from(PointsEntry).where(PointsEntry.user_id == user_id)
    )
    entries = (
        await session.scalars(
            select(PointsEntry)
            .where(PointsEntry.user_id == user_id)
            .order_by(PointsEntry.created_at.desc(), PointsEntry.id.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return view, entries, int(total or 0)


# ---------------------------------------------------------------------------------------------
# Writing: helpers


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


async def _entry(
    session: AsyncSession, booking_id: uuid.UUID, kind: str, ref: str = ""
) -> PointsEntry | None:
    return cast(
        PointsEntry | None,
        await session.scalar(
            select(PointsEntry).where(
                PointsEntry.booking_id == booking_id,
                PointsEntry.kind == kind,
                PointsEntry.ref == ref,
            )
        ),
    )


async def _lock_booking(session: AsyncSession, booking_id: uuid.UUID) -> Booking | None:
    return cast(
        Booking | None,
        await session.scalar(
            select(Booking)
            .where(Booking.id == booking_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ),
    )


def _create_account_statement(session: AsyncSession, user_id: uuid.UUID) -> Any:
    """INSERT the account unless it exists (a concurrent creator wins quietly)."""
    values = {"user_id": user_id, "balance": 0, "tier": Tier.BRONZE, "updated_at": utcnow()}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(LoyaltyAccount).values(values).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(LoyaltyAccount).values(values).on_conflict_do_nothing()
    statement = mysql.insert(LoyaltyAccount).values(values)
    return statement.on_duplicate_key_update(user_id=statement.inserted.user_id)


async def _lock_account(
    session: AsyncSession, user_id: uuid.UUID, *, create: bool = False
) -> LoyaltyAccount | None:
    """The account row, locked until commit: its balance and tier are ours to change."""
    query = (
        select(LoyaltyAccount)
        .where(LoyaltyAccount.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    found = cast(LoyaltyAccount | None, await session.scalar(query))
    if found is None and create:
        await session.execute(_create_account_statement(session, user_id))
        found = cast(LoyaltyAccount | None, await session.scalar(query))
    return found


async def _change_balance(session: AsyncSession, user_id: uuid.UUID, delta: int) -> None:
    await session.execute(
        update(LoyaltyAccount)
        .where(LoyaltyAccount.user_id == user_id)
        .values(balance=LoyaltyAccount.balance + delta)
        .execution_options(synchronize_session=False)
    )


async def _recompute_tier(session: AsyncSession, account_row: LoyaltyAccount) -> str:
    """Store the tier the last 12 months give (the account is locked by the caller) and
    notify an upgrade; the lock makes exactly one transaction see each upgrade."""
    earned = await session.scalar(select(EARNED_SINCE), standing_params(account_row.user_id))
    old, new = account_row.tier, tier_for(int(earned or 0))
    if new == old:
        return new
    await session.execute(
        update(LoyaltyAccount)
        .where(LoyaltyAccount.user_id == account_row.user_id)
        .values(tier=new)
        .execution_options(synchronize_session=False)
    )
    if _rank(new) > _rank(old):
        log.info("loyalty_tier_upgraded", user_id=str(account_row.user_id), old=old, new=new)
        notifier = _notifier_for(session)
        if notifier is not None:
            await notifier(session, account_row.user_id, old, new)
    return new


# ---------------------------------------------------------------------------------------------
# Writing: the operations


async def redeem(
    session: AsyncSession, user_id: uuid.UUID, booking_id: uuid.UUID, points: int
) -> Decimal:
    """Spend `points` on the user's booking (flushed already); returns their money value.

    422 `points_insufficient` (with `balance`) when the balance is short, however many
    redemptions race; 409 `points_already_redeemed` if the booking already has some."""
    if points <= 0:
        raise InvalidPoints("Redeem a positive number of points.", requested=points)
    booking = await session.get(Booking, booking_id)
    if booking is None or booking.user_id != user_id:
        raise BookingNotFound(f"No booking with id {booking_id}.")
    if await _entry(session, booking_id, EntryKind.REDEEM) is not None:
        raise PointsAlreadyRedeemed("Points were already redeemed on this booking.")
    spent = await session.execute(
        update(LoyaltyAccount)
        .where(LoyaltyAccount.user_id == user_id, LoyaltyAccount.balance >= points)
        .values(balance=LoyaltyAccount.balance - points)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(spent) != 1:
        balance = await session.scalar(
            select(LoyaltyAccount.balance).where(LoyaltyAccount.user_id == user_id)
        )
        raise InsufficientPoints(
            f"You have {balance or 0} points; {points} were asked for.",
            balance=int(balance or 0),
            requested=points,
        )
    session.add(
        PointsEntry(
            user_id=user_id,
            booking_id=booking_id,
            kind=EntryKind.REDEEM,
            points=-points,
            note=f"Spent on booking {booking.reference}",
        )
    )
    await session.flush()
    return points_value(points)


async def restore(session: AsyncSession, booking_id: uuid.UUID) -> int:
    """Give back the points spent on a booking that expired, was cancelled or was refunded in
    full, once.

    Call it after the booking's status became `expired`, `cancelled` or `refunded`; in any
    other state (e.g. paid) nothing comes back. Returns the points restored (0 on a repeat)."""
    redeemed = await _entry(session, booking_id, EntryKind.REDEEM)
    if redeemed is None:
        return 0
    booking = await session.get(Booking, booking_id, populate_existing=True)
    if booking is None or booking.status not in UNDONE:
        return 0
    # Restores of one booking queue on its owner's account; the later one finds the entry.
    await _lock_account(session, redeemed.user_id, create=True)
    if await _entry(session, booking_id, EntryKind.RESTORE) is not None:
        return 0
    points = -redeemed.points
    session.add(
        PointsEntry(
            user_id=redeemed.user_id,
            booking_id=booking_id,
            kind=EntryKind.RESTORE,
            points=points,
            note=f"Booking {booking.reference} {booking.status}: points given back",
        )
    )
    await session.flush()
    await _change_balance(session, redeemed.user_id, points)
    return points


async def earn_for_booking(session: AsyncSession, booking_id: uuid.UUID) -> int:
    """Credit the booking's points (10% of what it paid) once; only a paid (confirmed or used)
    booking earns. Locks the booking row, then its owner's account. Returns the points."""
    booking = await _lock_booking(session, booking_id)
    if booking is None or booking.status not in PAID:
        return 0
    return await _earn(session, booking)


async def _earn(session: AsyncSession, booking: Booking) -> int:
    """The booking is locked by the caller, so a concurrent earn or refund waits for us."""
    if await _entry(session, booking.id, EntryKind.EARN) is not None:
        return 0
    paid = booking.final_amount - booking.refunded_amount
    points = points_for_payment(paid)
    if points <= 0:
        return 0
    account_row = await _lock_account(session, booking.user_id, create=True)
    assert account_row is not None
    session.add(
        PointsEntry(
            user_id=booking.user_id,
            booking_id=booking.id,
            kind=EntryKind.EARN,
            points=points,
            note=f"10% of {paid:.2f} {booking.currency} paid for booking {booking.reference}",
        )
    )
    await session.flush()
    await _change_balance(session, booking.user_id, points)
    await _recompute_tier(session, account_row)
    return points


async def reverse_for_refund(
    session: AsyncSession, booking_id: uuid.UUID, refund_id: str, refunded_amount: Decimal
) -> int:
    """Take back the points a refund un-earns (10% of `refunded_amount`), once per refund.

    Only points already earned are taken back (a refund before earning just lowers what the
    booking will earn). If the customer spent them, the balance gives what it has and stays at
    zero or more; the entry's note says so. Returns the points taken."""
    if not 0 < len(refund_id) <= 64:
        raise ValueError("refund_id must be 1 to 64 characters")
    earned = await _entry(session, booking_id, EntryKind.EARN)
    if earned is None or earned.points <= 0:
        return 0
    account_row = await _lock_account(session, earned.user_id, create=True)
    assert account_row is not None
    if await _entry(session, booking_id, EntryKind.REVERSE, refund_id) is not None:
        return 0
    reversed_before = await session.scalar(
        select(func.coalesce(func.sum(PointsEntry.points), 0)).where(
            PointsEntry.booking_id == booking_id, PointsEntry.kind == EntryKind.REVERSE
        )
    )
    # Never take back more than the booking earned, whatever the refunds add up to.
    due = min(points_for_payment(refunded_amount), earned.points + int(reversed_before or 0))
    if due <= 0:
        return 0
    taken = min(due, account_row.balance)
    note = f"Refund of {refunded_amount:.2f}: 10% taken back"
    if taken < due:
        note = (
            f"Refund of {refunded_amount:.2f}: {due} points due, only {taken} left "
            f"(the rest was already spent)"
        )
    session.add(
        PointsEntry(
            user_id=earned.user_id,
            booking_id=booking_id,
            kind=EntryKind.REVERSE,
            ref=refund_id,
            points=-taken,
            note=note,
        )
    )
    await session.flush()
    await _change_balance(session, earned.user_id, -taken)
    await _recompute_tier(session, account_row)
    return taken


async def earn_for_past_shows(session: AsyncSession, *, limit: int = 500) -> int:
    """The periodic job's work: earn for paid bookings whose show has ended and that have not
    earned yet. Returns how many bookings earned.

    The bookings are locked up front, skipping those another process (or a check-in) holds,
    and their accounts are then taken in user order, so two runs never wait on each other."""
    now = utcnow()
    ended = exists().where(
        Showtime.id == Booking.showtime_id,
        Showtime.end_time <= now,
        Showtime.status != SHOWTIME_CANCELLED,
    )
    earned = exists().where(
        PointsEntry.booking_id == Booking.id, PointsEntry.kind == EntryKind.EARN
    )
    bookings = (
        await session.scalars(
            select(Booking)
            .where(
                Booking.status.in_(PAID),
                # Too little paid to earn a point: nothing to do, now or later.
                Booking.final_amount - Booking.refunded_amount
                >= literal(MIN_EARNING_PAYMENT, Money()),
                ended,
                ~earned,
            )
            .order_by(Booking.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    ).all()
    count = 0
    for booking in sorted(bookings, key=lambda b: (b.user_id, b.id)):
        if await _earn(session, booking):
            count += 1
    return count
