"""The settlement arithmetic, pure (no database): weeks, gross, net of VAT, the distributor's
share and the minimum-guarantee top-up.

Rules (docs/architecture.md, "Distribution"):

- Weeks start on the contract's weekday. Week 1 is the week holding the start date, the last
  the week holding the end date; week n beyond the terms list pays the list's last percentage.
- A booking's ticket revenue is what was paid for its tickets: final x (total - snacks) / total
  (discounts are split in proportion to price, as seat refunds do). A refund's ticket part is
  its amount times the same ratio. A cancellation fee kept stays revenue.
- A refund reduces the gross of its show's week when it is made before that week ends (local
  date of the refund in the theater's timezone); a later refund is an adjustment of the week in
  which it was made (the contract's last week if made after it): settled weeks never change.
- Net = gross - the VAT it contains (gross x rate / (1 + rate), per theater).
- Share = percentage x net; with a house allowance, the larger of that and
  (net - allowance) x 90% (the 90/10 split).
- Amounts are exact decimals until the end, where each figure is rounded once to cents
  (half-up). The minimum guarantee tops up the last week: top-up = guarantee - the sum of all
  weeks' (rounded) shares, if positive. Amount due = share + top-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0")
HUNDRED = Decimal("100")
NINETY_PERCENT = Decimal("0.9")
WEEK = dt.timedelta(days=7)


def to_cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def week_start_for(day: dt.date, weekday: int) -> dt.date:
    """The start of the week (starting on `weekday`, 0 = Monday) that holds `day`."""
    return day - dt.timedelta(days=(day.weekday() - weekday) % 7)


def contract_weeks(start: dt.date, end: dt.date, weekday: int) -> list[dt.date]:
    """The start dates of a contract's weeks, first to last."""
    first, last = week_start_for(start, weekday), week_start_for(end, weekday)
    return [first + WEEK * n for n in range((last - first).days // 7 + 1)]


def percent_for_week(terms: Sequence[Decimal], number: int) -> Decimal:
    """Week `number` (1-based) pays terms[number - 1], or the last term beyond the list."""
    return terms[min(number, len(terms)) - 1]


def ticket_ratio(total: Decimal, snacks: Decimal) -> Decimal:
    """The tickets' part of a booking's money: (total - snacks) / total."""
    return (total - snacks) / total if total else ZERO


def net_of_vat(gross: Decimal, vat_rate: Decimal) -> Decimal:
    """Gross less the VAT it contains."""
    return gross - gross * vat_rate / (1 + vat_rate)


@dataclass(frozen=True)
class Movement:
    """Ticket money for one week: + a booking's tickets, - a refund's ticket part."""

    week_start: dt.date
    amount: Decimal
    vat_rate: Decimal


def attribute_refund(
    show_week: dt.date,
    refund_day: dt.date,
    weekday: int,
    weeks: Sequence[dt.date],
) -> dt.date:
    """The week a refund counts in: its show's week if made before that week ended, else the
    week in which it was made (at most the contract's last week)."""
    if refund_day < show_week + WEEK:
        return show_week
    return min(week_start_for(refund_day, weekday), weeks[-1])


@dataclass(frozen=True)
class WeekFigures:
    number: int
    week_start: dt.date
    week_end: dt.date  # the last day of the week
    gross: Decimal
    net: Decimal
    share_percent: Decimal
    distributor_share: Decimal
    guarantee_topup: Decimal
    amount_due: Decimal


def settle(
    weeks: Sequence[dt.date],
    terms: Sequence[Decimal],
    movements: Iterable[Movement],
    *,
    house_allowance: Decimal | None = None,
    minimum_guarantee: Decimal | None = None,
) -> list[WeekFigures]:
    """Every week of a contract, settled."""
    gross = dict.fromkeys(weeks, ZERO)
    net = dict.fromkeys(weeks, ZERO)
    for movement in movements:
        if movement.week_start in gross:
            gross[movement.week_start] += movement.amount
            net[movement.week_start] += net_of_vat(movement.amount, movement.vat_rate)
    shares: list[tuple[Decimal, Decimal]] = []
    for number, week in enumerate(weeks, start=1):
        percent = percent_for_week(terms, number)
        share = percent / HUNDRED * net[week]
        if house_allowance is not None:
            share = max(share, (net[week] - house_allowance) * NINETY_PERCENT)
        shares.append((percent, to_cents(share)))
    total_share = sum((share for _, share in shares), ZERO)
    topup = ZERO
    if minimum_guarantee is not None and minimum_guarantee > total_share:
        topup = minimum_guarantee - total_share
    figures = []
    for number, (week, (percent, share)) in enumerate(zip(weeks, shares, strict=True), start=1):
        week_topup = to_cents(topup) if number == len(weeks) else ZERO.quantize(CENT)
        figures.append(
            WeekFigures(
                number=number,
                week_start=week,
                week_end=week + WEEK - dt.timedelta(days=1),
                gross=to_cents(gross[week]),
                net=to_cents(net[week]),
                share_percent=percent,
                distributor_share=share,
                guarantee_topup=week_topup,
                amount_due=share + week_topup,
            )
        )
    return figures
