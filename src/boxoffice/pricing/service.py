"""Seat prices: the showtime's base price scaled by the hall type and the seat class.

The factors are fixed here for now; admin-managed pricing rules replace them later.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

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


def seat_price(base_price: Decimal, hall_type: str, seat_class: str) -> Decimal:
    """base * hall factor * class factor, rounded once (half up) to cents.

    Rounding only at the end keeps e.g. 10.01 * 1.4 * 1.2 at 16.82, not 16.81.
    """
    try:
        hall = HALL_TYPE_FACTORS[hall_type]
        seat = SEAT_CLASS_FACTORS[seat_class]
    except KeyError as exc:  # venues validate both; an unknown one is a data bug
        raise ValueError(f"no price factor for {exc.args[0]!r}") from None
    return (base_price * hall * seat).quantize(CENT, rounding=ROUND_HALF_UP)
