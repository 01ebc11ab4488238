"""Pricing rules: how they combine (pure, property-tested), what they do to the prices of
`GET /api/showtimes/{id}/prices` and the seat map, and their administration."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from boxoffice.pricing.models import PricingRule
from boxoffice.pricing.rules import PriceContext, Rule, apply_rules, matches, round_cents
from boxoffice.pricing.service import (
    default_price,
    pricing_basis,
    seat_price,
    showtime_prices,
)
from tests.factories import (
    make_city,
    make_movie,
    make_screen,
    make_showtime,
    make_theater,
    set_seat_state,
)
from tests.helpers import TestUser, make_user
from tests.test_statement_counts import BUDGETS, counted

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]
RULES = "/api/admin/pricing-rules"
TOKYO = "Asia/Tokyo"  # UTC+9 all year: local times below are exact


def _next_monday() -> dt.datetime:
    day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=8)).date()
    day += dt.timedelta(days=(7 - day.weekday()) % 7)
    return dt.datetime.combine(day, dt.time(), dt.UTC)


MONDAY = _next_monday()  # 00:00 UTC of a Monday at least a week ahead


def utc(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """`day` days after MONDAY (0 = Monday) at hour:minute UTC."""
    return MONDAY + dt.timedelta(days=day, hours=hour, minutes=minute)


# ---------------------------------------------------------------------------------------------
# Combination: pure properties

# No per-example deadline: a busy CI machine must not fail a property on time.
PROPERTIES = settings(deadline=None, max_examples=200)

CONTEXT = PriceContext(
    hall_type="STANDARD",
    seat_class="standard",
    local_date=dt.date(2030, 1, 7),  # a Monday
    local_time=dt.time(20, 0),
    city_id=uuid.UUID(int=1),
    theater_id=uuid.UUID(int=2),
    movie_id=uuid.UUID(int=3),
    occupancy=Fraction(1, 2),
)


@st.composite
def kinds_and_values(draw: st.DrawFn) -> tuple[str, Decimal]:
    kind = draw(st.sampled_from(["multiplier", "surcharge", "fixed"]))
    if kind == "multiplier":
        value = draw(st.decimals(Decimal("0.0001"), Decimal(10), places=4))
    elif kind == "surcharge":
        value = draw(st.decimals(Decimal(-50), Decimal(50), places=2))
    else:
        value = draw(st.decimals(Decimal(0), Decimal(300), places=2))
    return kind, value


@st.composite
def bounds(draw: st.DrawFn) -> tuple[Decimal | None, Decimal | None]:
    amounts = st.none() | st.decimals(Decimal(0), Decimal(200), places=2)
    low, high = draw(amounts), draw(amounts)
    if low is not None and high is not None and low > high:
        low, high = high, low
    return low, high


@st.composite
def matching_rules(draw: st.DrawFn) -> Rule:
    """A rule without conditions: it matches every seat."""
    kind, value = draw(kinds_and_values())
    low, high = draw(bounds())
    return Rule(
        id=draw(st.uuids()),
        kind=kind,
        value=value,
        priority=draw(st.integers(-3, 3)),
        min_price=low,
        max_price=high,
    )


rule_lists = st.lists(matching_rules(), max_size=8, unique_by=lambda rule: rule.id)


@st.composite
def default_prices(draw: st.DrawFn) -> Decimal:
    base = draw(st.decimals(Decimal(0), Decimal(500), places=2))
    hall = draw(st.sampled_from(["STANDARD", "VIP", "IMAX", "4DX"]))
    seat = draw(st.sampled_from(["standard", "premium", "vip", "wheelchair", "couple"]))
    return default_price(base, hall, seat)


def exact_reference(default: Decimal, rules: list[Rule]) -> Decimal:
    """The combination computed with enough decimal digits to be exact, rounded once."""
    with localcontext() as context:
        context.prec = 300
        price = default
        floors, ceilings = [], []
        for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
            if rule.kind == "fixed":
                price = rule.value
            elif rule.kind == "multiplier":
                price = price * rule.value
            else:
                price = price + rule.value
            if rule.min_price is not None:
                floors.append(rule.min_price)
            if rule.max_price is not None:
                ceilings.append(rule.max_price)
        if floors:
            price = max(price, max(floors))
        if ceilings:
            price = min(price, min(ceilings))
        return max(price, Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@PROPERTIES
@given(default_prices(), rule_lists)
def test_a_price_is_never_negative_and_always_in_cents(default: Decimal, rules: list[Rule]) -> None:
    price = apply_rules(default, rules, CONTEXT)
    assert price >= 0
    assert price.as_tuple().exponent == -2


@PROPERTIES
@given(default_prices(), rule_lists, st.randoms(use_true_random=False))
def test_the_same_rules_in_any_order_give_the_same_price(
    default: Decimal, rules: list[Rule], random: Any
) -> None:
    shuffled = list(rules)
    random.shuffle(shuffled)
    first = apply_rules(default, rules, CONTEXT)
    assert apply_rules(default, rules, CONTEXT) == first
    assert apply_rules(default, shuffled, CONTEXT) == first
    assert apply_rules(default, tuple(reversed(rules)), CONTEXT) == first


@PROPERTIES
@given(default_prices(), rule_lists)
def test_rounding_happens_once_on_the_exact_result(default: Decimal, rules: list[Rule]) -> None:
    assert apply_rules(default, rules, CONTEXT) == exact_reference(default, rules)


@PROPERTIES
@given(
    default_prices(),
    st.lists(st.decimals(Decimal("0.0001"), Decimal(10), places=4), min_size=2, max_size=6),
)
def test_a_chain_of_multipliers_is_rounded_once(default: Decimal, factors: list[Decimal]) -> None:
    rules = [
        Rule(id=uuid.uuid4(), kind="multiplier", value=factor, priority=index)
        for index, factor in enumerate(factors)
    ]
    assert apply_rules(default, rules, CONTEXT) == exact_reference(default, rules)


@PROPERTIES
@given(default_prices(), rule_lists)
def test_the_tightest_bounds_of_the_matched_rules_hold(default: Decimal, rules: list[Rule]) -> None:
    price = apply_rules(default, rules, CONTEXT)
    floors = [r.min_price for r in rules if r.min_price is not None]
    ceilings = [r.max_price for r in rules if r.max_price is not None]
    if ceilings:
        assert price <= min(ceilings)
    if floors and (not ceilings or max(floors) <= min(ceilings)):
        assert price >= max(floors)


@PROPERTIES
@given(default_prices(), rule_lists, st.lists(matching_rules(), min_size=1, max_size=4))
def test_rules_that_do_not_match_change_nothing(
    default: Decimal, rules: list[Rule], others: list[Rule]
) -> None:
    elsewhere = [
        Rule(**{**vars(rule), "theater_id": uuid.UUID(int=99), "id": uuid.uuid4()})
        for rule in others
    ]
    inactive = [Rule(**{**vars(rule), "active": False, "id": uuid.uuid4()}) for rule in others]
    assert apply_rules(default, [*rules, *elsewhere, *inactive], CONTEXT) == apply_rules(
        default, rules, CONTEXT
    )


def test_no_intermediate_rounding() -> None:
    # 12.35 x 1.5 (VIP) = 18.525; half of it is 9.2625 -> 9.26. Rounding the default first
    # (18.53) would give 9.265 -> 9.27.
    default = default_price(Decimal("12.35"), "VIP", "standard")
    half = Rule(id=uuid.uuid4(), kind="multiplier", value=Decimal("0.5"))
    assert apply_rules(default, [half], CONTEXT) == Decimal("9.26")
    # 10.01 x 0.5 x 2 is 10.01; rounding after the first rule (5.005 -> 5.01) would give 10.02.
    twice = Rule(id=uuid.uuid4(), kind="multiplier", value=Decimal(2), priority=1)
    assert apply_rules(Decimal("10.01"), [half, twice], CONTEXT) == Decimal("10.01")
    assert apply_rules(default, [], CONTEXT) == seat_price(Decimal("12.35"), "VIP", "standard")


def test_priority_decides_the_order_then_the_id() -> None:
    double = Rule(id=uuid.UUID(int=1), kind="multiplier", value=Decimal(2), priority=1)
    plus_five = Rule(id=uuid.UUID(int=2), kind="surcharge", value=Decimal(5), priority=2)
    fixed = Rule(id=uuid.UUID(int=3), kind="fixed", value=Decimal(8), priority=0)
    ten = Decimal("10.00")
    assert apply_rules(ten, [plus_five, double], CONTEXT) == Decimal("25.00")  # (10 x 2) + 5
    first = Rule(**{**vars(plus_five), "priority": 0})
    assert apply_rules(ten, [double, first], CONTEXT) == Decimal("30.00")  # (10 + 5) x 2
    assert apply_rules(ten, [double, plus_five, fixed], CONTEXT) == Decimal("21.00")
    # Same priority: the lower id first.
    same = Rule(**{**vars(plus_five), "priority": 1, "id": uuid.UUID(int=0)})
    assert apply_rules(ten, [double, same], CONTEXT) == Decimal("30.00")


def test_bounds_clamp_and_zero_is_the_floor() -> None:
    ten = Decimal("10.00")
    minus = Rule(id=uuid.uuid4(), kind="surcharge", value=Decimal(-15))
    assert apply_rules(ten, [minus], CONTEXT) == Decimal("0.00")
    floored = Rule(**{**vars(minus), "min_price": Decimal("4.00")})
    assert apply_rules(ten, [floored], CONTEXT) == Decimal("4.00")
    triple = Rule(id=uuid.uuid4(), kind="multiplier", value=Decimal(3), max_price=Decimal(25))
    capped = Rule(id=uuid.uuid4(), kind="surcharge", value=Decimal(0), max_price=Decimal(22))
    assert apply_rules(ten, [triple], CONTEXT) == Decimal("25.00")
    assert apply_rules(ten, [triple, capped], CONTEXT) == Decimal("22.00")  # the lower ceiling
    # Conflicting bounds of two rules: the ceiling wins.
    high_floor = Rule(id=uuid.uuid4(), kind="surcharge", value=Decimal(0), min_price=Decimal(40))
    assert apply_rules(ten, [triple, high_floor], CONTEXT) == Decimal("25.00")


def test_round_half_up_to_cents() -> None:
    assert round_cents(Fraction(18525, 1000)) == Decimal("18.53")
    assert round_cents(Fraction(18524999, 1000000)) == Decimal("18.52")
    assert round_cents(Fraction(1, 3)) == Decimal("0.33")
    assert str(round_cents(Fraction(0))) == "0.00"


def _at(time: str, date: dt.date = dt.date(2030, 1, 7)) -> PriceContext:
    return PriceContext(
        hall_type="VIP",
        seat_class="premium",
        local_date=date,
        local_time=dt.time.fromisoformat(time),
        occupancy=Fraction(3, 4),
    )


def _window(start: str | None, end: str | None, **more: Any) -> Rule:
    return Rule(
        id=uuid.uuid4(),
        kind="surcharge",
        value=Decimal(1),
        time_from=dt.time.fromisoformat(start) if start else None,
        time_to=dt.time.fromisoformat(end) if end else None,
        **more,
    )


@pytest.mark.parametrize(
    ("start", "end", "time", "expected"),
    [
        ("10:00", "17:00", "10:00", True),  # from is inclusive
        ("10:00", "17:00", "16:59", True),
        ("10:00", "17:00", "17:00", False),  # to is exclusive
        ("10:00", "17:00", "09:59", False),
        ("22:00", "02:00", "22:00", True),  # wraps past midnight
        ("22:00", "02:00", "23:59", True),
        ("22:00", "02:00", "00:00", True),
        ("22:00", "02:00", "01:59", True),
        ("22:00", "02:00", "02:00", False),
        ("22:00", "02:00", "12:00", False),
        ("18:00", None, "23:00", True),
        ("18:00", None, "17:00", False),
        (None, "12:00", "11:00", True),
        (None, "12:00", "12:00", False),
    ],
)
def test_time_windows(start: str | None, end: str | None, time: str, expected: bool) -> None:
    assert matches(_window(start, end), _at(time)) is expected


def test_after_midnight_a_late_night_window_counts_for_the_day_before() -> None:
    monday, tuesday = dt.date(2030, 1, 7), dt.date(2030, 1, 8)
    monday_night = _window("22:00", "02:00", days_of_week=frozenset({0}))
    assert matches(monday_night, _at("23:00", monday))
    assert matches(monday_night, _at("01:00", tuesday))  # still Monday night
    assert not matches(monday_night, _at("01:00", monday))  # Sunday night
    assert not matches(monday_night, _at("23:00", tuesday))
    until_monday = _window("22:00", "02:00", date_to=monday)
    assert matches(until_monday, _at("01:00", tuesday))
    assert not matches(_window(None, None, date_to=monday), _at("01:00", tuesday))


def test_conditions_on_the_seat_and_showtime() -> None:
    seat = _at("20:00")
    assert matches(_window(None, None, hall_types=frozenset({"VIP", "IMAX"})), seat)
    assert not matches(_window(None, None, hall_types=frozenset({"IMAX"})), seat)
    assert matches(_window(None, None, seat_classes=frozenset({"premium"})), seat)
    assert not matches(_window(None, None, seat_classes=frozenset({"vip"})), seat)
    assert matches(_window(None, None, days_of_week=frozenset({0, 6})), seat)
    assert not matches(_window(None, None, days_of_week=frozenset({1})), seat)
    assert not matches(_window(None, None, theater_id=uuid.uuid4()), seat)
    # Occupancy bounds are inclusive; an unknown occupancy matches no occupancy rule.
    assert matches(_window(None, None, occupancy_min=Decimal("0.75")), seat)
    assert not matches(_window(None, None, occupancy_min=Decimal("0.7501")), seat)
    assert matches(_window(None, None, occupancy_max=Decimal("0.75")), seat)
    assert not matches(_window(None, None, occupancy_max=Decimal("0.7499")), seat)
    unknown = PriceContext(**{**vars(seat), "occupancy": None})
    assert not matches(_window(None, None, occupancy_max=Decimal(1)), unknown)
    assert matches(_window(None, None), unknown)


# ---------------------------------------------------------------------------------------------
# Helpers over HTTP


async def seed(
    app: FastAPI,
    *starts: dt.datetime,
    timezone: str = TOKYO,
    hall_type: str = "STANDARD",
    rows: int = 2,
    seats_per_row: int = 2,
    classes: dict[str, str] | None = None,
    base_price: str = "10.00",
) -> SimpleNamespace:
    """A city, theater, screen and movie, and a showtime at each of `starts` (UTC)."""
    async with app.state.db.session() as session:
        city = await make_city(session, timezone=timezone)
        theater = await make_theater(session, city)
        screen = await make_screen(
            session,
            theater,
            rows=rows,
            seats_per_row=seats_per_row,
            hall_type=hall_type,
            classes=classes,
        )
        movie = await make_movie(session)
        showtimes = [
            await make_showtime(
                session, screen, movie, start_time=start, base_price=Decimal(base_price)
            )
            for start in starts or (utc(0, 12),)
        ]
        return SimpleNamespace(
            city_id=str(city.id),
            theater_id=str(theater.id),
            screen_id=str(screen.id),
            movie_id=str(movie.id),
            showtimes=[str(showtime.id) for showtime in showtimes],
        )


async def add_rule(client: httpx.AsyncClient, admin: TestUser, **fields: Any) -> dict[str, Any]:
    body = {"name": "rule", "kind": "surcharge", "value": "1.00", **fields}
    response = await client.post(RULES, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def map_prices(client: httpx.AsyncClient, showtime_id: str) -> dict[str, str]:
    """Each seat class's price on the seat map (every seat of a class shows the same)."""
    response = await client.get(f"/api/showtimes/{showtime_id}/seats")
    assert response.status_code == 200, response.text
    by_class: dict[str, set[str]] = {}
    for row in response.json()["rows"]:
        for seat in row["seats"]:
            by_class.setdefault(seat["class"], set()).add(seat["price"])
    assert all(len(prices) == 1 for prices in by_class.values()), by_class
    return {name: prices.pop() for name, prices in by_class.items()}


async def listed_prices(client: httpx.AsyncClient, showtime_id: str) -> dict[str, str]:
    response = await client.get(f"/api/showtimes/{showtime_id}/prices")
    assert response.status_code == 200, response.text
    return {item["seatClass"]: item["price"] for item in response.json()["prices"]}


async def shown(client: httpx.AsyncClient, showtime_id: str) -> dict[str, str]:
    """The prices by seat class, after checking /prices and the seat map agree."""
    listed = await listed_prices(client, showtime_id)
    assert await map_prices(client, showtime_id) == listed
    return listed


async def standard(client: httpx.AsyncClient, showtime_id: str) -> str:
    return (await shown(client, showtime_id))["standard"]


# ---------------------------------------------------------------------------------------------
# Prices of a showtime


async def test_without_rules_the_prices_are_the_default_prices(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue = await seed(
        app, hall_type="VIP", classes={"A1": "premium", "A2": "couple"}, base_price="12.35"
    )
    showtime_id = venue.showtimes[0]
    response = await client.get(f"/api/showtimes/{showtime_id}/prices")
    assert response.status_code == 200
    assert response.json() == {
        "showtimeId": showtime_id,
        "currency": "EUR",
        "prices": [
            {"seatClass": "standard", "defaultPrice": "18.53", "price": "18.53"},
            {"seatClass": "premium", "defaultPrice": "22.23", "price": "22.23"},
            {"seatClass": "couple", "defaultPrice": "37.05", "price": "37.05"},
        ],
    }
    assert await map_prices(client, showtime_id) == {
        "standard": "18.53",
        "premium": "22.23",
        "couple": "37.05",
    }

    missing = await client.get(f"/api/showtimes/{uuid.uuid4()}/prices")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"


async def test_hall_type_condition(app: FastAPI, client: httpx.AsyncClient) -> None:
    plain = await seed(app)
    vip = await seed(app, hall_type="VIP")
    admin = await make_user(app, "admin")
    assert await standard(client, vip.showtimes[0]) == "15.00"
    await add_rule(client, admin, kind="multiplier", value="2", hallTypes=["vip"])
    assert await standard(client, vip.showtimes[0]) == "30.00"
    assert await standard(client, plain.showtimes[0]) == "10.00"
    listed = (await client.get(f"/api/showtimes/{vip.showtimes[0]}/prices")).json()
    assert listed["prices"][0]["defaultPrice"] == "15.00"  # the default stays the default


async def test_seat_class_condition(app: FastAPI, client: httpx.AsyncClient) -> None:
    venue = await seed(app, classes={"A1": "premium", "B2": "wheelchair"})
    admin = await make_user(app, "admin")
    await add_rule(client, admin, value="2.50", seatClasses=["premium", "wheelchair"])
    assert await shown(client, venue.showtimes[0]) == {
        "standard": "10.00",
        "premium": "14.50",
        "wheelchair": "12.50",
    }


@pytest.mark.parametrize("condition", ["cityId", "theaterId", "movieId"])
async def test_city_theater_and_movie_conditions(
    app: FastAPI, client: httpx.AsyncClient, condition: str
) -> None:
    here, there = await seed(app), await seed(app)
    admin = await make_user(app, "admin")
    key = {"cityId": "city_id", "theaterId": "theater_id", "movieId": "movie_id"}[condition]
    await add_rule(client, admin, value="-3.00", **{condition: getattr(here, key)})
    assert await standard(client, here.showtimes[0]) == "7.00"
    assert await standard(client, there.showtimes[0]) == "10.00"


async def test_weekday_is_the_theater_local_one(app: FastAPI, client: httpx.AsyncClient) -> None:
    # Monday 20:00 UTC is Tuesday 05:00 in Tokyo; Monday 10:00 UTC is Monday 19:00 there.
    venue = await seed(app, utc(0, 20), utc(0, 10))
    tuesday_early, monday_evening = venue.showtimes
    admin = await make_user(app, "admin")
    await add_rule(client, admin, value="4.00", daysOfWeek=[1])  # Tuesdays
    assert await standard(client, tuesday_early) == "14.00"
    assert await standard(client, monday_evening) == "10.00"


async def test_matinee_window_in_the_theater_timezone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # 02:00 UTC is 11:00 in Tokyo (a matinee there, not in UTC); 12:00 UTC is 21:00 there.
    venue = await seed(app, utc(0, 2), utc(0, 12))
    matinee, evening = venue.showtimes
    admin = await make_user(app, "admin")
    matinees = {"timeFrom": "10:00", "timeTo": "17:00"}
    await add_rule(client, admin, name="matinee", kind="multiplier", value="0.8", **matinees)
    assert await standard(client, matinee) == "8.00"
    assert await standard(client, evening) == "10.00"


async def test_late_night_window_wraps_past_midnight(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue = await seed(
        app,
        utc(0, 13, 30),  # Monday 22:30 in Tokyo
        utc(0, 16, 30),  # Tuesday 01:30 in Tokyo: still Monday night
        utc(0, 19, 30),  # Tuesday 04:30 in Tokyo: morning
        utc(-1, 16, 30),  # Monday 01:30 in Tokyo: Sunday night
    )
    late, after_midnight, morning, sunday_night = venue.showtimes
    admin = await make_user(app, "admin")
    await add_rule(client, admin, value="-2.00", timeFrom="22:00", timeTo="02:00")
    assert await standard(client, late) == "8.00"
    assert await standard(client, after_midnight) == "8.00"
    assert await standard(client, morning) == "10.00"
    assert await standard(client, sunday_night) == "8.00"

    await add_rule(
        client, admin, value="-1.00", timeFrom="22:00", timeTo="02:00", daysOfWeek=[0]
    )  # Monday nights only, past midnight included
    assert await standard(client, late) == "7.00"
    assert await standard(client, after_midnight) == "7.00"
    assert await standard(client, sunday_night) == "8.00"


async def test_date_range_is_in_local_dates(app: FastAPI, client: httpx.AsyncClient) -> None:
    venue = await seed(
        app,
        utc(0, 20),  # Tuesday 05:00 in Tokyo
        utc(0, 10),  # Monday 19:00 in Tokyo
        utc(1, 16),  # Wednesday 01:00 in Tokyo
    )
    tuesday, monday, wednesday = venue.showtimes
    admin = await make_user(app, "admin")
    local_tuesday = (MONDAY + dt.timedelta(days=1)).date().isoformat()
    await add_rule(client, admin, value="5.00", dateFrom=local_tuesday, dateTo=local_tuesday)
    assert await standard(client, tuesday) == "15.00"
    assert await standard(client, monday) == "10.00"
    assert await standard(client, wednesday) == "10.00"


async def test_occupancy_rules_follow_the_seat_states(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue = await seed(app)  # A1 A2 B1 B2
    showtime_id = venue.showtimes[0]
    admin = await make_user(app, "admin")
    await add_rule(client, admin, name="busy", kind="multiplier", value="1.5", occupancyMin="0.5")
    await add_rule(client, admin, name="quiet", value="-1.00", occupancyMax="0.25")
    soon, past = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=h) for h in (1, -1))

    assert await standard(client, showtime_id) == "9.00"  # 0 of 4
    await set_seat_state(app, showtime_id, "A1", "booked", booking_id=uuid.uuid4())
    assert await standard(client, showtime_id) == "9.00"  # 1 of 4: the bound is inclusive
    await set_seat_state(app, showtime_id, "A2", "held", held_until=soon)
    assert await standard(client, showtime_id) == "15.00"  # 2 of 4
    await set_seat_state(app, showtime_id, "A2", "held", held_until=past)
    assert await standard(client, showtime_id) == "9.00"  # a lapsed hold frees its seat
    await set_seat_state(app, showtime_id, "B1", "blocked")
    assert await standard(client, showtime_id) == "10.00"  # 1 of 3 sellable
    await set_seat_state(app, showtime_id, "B2", "booked", booking_id=uuid.uuid4())
    assert await standard(client, showtime_id) == "15.00"  # 2 of 3


async def test_priority_order_and_bounds(app: FastAPI, client: httpx.AsyncClient) -> None:
    venue = await seed(app)
    showtime_id = venue.showtimes[0]
    admin = await make_user(app, "admin")
    double = await add_rule(client, admin, kind="multiplier", value="2", priority=1)
    plus = await add_rule(client, admin, value="5.00", priority=2)
    assert await standard(client, showtime_id) == "25.00"  # (10 x 2) + 5

    moved = await client.patch(f"{RULES}/{plus['id']}", json={"priority": 0}, headers=admin.headers)
    assert moved.status_code == 200, moved.text
    assert await standard(client, showtime_id) == "30.00"  # (10 + 5) x 2

    await add_rule(client, admin, kind="fixed", value="8.00", priority=-1)
    assert await standard(client, showtime_id) == "26.00"  # (8 + 5) x 2
    capped = await client.patch(
        f"{RULES}/{double['id']}", json={"maxPrice": "20.00"}, headers=admin.headers
    )
    assert capped.status_code == 200, capped.text
    assert await standard(client, showtime_id) == "20.00"
    paused = await client.patch(
        f"{RULES}/{double['id']}", json={"active": False}, headers=admin.headers
    )
    assert paused.status_code == 200
    assert await standard(client, showtime_id) == "13.00"
    gone = await client.delete(f"{RULES}/{plus['id']}", headers=admin.headers)
    assert gone.status_code == 204
    assert await standard(client, showtime_id) == "8.00"


# ---------------------------------------------------------------------------------------------
# Caching: statements, and how soon the seat map sees a change


def _selects(statements: list[str]) -> int:
    return sum(statement.upper().startswith(("SELECT", "WITH")) for statement in statements)


async def test_showtime_prices_reads_one_statement_two_with_occupancy_rules(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue = await seed(app, classes={"A1": "premium"})
    showtime_id = uuid.UUID(venue.showtimes[0])
    admin = await make_user(app, "admin")
    await add_rule(client, admin, value="1.00", theaterId=venue.theater_id)
    await add_rule(client, admin, value="1.00", movieId=str(uuid.UUID(venue.movie_id)))
    for _ in range(3):  # rules of other theaters are not even read
        await add_rule(client, admin, value="9.00", theaterId=(await seed(app)).theater_id)

    async with app.state.db.session(write=False) as session:
        with counted(app) as statements:
            prices = await showtime_prices(session, showtime_id)
    assert _selects(statements) == 1, statements
    assert prices.by_class["premium"].price == Decimal("14.00")
    assert prices.by_class["premium"].default == Decimal("12.00")
    async with app.state.db.session(write=False) as session:
        candidates = (await pricing_basis(session, showtime_id)).rules
    assert len(candidates) == 2  # filtered in SQL: the other theaters' rules are not read

    await add_rule(client, admin, value="1.00", occupancyMin="0")
    async with app.state.db.session(write=False) as session:
        with counted(app) as statements:
            prices = await showtime_prices(session, showtime_id)
    assert _selects(statements) == 2, statements
    assert prices.by_class["standard"].price == Decimal("13.00")


async def test_the_seat_map_with_rules_keeps_its_statement_budget(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue = await seed(app, rows=6, seats_per_row=6, classes={"A1": "premium"})
    showtime_id = venue.showtimes[0]
    admin = await make_user(app, "admin")
    await add_rule(client, admin, kind="multiplier", value="1.5", occupancyMin="0.02")
    await add_rule(client, admin, value="1.00", seatClasses=["premium"], priority=1)
    url = f"/api/showtimes/{showtime_id}/seats"
    assert (await client.get(url)).status_code == 200  # warm-up: layout and rules cached

    budget = BUDGETS[app.state.db.backend]["seat map"]
    with counted(app) as statements:
        assert (await client.get(url)).status_code == 200
    assert len(statements) <= budget, statements
    await set_seat_state(app, showtime_id, "B1", "booked", booking_id=uuid.uuid4())
    with counted(app) as statements:
        prices = await map_prices(client, showtime_id)  # 1 of 36 sold: the surge applies
    assert len(statements) <= budget, statements
    assert prices == {"standard": "15.00", "premium": "19.00"}


async def test_rule_changes_made_here_show_at_once_even_with_a_long_cache(
    app: FastAPI, make_client: MakeClient
) -> None:
    client = await make_client(price_cache_seconds=3600)
    venue = await seed(app)
    showtime_id = venue.showtimes[0]
    admin = await make_user(app, "admin")
    assert await map_prices(client, showtime_id) == {"standard": "10.00"}

    # A rule written past this process (as another server process would): booking's prices
    # see it at once, this process's seat map only once its cached prices expire...
    async with app.state.db.session() as session:
        session.add(PricingRule(name="elsewhere", kind="surcharge", value=Decimal(2)))
    assert await listed_prices(client, showtime_id) == {"standard": "12.00"}
    assert await map_prices(client, showtime_id) == {"standard": "10.00"}
    # ... or a rule changes in this process.
    await add_rule(client, admin, value="1.00", hallTypes=["IMAX"])
    assert await map_prices(client, showtime_id) == {"standard": "12.00"}


async def test_without_the_price_cache_the_map_reads_the_rules_every_time(
    app: FastAPI, make_client: MakeClient
) -> None:
    client = await make_client(price_cache_seconds=0)
    venue = await seed(app)
    showtime_id = venue.showtimes[0]
    assert await map_prices(client, showtime_id) == {"standard": "10.00"}
    async with app.state.db.session() as session:
        session.add(PricingRule(name="elsewhere", kind="multiplier", value=Decimal(3)))
    assert await map_prices(client, showtime_id) == {"standard": "30.00"}


async def test_the_seat_map_follows_a_base_price_change_with_rules(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue = await seed(app)
    showtime_id = venue.showtimes[0]
    admin = await make_user(app, "admin")
    await add_rule(client, admin, kind="multiplier", value="1.1")
    assert await standard(client, showtime_id) == "11.00"
    changed = await client.patch(
        f"/api/admin/showtimes/{showtime_id}", json={"basePrice": "20.00"}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert await standard(client, showtime_id) == "22.00"


# ---------------------------------------------------------------------------------------------
# Administration


async def test_rule_crud_and_audit(app: FastAPI, client: httpx.AsyncClient) -> None:
    venue = await seed(app)
    admin = await make_user(app, "admin")
    created = await client.post(
        RULES,
        json={
            "name": "Late night IMAX",
            "kind": "MULTIPLIER",
            "value": 1.25,
            "priority": 3,
            "hallTypes": ["imax", "IMAX", "4dx"],
            "seatClasses": ["vip", "premium"],
            "theaterId": venue.theater_id,
            "movieId": venue.movie_id,
            "daysOfWeek": [5, 4, 5],
            "timeFrom": "22:00",
            "timeTo": "02:30",
            "dateFrom": "2030-01-01",
            "dateTo": "2030-12-31",
            "occupancyMin": "0.5",
            "occupancyMax": 1,
            "minPrice": "5",
            "maxPrice": "30.00",
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule == {
        "id": rule["id"],
        "name": "Late night IMAX",
        "active": True,
        "priority": 3,
        "kind": "multiplier",
        "value": "1.25",
        "hallTypes": ["4DX", "IMAX"],
        "seatClasses": ["premium", "vip"],
        "cityId": None,
        "theaterId": venue.theater_id,
        "movieId": venue.movie_id,
        "daysOfWeek": [4, 5],
        "timeFrom": "22:00",
        "timeTo": "02:30",
        "dateFrom": "2030-01-01",
        "dateTo": "2030-12-31",
        "occupancyMin": "0.50",
        "occupancyMax": "1.00",
        "minPrice": "5.00",
        "maxPrice": "30.00",
        "createdAt": rule["createdAt"],
        "updatedAt": rule["updatedAt"],
    }
    url = f"{RULES}/{rule['id']}"
    assert (await client.get(url, headers=admin.headers)).json() == rule

    other = await add_rule(client, admin, name="everyone", active=False)
    changed = await client.patch(
        url,
        json={"name": "IMAX nights", "value": "1.125", "hallTypes": None, "timeTo": "03:00"},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "IMAX nights"
    assert changed.json()["value"] == "1.125"
    assert changed.json()["hallTypes"] is None
    assert changed.json()["timeTo"] == "03:00"
    assert changed.json()["seatClasses"] == ["premium", "vip"]  # untouched
    assert (await client.get(url, headers=admin.headers)).json() == changed.json()

    async def listed(**query: Any) -> tuple[list[str], dict[str, Any]]:
        response = await client.get(RULES, params=query, headers=admin.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        return [item["name"] for item in body["rules"]], body["pagination"]

    assert (await listed())[0] == ["everyone", "IMAX nights"]  # by priority
    assert (await listed(active="true"))[0] == ["IMAX nights"]
    assert (await listed(active="false"))[0] == ["everyone"]
    assert (await listed(theaterId=venue.theater_id))[0] == ["IMAX nights"]
    assert (await listed(movieId=venue.movie_id))[0] == ["IMAX nights"]
    assert (await listed(movieId=str(uuid.uuid4())))[0] == []
    names, pagination = await listed(limit=1, page=2)
    assert names == ["IMAX nights"]
    assert pagination == {"page": 2, "limit": 1, "total": 2, "totalPages": 2}

    deleted = await client.delete(url, headers=admin.headers)
    assert deleted.status_code == 204
    for method in ("GET", "DELETE"):
        missing = await client.request(method, url, headers=admin.headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"
    missing = await client.patch(url, json={"name": "x"}, headers=admin.headers)
    assert missing.status_code == 404

    audit = await client.get(
        "/api/admin/audit-log", params={"entityType": "pricing_rule"}, headers=admin.headers
    )
    assert audit.status_code == 200, audit.text
    entries = [
        (entry["action"], entry["entityId"], entry["actorId"]) for entry in audit.json()["entries"]
    ]
    assert sorted(entries) == sorted(
        [
            ("pricing_rule.created", rule["id"], str(admin.id)),
            ("pricing_rule.created", other["id"], str(admin.id)),
            ("pricing_rule.updated", rule["id"], str(admin.id)),
            ("pricing_rule.deleted", rule["id"], str(admin.id)),
        ]
    )
    update = next(e for e in audit.json()["entries"] if e["action"] == "pricing_rule.updated")
    assert update["data"]["before"]["value"] == "1.2500"
    assert update["data"]["after"]["value"] == "1.125"


INVALID_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"kind": "percent"}, "kind"),
    ({"kind": "multiplier", "value": "0"}, "value"),
    ({"kind": "multiplier", "value": "-1"}, "value"),
    ({"kind": "multiplier", "value": "10.01"}, "value"),
    ({"kind": "multiplier", "value": "1.00001"}, "value"),
    ({"kind": "fixed", "value": "-1.00"}, "value"),
    ({"kind": "fixed", "value": "1.005"}, "value"),
    ({"kind": "surcharge", "value": "1.234"}, "value"),
    ({"value": "NaN"}, "value"),
    ({"value": "10000"}, "value"),
    ({"hallTypes": ["GIANT"]}, "hallTypes.0"),
    ({"seatClasses": ["sofa"]}, "seatClasses.0"),
    ({"daysOfWeek": [7]}, "daysOfWeek.0"),
    ({"daysOfWeek": [-1]}, "daysOfWeek.0"),
    ({"daysOfWeek": ["1"]}, "daysOfWeek.0"),
    ({"timeFrom": "25:00"}, "timeFrom"),
    ({"timeFrom": "7:00"}, "timeFrom"),
    ({"timeTo": "12:00:00"}, "timeTo"),
    ({"timeTo": 1200}, "timeTo"),
    ({"timeFrom": "10:00", "timeTo": "10:00"}, "timeTo"),
    ({"dateFrom": "2030-02-01", "dateTo": "2030-01-31"}, "dateTo"),
    ({"dateFrom": "2030-02-30"}, "dateFrom"),
    ({"occupancyMin": "1.5"}, "occupancyMin"),
    ({"occupancyMax": "-0.1"}, "occupancyMax"),
    ({"occupancyMin": "0.8", "occupancyMax": "0.5"}, "occupancyMax"),
    ({"minPrice": "20.00", "maxPrice": "10.00"}, "maxPrice"),
    ({"minPrice": "-1.00"}, "minPrice"),
    ({"maxPrice": "1.001"}, "maxPrice"),
    ({"priority": "high"}, "priority"),
    ({"name": ""}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("change", "field"), INVALID_BODIES)
async def test_bad_rules_are_refused(
    app: FastAPI, client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    admin = await make_user(app, "admin")
    body = {"name": "rule", "kind": "surcharge", "value": "1.00", **change}
    response = await client.post(RULES, json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] in {"validation_error", "invalid_pricing_rule"}
    assert field in [error["field"] for error in problem["errors"]], problem


async def test_a_patch_is_judged_with_the_fields_it_keeps(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue = await seed(app)
    admin = await make_user(app, "admin")
    rule = await add_rule(client, admin, value="15.00", dateFrom="2030-06-01", minPrice="1.00")
    url = f"{RULES}/{rule['id']}"

    async def refused(change: dict[str, Any], code: str) -> None:
        response = await client.patch(url, json=change, headers=admin.headers)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == code

    await refused({"dateTo": "2030-05-31"}, "invalid_pricing_rule")
    await refused({"kind": "multiplier"}, "invalid_pricing_rule")  # 15 is too big a factor
    await refused({"maxPrice": "0.50"}, "invalid_pricing_rule")
    await refused({"name": None}, "validation_error")
    await refused({"value": None}, "validation_error")
    await refused({}, "empty_update")
    await refused({"theaterId": str(uuid.uuid4())}, "unknown_theater")
    await refused({"cityId": str(uuid.uuid4())}, "unknown_city")
    await refused({"movieId": str(uuid.uuid4())}, "unknown_movie")
    elsewhere = await seed(app)
    await refused(
        {"cityId": elsewhere.city_id, "theaterId": venue.theater_id}, "invalid_pricing_rule"
    )
    change = {"kind": "multiplier", "value": "1.5", "dateTo": "2030-06-01"}
    fine = await client.patch(url, json=change, headers=admin.headers)
    assert fine.status_code == 200, fine.text
    assert (fine.json()["kind"], fine.json()["value"]) == ("multiplier", "1.50")
    cleared = await client.patch(url, json={"dateFrom": None}, headers=admin.headers)
    assert cleared.status_code == 200
    assert cleared.json()["dateFrom"] is None


async def test_rules_must_name_existing_places_and_movies(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue, elsewhere = await seed(app), await seed(app)
    admin = await make_user(app, "admin")
    for field, code in (
        ("cityId", "unknown_city"),
        ("theaterId", "unknown_theater"),
        ("movieId", "unknown_movie"),
    ):
        response = await client.post(
            RULES,
            json={"name": "r", "kind": "fixed", "value": "5.00", field: str(uuid.uuid4())},
            headers=admin.headers,
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == code
    mismatch = await client.post(
        RULES,
        json={
            "name": "r",
            "kind": "fixed",
            "value": "5.00",
            "cityId": elsewhere.city_id,
            "theaterId": venue.theater_id,
        },
        headers=admin.headers,
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["errors"][0]["field"] == "theaterId"
    await add_rule(client, admin, cityId=venue.city_id, theaterId=venue.theater_id)


@pytest.mark.parametrize("role", ["customer", "cashier", "operator"])
async def test_only_pricing_managers_may_manage_rules(
    app: FastAPI, client: httpx.AsyncClient, role: str
) -> None:
    admin, user = await make_user(app, "admin"), await make_user(app, role)
    rule = await add_rule(client, admin)
    url = f"{RULES}/{rule['id']}"
    body = {"name": "r", "kind": "fixed", "value": "5.00"}
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", RULES, body),
        ("GET", RULES, None),
        ("GET", url, None),
        ("PATCH", url, {"name": "x"}),
        ("DELETE", url, None),
    ]
    for method, target, payload in calls:
        denied = await client.request(method, target, json=payload, headers=user.headers)
        assert denied.status_code == 403, (method, target, denied.text)
        assert denied.json()["code"] == "forbidden"
        anonymous = await client.request(method, target, json=payload)
        assert anonymous.status_code == 401
    listed = await client.get(RULES, headers=admin.headers)
    assert [item["id"] for item in listed.json()["rules"]] == [rule["id"]]  # nothing changed
    assert listed.json()["rules"][0]["name"] == "rule"
