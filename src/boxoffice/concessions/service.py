"""Concessions: the snack menu, stock taken and given back by orders, and the pickup counter.

Stock is a counter on the snack row, changed only by conditional UPDATEs: an order takes
`stock = stock - q WHERE stock >= q` (so it never goes below zero, however many customers
race: PostgreSQL and MariaDB re-check the condition on the locked row, SQLite has one writer),
and gives it back once, when its lines flip `restocked` from false to true. Snacks whose
`stock` is null are not counted and their rows are not written by orders (no hot row).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.concessions.exceptions import (
    AlreadyCollected,
    InvalidSnackOrder,
    NotCollectable,
    OutOfStock,
    PickupNotFound,
    SnackInUse,
    SnackNotFound,
    SnackUnavailable,
)
from boxoffice.concessions.models import BookingSnack, Snack
from boxoffice.concessions.schemas import MAX_LINES, MAX_QUANTITY, SnackCreate, SnackUpdate
from boxoffice.core.clock import utcnow
from boxoffice.core.schema import reject_empty_patch

# No 0/O, 1/I/L: a code read out at the counter is never misheard (as booking references).
PICKUP_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
PICKUP_CODE_LENGTH = 8  # 31^8: about 8.5e11 codes
_PAID = (BookingStatus.CONFIRMED, BookingStatus.USED)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


# ---------------------------------------------------------------------------------------------
# The menu and its administration


async def menu(session: AsyncSession, *, category: str | None = None) -> Sequence[Snack]:
    """Every snack, orderable or not (the client shows "sold out"), by category and name."""
    query = select(Snack).order_by(Snack.category, Snack.name, Snack.id)
    if category and category.strip():
        query = query.where(Snack.category == category.strip().lower())
    return (await session.scalars(query)).all()


async def list_snacks(
    session: AsyncSession, *, category: str | None = None, offset: int = 0, limit: int = 20
) -> tuple[Sequence[Snack], int]:
    conditions = []
    if category and category.strip():
        conditions.append(Snack.category == category.strip().lower())
    total = await session.scalar(select(func.count()).select_from(Snack).where(*conditions))
    snacks = await session.scalars(
        select(Snack)
        .where(*conditions)
        .order_by(Snack.category, Snack.name, Snack.id)
        .offset(offset)
        .limit(limit)
    )
    return snacks.all(), total or 0


async def get_snack(session: AsyncSession, snack_id: uuid.UUID) -> Snack:
    snack = await session.get(Snack, snack_id)
    if snack is None:
        raise SnackNotFound(f"No snack with id {snack_id}.", snackId=str(snack_id))
    return snack


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe values for the audit log (money as decimal strings)."""
    return {
        key: f"{value:.2f}" if isinstance(value, Decimal) else value
        for key, value in values.items()
    }


async def create_snack(session: AsyncSession, data: SnackCreate, actor_id: uuid.UUID) -> Snack:
    values = data.model_dump(by_alias=False)
    snack = Snack(**values)
    session.add(snack)
    await session.flush()
    audit.record(
        session,
        "snack.created",
        entity_type="snack",
        entity_id=snack.id,
        actor_kind=ActorKind.STAFF,
        actor_id=actor_id,
        data=_plain(values),
    )
    return snack


