"""Promo codes: administration, and the checks and redemptions the booking checkout calls.

The checkout API: `context_for(...)` describes the order, `check(...)` judges a code without
taking a use (previews), `redeem(...)` judges it and takes one use for a booking, and
`release(...)` gives the use back when that booking expires, is cancelled or refunded.

Concurrency. `PromoCode.uses` counts live redemptions and moves only by conditional UPDATEs.
`redeem` first locks the code's row (`SELECT ... FOR UPDATE`): the conditional
`uses = uses + 1` would take that lock anyway and hold it until commit, so redemptions of one
code run one at a time from that point whichever way; taking it first means every rule,
including the per-customer count of active redemptions, is judged on the latest committed
state (PostgreSQL and MariaDB run READ COMMITTED: each statement after the lock wait sees
what the previous holder committed), and a refusal has nothing to undo. It is the only lock
redeem takes, so there is no lock order to get wrong. SQLite runs one writer at a time.
`release` flips the redemption `active -> released` with a conditional UPDATE and only the
caller that flipped it gives the use back, so a use returns exactly once.

The code row stays locked until the booking's transaction ends: the checkout should redeem
as late as it can, after its own locks and checks, and before no slow outside calls.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, CursorResult, Result, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import User
from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.booking.models import Booking
from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.core.errors import Unprocessable
from boxoffice.core.schema import reject_empty_patch
from boxoffice.promotions.exceptions import (
    PromoCodeNotFound,
    PromoCodeTaken,
    PromoInvalid,
    PromoReason,
    UnknownReferences,
)
from boxoffice.promotions.models import PromoCode, PromoKind, PromoRedemption, RedemptionStatus
from boxoffice.promotions.schemas import (
    PromoCodeCreate,
    PromoCodeUpdate,
    normalize_code,
    term_errors,
)
from boxoffice.scheduling.exceptions import ShowtimeNotFound
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import Theater

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class PromoContext:
    """The order a code is judged against."""

    user_id: uuid.UUID
    subtotal: Decimal  # before discounts, in `currency`
    currency: str
    movie_id: uuid.UUID
    theater_id: uuid.UUID
    local_weekday: int  # of the showtime in the theater's timezone; 0 = Monday
    first_booking: bool  # the customer has never had a paid booking
    now: dt.datetime


@dataclass(frozen=True)
class Preview:
    promo: PromoCode
    currency: str
    subtotal: Decimal | None
    discount: Decimal | None


# ---------------------------------------------------------------------------------------------
# Discounts and rules


def compute_discount(
    *, kind: str, value: Decimal, subtotal: Decimal | None, max_discount: Decimal | None
) -> Decimal | None:
    """Percent of the subtotal or the fixed amount, capped by `max_discount` and by the
    subtotal, rounded half-up to cents once, at the end. None for a percentage without a
    subtotal."""
    if kind == PromoKind.PERCENTAGE:
        if subtotal is None:
            return None
        amount = subtotal * value / HUNDRED
    else:
        amount = value
    if max_discount is not None:
        amount = min(amount, max_discount)
    if subtotal is not None:
        amount = min(amount, subtotal)
    return max(amount, Decimal(0)).quantize(CENT, rounding=ROUND_HALF_UP)


def _discount(promo: PromoCode, subtotal: Decimal) -> Decimal:
    amount = compute_discount(
        kind=promo.kind, value=promo.value, subtotal=subtotal, max_discount=promo.max_discount
    )
    assert amount is not None  # a subtotal was given
    return amount


def customer_limit(promo: PromoCode) -> int | None:
    """Uses one customer may hold at once: a first-booking code is one use per customer."""
    limits = [n for n in (promo.per_customer_limit, 1 if promo.first_booking_only else None) if n]
    return min(limits) if limits else None


async def _find(session: AsyncSession, code: str, *, lock: bool = False) -> PromoCode:
    normalized = normalize_code(code)
    if normalized is None:
        raise PromoInvalid(PromoReason.NOT_FOUND)
    query = select(PromoCode).where(PromoCode.code == normalized)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    promo = await session.scalar(query)
    if promo is None:
        raise PromoInvalid(PromoReason.NOT_FOUND)
    return promo


async def _judge(
    session: AsyncSession, promo: PromoCode, ctx: PromoContext, *, with_subtotal: bool = True
) -> None:
    """Raise `PromoInvalid` with the first rule the order breaks: the code's own state, then
    the order, then the uses left."""
    if not promo.active:
        raise PromoInvalid(PromoReason.INACTIVE)
    if promo.valid_from is not None and ctx.now < promo.valid_from:
        raise PromoInvalid(PromoReason.NOT_STARTED, validFrom=promo.valid_from.isoformat())
    if promo.valid_until is not None and ctx.now >= promo.valid_until:
        raise PromoInvalid(PromoReason.EXPIRED)
    if promo.currency is not None and promo.currency != ctx.currency:
        raise PromoInvalid(PromoReason.CURRENCY)
    if with_subtotal and promo.min_order is not None and ctx.subtotal < promo.min_order:
        raise PromoInvalid(PromoReason.MIN_ORDER, minOrder=f"{promo.min_order:.2f}")
    if promo.movie_ids and str(ctx.movie_id) not in promo.movie_ids:
        raise PromoInvalid(PromoReason.MOVIE)
    if promo.theater_ids and str(ctx.theater_id) not in promo.theater_ids:
        raise PromoInvalid(PromoReason.THEATER)
    if promo.days_of_week and ctx.local_weekday not in promo.days_of_week:
        raise PromoInvalid(PromoReason.DAY)
    if promo.first_booking_only and not ctx.first_booking:
        raise PromoInvalid(PromoReason.FIRST_BOOKING_ONLY)
    if promo.total_limit is not None and promo.uses >= promo.total_limit:
        raise PromoInvalid(PromoReason.EXHAUSTED)
    limit = customer_limit(promo)
    if limit is not None:
        held = await session.scalar(
            select(func.count())
            .select_from(PromoRedemption)
            .where(
                PromoRedemption.promo_code_id == promo.id,
                PromoRedemption.user_id == ctx.user_id,
                PromoRedemption.status == RedemptionStatus.ACTIVE,
            )
        )
        if (held or 0) >= limit:
            raise PromoInvalid(PromoReason.CUSTOMER_LIMIT)


# ---------------------------------------------------------------------------------------------
# The checkout's API


async def check(session: AsyncSession, code: str, ctx: PromoContext) -> Decimal:
    """The discount `code` would give this order, judged like `redeem` but taking no use."""
    promo = await _find(session, code)
    await _judge(session, promo, ctx)
    return _discount(promo, ctx.subtotal)


async def redeem(
    session: AsyncSession, code: str, booking_id: uuid.UUID, ctx: PromoContext
) -> Decimal:
    """Judge `code` for this order and take one use for `booking_id`; the discount.

    Every refusal raises `PromoInvalid` before anything is written."""
    promo = await _find(session, code, lock=True)  # see the module docstring
    await _judge(session, promo, ctx)
    taken = await session.execute(
        update(PromoCode)
        .where(
            PromoCode.id == promo.id,
            or_(PromoCode.total_limit.is_(None), PromoCode.uses < PromoCode.total_limit),
        )
        # A use is not an edit: updated_at keeps the time of the last change of the terms.
        .values(uses=PromoCode.uses + 1, updated_at=PromoCode.updated_at)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(taken) != 1:
        raise PromoInvalid(PromoReason.EXHAUSTED)
    amount = _discount(promo, ctx.subtotal)
    session.add(
        PromoRedemption(
            promo_code_id=promo.id, user_id=ctx.user_id, booking_id=booking_id, amount=amount
        )
    )
    await session.flush()
    return amount


async def release(session: AsyncSession, booking_id: uuid.UUID) -> bool:
    """Give back the use of the booking's redemption (the booking expired, was cancelled or
    refunded): True the one time it comes back, False after that or without a redemption."""
    row = (
        await session.execute(
            select(PromoRedemption.id, PromoRedemption.promo_code_id).where(
                PromoRedemption.booking_id == booking_id,
                PromoRedemption.status == RedemptionStatus.ACTIVE,
            )
        )
    ).first()
    if row is None:
        return False
    redemption_id, promo_code_id = row
    flipped = await session.execute(
        update(PromoRedemption)
        .where(
            PromoRedemption.id == redemption_id,
            PromoRedemption.status == RedemptionStatus.ACTIVE,
        )
        .values(status=RedemptionStatus.RELEASED, released_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if _rowcount(flipped) != 1:  # a concurrent release flipped it first
        return False
    await session.execute(
        update(PromoCode)
        .where(PromoCode.id == promo_code_id, PromoCode.uses > 0)
        .values(uses=PromoCode.uses - 1, updated_at=PromoCode.updated_at)
        .execution_options(synchronize_session=False)
    )
    return True


async def is_first_booking(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """No booking of the customer was ever paid (confirmed, used or refunded since)."""
    paid = await session.scalar(
        select(exists().where(Booking.user_id == user_id, Booking.confirmed_at.is_not(None)))
    )
    return not paid


async def context_for(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    showtime_id: uuid.UUID,
    subtotal: Decimal,
    now: dt.datetime | None = None,
) -> PromoContext:
    """The context of an order for a showtime: its movie, theater, currency and theater-local
    weekday, and whether it is the customer's first booking."""
    row = (
        await session.execute(
            select(Showtime, Theater.timezone)
            .join(Theater, Theater.id == Showtime.theater_id)
            .where(Showtime.id == showtime_id)
        )
    ).first()
    if row is None:
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    showtime, timezone = row
    return PromoContext(
        user_id=user_id,
        subtotal=subtotal,
        currency=showtime.currency,
        movie_id=showtime.movie_id,
        theater_id=showtime.theater_id,
        local_weekday=showtime.start_time.astimezone(ZoneInfo(timezone)).weekday(),
        first_booking=await is_first_booking(session, user_id),
        now=now or utcnow(),
    )


