"""How pricing rules turn a seat's default price into its price: pure functions, no database.

A seat's **default price** is the showtime's base price x the hall-type factor x the seat-class
factor (`pricing.service.default_price`, not rounded). A rule **matches** a seat of a showtime
when it is active and every condition it sets holds (an unset condition matches anything):

* `hall_types`, `seat_classes`: the hall's type, the seat's class is one of them;
* `city_id`, `theater_id`, `movie_id`: the showtime's;
* `time_from`/`time_to`: the showtime's local start time (theater timezone) is in
  [time_from, time_to). When `time_to` is before `time_from` the window wraps past midnight
  (a late-night window 22:00-02:00); a start after midnight inside such a window belongs to
  the night it began, so `days_of_week` and the dates are checked against the day before;
* `days_of_week` (0 = Monday .. 6 = Sunday), `date_from`..`date_to` (both inclusive): the
  showtime's local date (see the late-night exception above);
* `occupancy_min`..`occupancy_max` (both inclusive, 0..1): sold and held seats over sellable
  (not blocked) seats. Without a known occupancy such a rule does not match.

**Combination.** The matching rules apply in order of (priority, id), lowest first, to a
running price that starts at the default price: FIXED sets it to the value, MULTIPLIER
multiplies it by the value, SURCHARGE adds the value (negative: a discount). The result is
then clamped to the tightest bounds among the matching rules — the highest `min_price`, then
the lowest `max_price` (so where two rules' bounds conflict, the ceiling wins) — and to zero
from below. The arithmetic is exact (fractions) and the price is rounded **once**, at the end,
half up to cents: no rule ever sees a rounded intermediate.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from boxoffice.pricing.models import RuleKind

KINDS = frozenset({RuleKind.MULTIPLIER, RuleKind.SURCHARGE, RuleKind.FIXED})
_ONE_DAY = dt.timedelta(days=1)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Rule:
    """A pricing rule as evaluation sees it (a snapshot of `models.PricingRule`)."""

    id: uuid.UUID
    kind: str
    value: Decimal
    priority: int = 0
    active: bool = True
    hall_types: frozenset[str] | None = None
    seat_classes: frozenset[str] | None = None
    city_id: uuid.UUID | None = None
    theater_id: uuid.UUID | None = None
    movie_id: uuid.UUID | None = None
    days_of_week: frozenset[int] | None = None
    time_from: dt.time | None = None
    time_to: dt.time | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    occupancy_min: Decimal | None = None
    occupancy_max: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None

    @property
    def uses_occupancy(self) -> bool:
        return self.occupancy_min is not None or self.occupancy_max is not None


@dataclass(frozen=True)
class PriceContext:
    """What a seat's price may depend on. Dates and times are the theater's local ones."""

    hall_type: str
    seat_class: str
    local_date: dt.date
    local_time: dt.time
    city_id: uuid.UUID | None = None
    theater_id: uuid.UUID | None = None
    movie_id: uuid.UUID | None = None
    occupancy: Fraction | None = None  # None: unknown (occupancy rules do not match)

    @property
    def weekday(self) -> int:
        return self.local_date.weekday()


def occupancy(occupied: int, sellable: int) -> Fraction:
    """Sold and held seats over sellable ones; a showtime with nothing to sell counts as full."""
    return Fraction(occupied, sellable) if sellable > 0 else Fraction(1)


def _day_in_window(rule: Rule, context: PriceContext) -> dt.date | None:
    """The day the showtime counts for if its start is inside the rule's time window, else
    None: the local date, or the day before for the after-midnight part of a wrapping window."""
    start, end, time = rule.time_from, rule.time_to, context.local_time
    if start is not None and end is not None and end < start:  # wraps past midnight
        if time >= start:
            return context.local_date
        if time < end:
            return context.local_date - _ONE_DAY
        return None
    if start is not None and time < start:
        return None
    if end is not None and time >= end:
        return None
    return context.local_date


def matches(rule: Rule, context: PriceContext) -> bool:
    """Whether an active rule applies to the seat and showtime `context` describes."""
    if not rule.active:
        return False
    if rule.hall_types is not None and context.hall_type not in rule.hall_types:
        return False
    if rule.seat_classes is not None and context.seat_class not in rule.seat_classes:
        return False
    for wanted, actual in (
        (rule.city_id, context.city_id),
        (rule.theater_id, context.theater_id),
        (rule.movie_id, context.movie_id),
    ):
        if wanted is not None and wanted != actual:
            return False
    day = _day_in_window(rule, context)
    if day is None:
        return False
    if rule.days_of_week is not None and day.weekday() not in rule.days_of_week:
        return False
    if rule.date_from is not None and day < rule.date_from:
        return False
    if rule.date_to is not None and day > rule.date_to:
        return False
    if rule.uses_occupancy:
        if context.occupancy is None:
            return False
        if rule.occupancy_min is not None and context.occupancy < Fraction(rule.occupancy_min):
            return False
        if rule.occupancy_max is not None and context.occupancy > Fraction(rule.occupancy_max):
            return False
    return True


def round_cents(amount: Fraction) -> Decimal:
    """A non-negative exact amount rounded half up to cents."""
    hundredths = amount * 100
    cents, rest = divmod(hundredths.numerator, hundredths.denominator)
    if 2 * rest >= hundredths.denominator:
        cents += 1
    return Decimal(cents).scaleb(-2).quantize(CENT)


def apply_rules(default_price: Decimal, rules: Iterable[Rule], context: PriceContext) -> Decimal:
    """The seat's price: the matching rules applied to `default_price` as the module
    docstring describes, rounded once to cents."""
    matched = sorted(
        (rule for rule in rules if matches(rule, context)), key=lambda r: (r.priority, r.id)
    )
    price = Fraction(default_price)
    floor: Decimal | None = None
    ceiling: Decimal | None = None
    for rule in matched:
        value = Fraction(rule.value)
        if rule.kind == RuleKind.FIXED:
            price = value
        elif rule.kind == RuleKind.MULTIPLIER:
            price *= value
        elif rule.kind == RuleKind.SURCHARGE:
            price += value
        else:  # the service refuses other kinds; one in the table is a data bug
            raise ValueError(f"unknown pricing rule kind {rule.kind!r}")
        if rule.min_price is not None:
            floor = rule.min_price if floor is None else max(floor, rule.min_price)
        if rule.max_price is not None:
            ceiling = rule.max_price if ceiling is None else min(ceiling, rule.max_price)
    if floor is not None:
        price = max(price, Fraction(floor))
    if ceiling is not None:
        price = min(price, Fraction(ceiling))
    return round_cents(max(price, Fraction(0)))