async def update_snack(
    session: AsyncSession, snack_id: uuid.UUID, data: SnackUpdate, actor_id: uuid.UUID
) -> Snack:
    changes = reject_empty_patch(data.model_dump(by_alias=False, exclude_unset=True))
    if changes.get("description", "") is None:
        changes["description"] = ""
    # Locked: a price or stock change and a concurrent order see each other whole.
    snack = await session.scalar(
        select(Snack)
        .where(Snack.id == snack_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if snack is None:
        raise SnackNotFound(f"No snack with id {snack_id}.", snackId=str(snack_id))
    before = {field: getattr(snack, field) for field in changes}
    for field, value in changes.items():
        setattr(snack, field, value)
    await session.flush()
    audit.record(
        session,
        "snack.updated",
        entity_type="snack",
        entity_id=snack.id,
        actor_kind=ActorKind.STAFF,
        actor_id=actor_id,
        data={"before": _plain(before), "after": _plain(changes)},
    )
    return snack


async def delete_snack(session: AsyncSession, snack_id: uuid.UUID, actor_id: uuid.UUID) -> None:
    """Only a snack never ordered: order lines and sales reports keep pointing at sold ones,
    which are taken off the menu with `available: false` instead (409 `snack_in_use`)."""
    snack = await get_snack(session, snack_id)
    if await session.scalar(select(exists().where(BookingSnack.snack_id == snack.id))):
        raise SnackInUse(
            "The snack has been ordered and cannot be deleted; set available to false instead.",
            snackId=str(snack.id),
        )
    audit.record(
        session,
        "snack.deleted",
        entity_type="snack",
        entity_id=snack.id,
        actor_kind=ActorKind.STAFF,
        actor_id=actor_id,
        data=_plain({"name": snack.name, "category": snack.category, "price": snack.price}),
    )
    await session.delete(snack)
    await session.flush()


# ---------------------------------------------------------------------------------------------
# Stock: what booking checkout and preorders call


@dataclass(frozen=True)
class SnackOrder:
    snack_id: uuid.UUID
    quantity: int


def _merge(items: Sequence[SnackOrder]) -> dict[uuid.UUID, int]:
    """Quantities by snack, in the order the snacks were first named."""
    merged: dict[uuid.UUID, int] = {}
    for item in items:
        if not isinstance(item.quantity, int) or not 1 <= item.quantity <= MAX_QUANTITY:
            raise InvalidSnackOrder(
                f"A quantity is between 1 and {MAX_QUANTITY}.", snackId=str(item.snack_id)
            )
        merged[item.snack_id] = merged.get(item.snack_id, 0) + item.quantity
    if len(merged) > MAX_LINES:
        raise InvalidSnackOrder(f"At most {MAX_LINES} different snacks in one order.")
    too_many = [snack_id for snack_id, quantity in merged.items() if quantity > MAX_QUANTITY]
    if too_many:
        raise InvalidSnackOrder(
            f"At most {MAX_QUANTITY} of one snack in one order.", snackId=str(too_many[0])
        )
    return merged


async def reserve(
    session: AsyncSession, booking_id: uuid.UUID, items: Sequence[SnackOrder]
) -> list[BookingSnack]:
    """Take the snacks' stock for the booking (already flushed) and add its snack lines, with
    the prices of now frozen on them. All or nothing: an error leaves the caller to roll back.

    422 `invalid_snack_order`, 404 `snack_not_found`, 409 `snack_unavailable` or
    409 `out_of_stock` (with `available`: what is left).
    """
    wanted = _merge(items)
    if not wanted:
        return []
    # Plain rows, not entities: the stock changes below would leave loaded snacks stale.
    snacks = {
        row.id: row
        for row in await session.execute(
            select(Snack.id, Snack.name, Snack.price, Snack.available, Snack.stock).where(
                Snack.id.in_(list(wanted))
            )
        )
    }
    for snack_id in wanted:
        if snack_id not in snacks:
            raise SnackNotFound(f"No snack with id {snack_id}.", snackId=str(snack_id))
        if not snacks[snack_id].available:
            raise SnackUnavailable(
                f"{snacks[snack_id].name} is not available.", snackId=str(snack_id)
            )
    # In snack-id order, so two orders lock the rows they share in one order (no deadlocks).
    for snack_id in sorted(wanted):
        if snacks[snack_id].stock is not None:
            await _take_stock(session, snack_id, snacks[snack_id].name, wanted[snack_id])
    lines = [
        BookingSnack(
            booking_id=booking_id,
            snack_id=snack_id,
            name=snacks[snack_id].name,
            quantity=quantity,
            unit_price=snacks[snack_id].price,
            total_price=snacks[snack_id].price * quantity,
        )
        for snack_id, quantity in wanted.items()
    ]
    session.add_all(lines)
    await session.flush()
    return lines


async def _take_stock(session: AsyncSession, snack_id: uuid.UUID, name: str, quantity: int) -> None:
    result = await session.execute(
        update(Snack)
        .where(Snack.id == snack_id, Snack.available.is_(True), Snack.stock >= quantity)
        .values(stock=Snack.stock - quantity),
        execution_options={"synchronize_session": False},
    )
    if _rowcount(result) == 1:
        return
    # Lost to other orders (or the snack was withdrawn meanwhile): say what is left now.
    row = (
        await session.execute(select(Snack.available, Snack.stock).where(Snack.id == snack_id))
    ).one()
    if not row.available:
        raise SnackUnavailable(f"{name} is not available.", snackId=str(snack_id))
    if row.stock is None:
        return  # no longer counted: nothing to take
    raise OutOfStock(
        f"Only {row.stock} of {name} left.",
        snackId=str(snack_id),
        available=row.stock,
        requested=quantity,
    )


async def restock(session: AsyncSession, booking_id: uuid.UUID) -> None:
    """The booking expired, was cancelled or refunded: its snacks go back in stock, once.

    Each line flips `restocked` with a conditional UPDATE and only the call that flipped it
    gives its quantity back: of two concurrent calls the second waits for the first's row lock,
    then finds the line already restocked. Lines go in snack-id order, as `reserve` locks snacks.
    """
    lines = (
        await session.execute(
            select(BookingSnack.id, BookingSnack.snack_id, BookingSnack.quantity)
            .join(Booking, Booking.id == BookingSnack.booking_id)
            .where(
                BookingSnack.booking_id == booking_id,
                BookingSnack.restocked.is_(False),
                # Snacks handed out at the counter were eaten: they are not stock again.
                Booking.snacks_collected_at.is_(None),
            )
            .order_by(BookingSnack.snack_id, BookingSnack.id)
        )
    ).all()
    for line in lines:
        flipped = await session.execute(
            update(BookingSnack)
            .where(BookingSnack.id == line.id, BookingSnack.restocked.is_(False))
            .values(restocked=True),
            execution_options={"synchronize_session": False},
        )
        if _rowcount(flipped) != 1:
            continue  # given back by someone else meanwhile
        # Uncounted snacks (stock null) stay uncounted.
        await session.execute(
            update(Snack)
            .where(Snack.id == line.snack_id, Snack.stock.is_not(None))
            .values(stock=Snack.stock + line.quantity),
            execution_options={"synchronize_session": False},
        )


# ---------------------------------------------------------------------------------------------
# Pickup codes and the counter


def new_pickup_code() -> str:
    """A random code of 8 characters without look-alikes (0/O, 1/I/L), e.g. `K7QX4M2P`."""
    return "".join(secrets.choice(PICKUP_ALPHABET) for _ in range(PICKUP_CODE_LENGTH))


async def assign_pickup_code(
    session: AsyncSession, booking: Booking, *, codes: Iterator[str] | None = None
) -> str:
    """Give the (inserted) booking a pickup code no other booking has: each try is a savepoint,
    so a collision with another booking's code just draws again. `codes`: where the codes come
    from (default: `new_pickup_code`)."""
    await session.flush()  # the booking's other changes stay out of the savepoint
    for _ in range(5):
        code = next(codes) if codes is not None else new_pickup_code()
        try:
            async with session.begin_nested():
                booking.pickup_code = code
                await session.flush()
            return code
        except IntegrityError:
            await session.refresh(booking)  # the savepoint's rollback expired it
    raise RuntimeError("could not find a free pickup code")


@dataclass(frozen=True)
class Pickup:
    booking: Booking
    lines: list[BookingSnack]


async def collect(session: AsyncSession, pickup_code: str) -> Pickup:
    """Hand out a paid order's snacks: one conditional UPDATE marks it collected, so of two
    cashiers scanning one code at once exactly one succeeds."""
    now = utcnow()
    result = await session.execute(
        update(Booking)
        .where(
            Booking.pickup_code == pickup_code,
            Booking.snacks_collected_at.is_(None),
            Booking.status.in_(_PAID),
        )
        .values(snacks_collected_at=now),
        execution_options={"synchronize_session": False},
    )
    booking = await session.scalar(
        select(Booking)
        .where(Booking.pickup_code == pickup_code)
        .execution_options(populate_existing=True)
    )
    if booking is None:
        raise PickupNotFound("No order has this pickup code.")
    if _rowcount(result) != 1:
        if booking.snacks_collected_at is not None:
            raise AlreadyCollected(
                "These snacks were already collected.",
                collectedAt=booking.snacks_collected_at.isoformat(),
                bookingId=str(booking.id),
            )
        status = booking.status
        if status == BookingStatus.PENDING and booking.expires_at <= now:
            status = BookingStatus.EXPIRED  # past its deadline, before the expiry job saw it
        # `status` is the HTTP status in a problem document, hence `bookingStatus`.
        raise NotCollectable(
            f"A {status} order cannot be collected.",
            bookingStatus=status,
            bookingId=str(booking.id),
        )
    lines = (
        await session.scalars(
            select(BookingSnack)
            .where(BookingSnack.booking_id == booking.id)
            .order_by(BookingSnack.name, BookingSnack.id)
        )
    ).all()
    return Pickup(booking, list(lines))
