"""Seat prices: the default price (base x hall-type factor x seat-class factor) and the
admin-managed pricing rules on top of it (how rules combine: `pricing/rules.py`).

`showtime_prices` is what booking calls to price seats (the price then freezes in the
booking); it reads fresh every time. The seat map caches a `PricingBasis` per showtime for a
few seconds instead (see `scheduling/seat_map.py`); `rules_version()` tells it when rules
changed in this process.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind
from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.core.db import RowLoad, after_commit
from boxoffice.core.pgdriver import SessionStatement
from boxoffice.pricing.exceptions import (
    InvalidPricingRule,
    PricingRuleNotFound,
    UnknownCity,
    UnknownMovie,
    UnknownTheater,
)
from boxoffice.pricing.models import PricingRule, RuleKind
from boxoffice.pricing.rules import KINDS, PriceContext, Rule, apply_rules, occupancy
from boxoffice.scheduling.exceptions import ShowtimeNotFound
from boxoffice.scheduling.models import SeatStatus, Showtime, ShowtimeSeat
from boxoffice.venues.models import City, Screen, Seat, Theater

CENT = Decimal("0.01")

HALL_TYPE_FACTORS: dict[str, Decimal] = {
    "STANDARD": Decimal("1.00"),
    "VIP": Decimal("1.50"),
    "IMAX": Decimal("1.40"),
    "4DX": Decimal("1.60"),
}

SEAT_CLASS_FACTORS: dict[str, Decimal] = {
    "standard": Decimal("1.00"),
    "premium": Decimal("1.20"),
    "vip": Decimal("1.50"),
    "wheelchair": Decimal("1.00"),
    "couple": Decimal("2.00"),  # one seat for two people
}

HALL_TYPES = frozenset(HALL_TYPE_FACTORS)
SEAT_CLASSES = frozenset(SEAT_CLASS_FACTORS)
MAX_MULTIPLIER = Decimal(10)


def default_price(base_price: Decimal, hall_type: str, seat_class: str) -> Decimal:
    """base * hall factor * class factor, exact (not rounded): what the rules start from."""
    try:
        hall = HALL_TYPE_FACTORS[hall_type]
        seat = SEAT_CLASS_FACTORS[seat_class]
    except KeyError as exc:  # venues validate both; an unknown one is a data bug
        raise ValueError(f"no price factor for {exc.args[0]!r}") from None
    return base_price * hall * seat


def seat_price(base_price: Decimal, hall_type: str, seat_class: str) -> Decimal:
    """The default price rounded once (half up) to cents: no pricing rules.

    Rounding only at the end keeps e.g. 10.01 * 1.4 * 1.2 at 16.82, not 16.81.
    """
    return default_price(base_price, hall_type, seat_class).quantize(CENT, rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------------------------------------
# Prices of a showtime


@dataclass(frozen=True)
class ClassPrice:
    default: Decimal  # without rules, rounded to cents (= seat_price)
    price: Decimal  # with the matching rules, rounded once to cents


@dataclass(frozen=True)
class ShowtimePrices:
    showtime_id: uuid.UUID
    currency: str
    by_class: dict[str, ClassPrice]  # every class of the screen's active seats


@dataclass(frozen=True)
class PricingBasis:
    """Everything a showtime's seat prices depend on but its occupancy: the showtime, its
    hall and theater, and the rules that may apply to it (a superset; `apply_rules` decides)."""

    showtime_id: uuid.UUID
    currency: str
    base_price: Decimal
    hall_type: str
    seat_classes: tuple[str, ...]
    city_id: uuid.UUID
    theater_id: uuid.UUID
    movie_id: uuid.UUID
    local_date: dt.date
    local_time: dt.time
    rules: tuple[Rule, ...]

    @property
    def needs_occupancy(self) -> bool:
        return any(rule.uses_occupancy for rule in self.rules)

    def price(self, seat_class: str, occupancy: Fraction | None = None) -> ClassPrice:
        default = default_price(self.base_price, self.hall_type, seat_class)
        context = PriceContext(
            hall_type=self.hall_type,
            seat_class=seat_class,
            local_date=self.local_date,
            local_time=self.local_time,
            city_id=self.city_id,
            theater_id=self.theater_id,
            movie_id=self.movie_id,
            occupancy=occupancy,
        )
        return ClassPrice(
            default=default.quantize(CENT, rounding=ROUND_HALF_UP),
            price=apply_rules(default, self.rules, context),
        )

    def prices(self, occupancy: Fraction | None = None) -> ShowtimePrices:
        return ShowtimePrices(
            showtime_id=self.showtime_id,
            currency=self.currency,
            by_class={name: self.price(name, occupancy) for name in self.seat_classes},
        )


def as_rule(row: PricingRule) -> Rule:
    """An immutable snapshot of a rule row, for evaluation (and caching outside a session)."""
    return Rule(
        id=row.id,
        kind=row.kind,
        value=row.value,
        priority=row.priority,
        active=row.active,
        hall_types=frozenset(row.hall_types) if row.hall_types else None,
        seat_classes=frozenset(row.seat_classes) if row.seat_classes else None,
        city_id=row.city_id,
        theater_id=row.theater_id,
        movie_id=row.movie_id,
        days_of_week=frozenset(row.days_of_week) if row.days_of_week else None,
        time_from=row.time_from,
        time_to=row.time_to,
        date_from=row.date_from,
        date_to=row.date_to,
        occupancy_min=row.occupancy_min,
        occupancy_max=row.occupancy_max,
        min_price=row.min_price,
        max_price=row.max_price,
    )


def _seat_classes_mask(showtime_id: BindParameter[uuid.UUID]) -> ScalarSelect[Any]:
    """The seat classes of the showtime's hall, one bit each (SEAT_CLASS_FACTORS' order), in
    one pass over the hall's seats by its index. An EXISTS per class made PostgreSQL scan the
    whole seats table for a class it guessed common (a fast-start plan finding no match in
    this hall): ~2 ms a booking. Not correlated with the outer query (its own alias of
    showtimes), so it runs once, not once per rule row."""
    showtime = aliased(Showtime)
    bit = case(
        {name: 1 << i for i, name in enumerate(SEAT_CLASS_FACTORS)},
        value=Seat.seat_class,
        else_=0,
    )
    return (
        select(func.coalesce(func.sum(bit.distinct()), 0))
        .join(showtime, showtime.screen_id == Seat.screen_id)
        .where(showtime.id == showtime_id, Seat.active.is_(True))
        .scalar_subquery()
    )


_LOADED_RULE = RowLoad(PricingRule, "rule_")


def _basis_statement() -> Select[*tuple[Any, ...]]:
    """The statement of `pricing_basis`, for a bound `showtime_id`."""
    showtime_id = bindparam("showtime_id", type_=Showtime.id.type)
    return (
        select(
            Showtime.base_price,
            Showtime.currency,
            Showtime.start_time,
            Showtime.movie_id,
            Showtime.theater_id,
            Screen.hall_type,
            Theater.timezone,
            Theater.city_id,
            _seat_classes_mask(showtime_id).label("class_mask"),
            *_LOADED_RULE.columns,
        )
        .select_from(Showtime)
        .join(Screen, Screen.id == Showtime.screen_id)
        .join(Theater, Theater.id == Showtime.theater_id)
        .outerjoin(
            PricingRule,
            and_(
                PricingRule.active.is_(True),
                or_(PricingRule.city_id.is_(None), PricingRule.city_id == Theater.city_id),
                or_(
                    PricingRule.theater_id.is_(None),
                    PricingRule.theater_id == Showtime.theater_id,
                ),
                or_(PricingRule.movie_id.is_(None), PricingRule.movie_id == Showtime.movie_id),
            ),
        )
        .where(Showtime.id == showtime_id)
    )


# Built once: building this statement (five subqueries, the rule join) cost more CPU than
# running it, on every booking and every seat-map price refresh. On PostgreSQL it goes on the
# session's own connection (core.pgdriver.SessionStatement), a booking's third statement.
_BASIS = SessionStatement(_basis_statement())


async def pricing_basis(session: AsyncSession, showtime_id: uuid.UUID) -> PricingBasis:
    """One statement: the showtime with its hall, theater and seat classes, joined to each
    active rule whose city, theater and movie allow it (one row per rule; the other
    conditions are `apply_rules`'s). Raises `ShowtimeNotFound`."""
    rows = await _BASIS.fetch(session, {"showtime_id": showtime_id})
    if not rows:
        raise ShowtimeNotFound(f"No showtime with id {showtime_id}.")
    head = rows[0]
    local = head.start_time.astimezone(ZoneInfo(head.timezone))
    present = int(head.class_mask)
    return PricingBasis(
        showtime_id=showtime_id,
        currency=head.currency,
        base_price=head.base_price,
        hall_type=head.hall_type,
        seat_classes=tuple(name for i, name in enumerate(SEAT_CLASS_FACTORS) if present & (1 << i)),
        city_id=head.city_id,
        theater_id=head.theater_id,
        movie_id=head.movie_id,
        local_date=local.date(),
        local_time=local.time().replace(tzinfo=None),
        rules=tuple(
            as_rule(rule) for rule in (_LOADED_RULE.load(session, row) for row in rows) if rule
        ),
    )


async def showtime_occupancy(
    session: AsyncSession, showtime_id: uuid.UUID, now: dt.datetime
) -> Fraction:
    """Sold and held seats (a lapsed hold counts as free) over the showtime's sellable
    (not blocked) seats, in one statement."""
    held = and_(
        ShowtimeSeat.status == SeatStatus.HELD,
        or_(ShowtimeSeat.held_until.is_(None), ShowtimeSeat.held_until >= now),
    )
    taken = or_(ShowtimeSeat.status == SeatStatus.BOOKED, held)
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((taken, 1), else_=0)), 0),
                func.coalesce(
                    func.sum(case((ShowtimeSeat.status != SeatStatus.BLOCKED, 1), else_=0)), 0
                ),
            ).where(ShowtimeSeat.showtime_id == showtime_id)
        )
    ).one()
    return occupancy(int(row[0]), int(row[1]))


async def showtime_prices(
    session: AsyncSession, showtime_id: uuid.UUID, *, now: dt.datetime | None = None
) -> ShowtimePrices:
    """Every seat class's default and rule price for the showtime, read fresh: one statement,
    two when a candidate rule depends on occupancy. Raises `ShowtimeNotFound`."""
    basis = await pricing_basis(session, showtime_id)
    seats_taken = (
        await showtime_occupancy(session, showtime_id, now or utcnow())
        if basis.needs_occupancy
        else None
    )
    return basis.prices(seats_taken)


# ---------------------------------------------------------------------------------------------
# Rule changes in this process (the seat map's cache key)


class _Version:
    value = 0


def rules_version() -> int:
    """Grows whenever a rule change committed in this process."""
    return _Version.value


async def _rules_changed() -> None:
    _Version.value += 1


# ---------------------------------------------------------------------------------------------
# Administration

# Lower and upper bounds of a rule: (low, high, the field to blame, why).
_BOUNDS = (
    ("date_from", "date_to", "dateTo", "dateTo is before dateFrom"),
    ("occupancy_min", "occupancy_max", "occupancyMax", "occupancyMax is below occupancyMin"),
    ("min_price", "max_price", "maxPrice", "maxPrice is below minPrice"),
)
_RULE_FIELDS = (
    "name",
    "active",
    "priority",
    "kind",
    "value",
    "hall_types",
    "seat_classes",
    "city_id",
    "theater_id",
    "movie_id",
    "days_of_week",
    "time_from",
    "time_to",
    "date_from",
    "date_to",
    "occupancy_min",
    "occupancy_max",
    "min_price",
    "max_price",
)


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> PricingRule:
    rule = await session.get(PricingRule, rule_id)
    if rule is None:
        raise PricingRuleNotFound(f"No pricing rule with id {rule_id}.")
    return rule


async def list_rules(
    session: AsyncSession,
    *,
    active: bool | None = None,
    theater_id: uuid.UUID | None = None,
    movie_id: uuid.UUID | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[Sequence[PricingRule], int]:
    """One page of rules by priority (lowest, applied first, first) and age."""
    filters: list[ColumnElement[bool]] = []
    if active is not None:
        filters.append(PricingRule.active.is_(active))
    if theater_id is not None:
        filters.append(PricingRule.theater_id == theater_id)
    if movie_id is not None:
        filters.append(PricingRule.movie_id == movie_id)
    total = await session.scalar(select(func.count()).select_from(PricingRule).where(*filters))
    rules = await session.scalars(
        select(PricingRule)
        .where(*filters)
        .order_by(PricingRule.priority, PricingRule.created_at, PricingRule.id)
        .offset(offset)
        .limit(limit)
    )
    return rules.all(), total or 0


async def create_rule(
    session: AsyncSession, values: Mapping[str, Any], *, actor_id: uuid.UUID | None
) -> PricingRule:
    """Add a rule (`values` by field name; omitted conditions match anything)."""
    unknown = set(values) - set(_RULE_FIELDS)
    if unknown:
        raise ValueError(f"not pricing rule fields: {sorted(unknown)}")
    fields: dict[str, Any] = {name: values.get(name) for name in _RULE_FIELDS}
    fields["active"] = True if fields["active"] is None else fields["active"]
    fields["priority"] = fields["priority"] or 0
    _check_fields(fields)
    await _check_references(session, fields)
    rule = PricingRule(**fields)
    session.add(rule)
    await session.flush()
    audit.record(
        session,
        "pricing_rule.created",
        entity_type="pricing_rule",
        entity_id=rule.id,
        actor_kind=ActorKind.STAFF,
        actor_id=actor_id,
        data=_jsonable(fields),
    )
    after_commit(session, _rules_changed)
    return rule


async def update_rule(
    session: AsyncSession,
    rule_id: uuid.UUID,
    changes: Mapping[str, Any],
    *,
    actor_id: uuid.UUID | None,
) -> PricingRule:
    """Change some fields; the whole rule must still make sense afterwards."""
    unknown = set(changes) - set(_RULE_FIELDS)
    if unknown:
        raise ValueError(f"not pricing rule fields: {sorted(unknown)}")
    rule = await get_rule(session, rule_id)
    before = {name: getattr(rule, name) for name in _RULE_FIELDS}
    merged = {**before, **changes}
    _check_fields(merged)
    await _check_references(session, merged, set(changes))
    changed = {name: value for name, value in changes.items() if before[name] != value}
    for name, value in changed.items():
        setattr(rule, name, value)
    await session.flush()
    if changed:
        audit.record(
            session,
            "pricing_rule.updated",
            entity_type="pricing_rule",
            entity_id=rule.id,
            actor_kind=ActorKind.STAFF,
            actor_id=actor_id,
            data={
                "before": _jsonable({name: before[name] for name in changed}),
                "after": _jsonable(changed),
            },
        )
        after_commit(session, _rules_changed)
    return rule


async def delete_rule(
    session: AsyncSession, rule_id: uuid.UUID, *, actor_id: uuid.UUID | None
) -> None:
    rule = await get_rule(session, rule_id)
    snapshot = {name: getattr(rule, name) for name in _RULE_FIELDS}
    await session.delete(rule)
    await session.flush()
    audit.record(
        session,
        "pricing_rule.deleted",
        entity_type="pricing_rule",
        entity_id=rule_id,
        actor_kind=ActorKind.STAFF,
        actor_id=actor_id,
        data=_jsonable(snapshot),
    )
    after_commit(session, _rules_changed)


def _check_fields(rule: Mapping[str, Any]) -> None:
    """The checks that need several fields (single fields are checked by the schemas)."""
    kind, value = rule["kind"], rule["value"]
    if kind not in KINDS:
        raise InvalidPricingRule("kind", f"must be one of {', '.join(sorted(KINDS))}")
    if kind == RuleKind.MULTIPLIER and not Decimal(0) < value <= MAX_MULTIPLIER:
        raise InvalidPricingRule("value", "a multiplier is greater than 0 and at most 10")
    if kind in (RuleKind.FIXED, RuleKind.SURCHARGE) and value != value.quantize(CENT):
        raise InvalidPricingRule("value", f"a {kind} is money: at most two decimal places")
    if kind == RuleKind.FIXED and value < 0:
        raise InvalidPricingRule("value", "a fixed price is not negative")
    for low, high, field, message in _BOUNDS:
        if rule[low] is not None and rule[high] is not None and rule[low] > rule[high]:
            raise InvalidPricingRule(field, message)
    if rule["time_from"] is not None and rule["time_from"] == rule["time_to"]:
        raise InvalidPricingRule("timeTo", "an empty window: timeTo equals timeFrom")


async def _check_references(
    session: AsyncSession, rule: Mapping[str, Any], changed: set[str] | None = None
) -> None:
    """The city, theater and movie a rule names exist, and its theater is in its city (a rule
    naming both could never match otherwise). With `changed`, only what those fields touch."""

    def touched(*names: str) -> bool:
        return changed is None or any(name in changed for name in names)

    city_id, theater_id, movie_id = rule["city_id"], rule["theater_id"], rule["movie_id"]
    if city_id is not None and touched("city_id") and await session.get(City, city_id) is None:
        raise UnknownCity(f"No city with id {city_id}.", field="cityId")
    if movie_id is not None and touched("movie_id") and await session.get(Movie, movie_id) is None:
        raise UnknownMovie(f"No movie with id {movie_id}.", field="movieId")
    if theater_id is not None and touched("theater_id", "city_id"):
        theater = await session.get(Theater, theater_id)
        if theater is None:
            raise UnknownTheater(f"No theater with id {theater_id}.", field="theaterId")
        if city_id is not None and theater.city_id != city_id:
            raise InvalidPricingRule("theaterId", "the theater is not in the rule's city")


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Decimal | uuid.UUID):
            return str(value)
        if isinstance(value, dt.time):
            return value.strftime("%H:%M")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    return {name: plain(value) for name, value in values.items()}