async def preview(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    code: str,
    showtime_id: uuid.UUID,
    subtotal: Decimal | None,
) -> Preview:
    """A customer's lookup: is the code good for this showtime, and what would it take off?
    Without a subtotal the minimum order is not judged."""
    ctx = await context_for(
        session, user_id=user_id, showtime_id=showtime_id, subtotal=subtotal or Decimal(0)
    )
    promo = await _find(session, code)
    await _judge(session, promo, ctx, with_subtotal=subtotal is not None)
    discount = compute_discount(
        kind=promo.kind, value=promo.value, subtotal=subtotal, max_discount=promo.max_discount
    )
    return Preview(promo=promo, currency=ctx.currency, subtotal=subtotal, discount=discount)


# ---------------------------------------------------------------------------------------------
# Administration


async def get_code(session: AsyncSession, promo_id: uuid.UUID, *, lock: bool = False) -> PromoCode:
    query = select(PromoCode).where(PromoCode.id == promo_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    promo = await session.scalar(query)
    if promo is None:
        raise PromoCodeNotFound(f"No promo code with id {promo_id}.")
    return promo


async def list_codes(
    session: AsyncSession,
    *,
    active: bool | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[Sequence[PromoCode], int]:
    """Newest first; `search` is part of the code or the description, case-insensitive."""
    conditions: list[ColumnElement[bool]] = []
    if active is not None:
        conditions.append(PromoCode.active == active)
    if search and search.strip():
        term = search.strip()
        conditions.append(
            or_(
                PromoCode.code.contains(term.upper(), autoescape=True),
                func.lower(PromoCode.description).contains(term.lower(), autoescape=True),
            )
        )
    total = await session.scalar(select(func.count()).select_from(PromoCode).where(*conditions))
    codes = await session.scalars(
        select(PromoCode)
        .where(*conditions)
        .order_by(PromoCode.created_at.desc(), PromoCode.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return codes.all(), total or 0


async def create_code(session: AsyncSession, data: PromoCodeCreate, actor: User) -> PromoCode:
    await _check_code_free(session, data.code)
    values = data.model_dump(by_alias=False)
    await _check_references(session, values.get("movie_ids"), values.get("theater_ids"))
    promo = PromoCode(uses=0)
    _apply(promo, values)
    session.add(promo)
    await session.flush()
    _audit(session, "created", promo, actor, data.model_dump(mode="json", by_alias=True))
    return promo


async def update_code(
    session: AsyncSession, promo_id: uuid.UUID, data: PromoCodeUpdate, actor: User
) -> PromoCode:
    changes = reject_empty_patch(data.model_dump(by_alias=False, exclude_unset=True))
    promo = await get_code(session, promo_id, lock=True)  # a delete may be deciding meanwhile
    if "code" in changes and changes["code"] != promo.code:
        await _check_code_free(session, changes["code"])
    await _check_references(session, changes.get("movie_ids"), changes.get("theater_ids"))
    _apply(promo, changes)
    errors = term_errors(
        kind=promo.kind,
        value=promo.value,
        currency=promo.currency,
        valid_from=promo.valid_from,
        valid_until=promo.valid_until,
    )
    if errors:
        raise Unprocessable(
            "; ".join(f"{field}: {message}" for field, message in errors),
            errors=[{"field": f, "message": m, "type": "value_error"} for f, m in errors],
        )
    await session.flush()
    _audit(
        session,
        "updated",
        promo,
        actor,
        {"code": promo.code, **data.model_dump(mode="json", by_alias=True, exclude_unset=True)},
    )
    return promo


async def delete_code(session: AsyncSession, promo_id: uuid.UUID, actor: User) -> bool:
    """Delete a code nobody has used; a code with redemptions (live or given back) is
    deactivated instead, so bookings keep their history. True if it was deleted.

    The row is locked first: a redemption committing meanwhile is seen, and a redemption
    waiting for the lock finds the code gone or inactive."""
    promo = await get_code(session, promo_id, lock=True)
    used = await session.scalar(select(exists().where(PromoRedemption.promo_code_id == promo.id)))
    if used:
        promo.active = False
        await session.flush()
        _audit(session, "deactivated", promo, actor, {"code": promo.code})
        return False
    _audit(session, "deleted", promo, actor, {"code": promo.code})
    await session.delete(promo)
    await session.flush()
    return True


async def _check_code_free(session: AsyncSession, code: str) -> None:
    if await session.scalar(select(exists().where(PromoCode.code == code))):
        raise PromoCodeTaken(f"The code {code} exists already.", field="code")


async def _check_references(
    session: AsyncSession, movie_ids: list[uuid.UUID] | None, theater_ids: list[uuid.UUID] | None
) -> None:
    missing: dict[str, Any] = {}
    for name, model, ids in (("movieIds", Movie, movie_ids), ("theaterIds", Theater, theater_ids)):
        if ids:
            found = set(await session.scalars(select(model.id).where(model.id.in_(ids))))
            if unknown := [str(i) for i in ids if i not in found]:
                missing[name] = unknown
    if missing:
        raise UnknownReferences(
            "Unknown " + ", ".join(f"{k}: {', '.join(v)}" for k, v in missing.items()),
            **missing,
        )


def _apply(promo: PromoCode, values: dict[str, Any]) -> None:
    for field, value in values.items():
        if field in {"movie_ids", "theater_ids"}:
            value = [str(i) for i in value] if value else None
        elif field == "days_of_week":
            value = list(value) if value else None
        elif field == "kind":
            value = str(value)
        setattr(promo, field, value)


def _audit(
    session: AsyncSession, action: str, promo: PromoCode, actor: User, data: dict[str, Any]
) -> None:
    audit.record(
        session,
        f"promo_code.{action}",
        entity_type="promo_code",
        entity_id=promo.id,
        actor_kind=ActorKind.STAFF,
        actor_id=actor.id,
        data=data,
    )


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount
