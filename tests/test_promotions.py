"""Promo codes: admin CRUD and validation, every refusal, discount arithmetic, redemptions
racing for the last uses, giving uses back once, and the rate-limited customer lookup."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from boxoffice.app import create_app
from boxoffice.audit.models import AuditEntry
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database, create_engine
from boxoffice.promotions.exceptions import PromoInvalid
from boxoffice.promotions.models import PromoCode, PromoRedemption
from boxoffice.promotions.service import (
    PromoContext,
    check,
    compute_discount,
    context_for,
    redeem,
    release,
)
from tests.booking_helpers import seed_showtime
from tests.conftest import Backend, make_settings
from tests.factories import (
    make_city,
    make_confirmed_booking,
    make_movie,
    make_pending_booking,
    make_screen,
    make_showtime,
    make_theater,
    row_letter,
)
from tests.helpers import TestUser as AppUser  # aliased: pytest would collect "Test*"
from tests.helpers import make_user

ADMIN = "/api/admin/promocodes"
CHECK = "/api/promocodes/check"
MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]
RACERS = 16


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> AppUser:
    # Depends on `client` so the user is created after the tables were emptied.
    return await make_user(app, "admin")


@pytest.fixture
async def shop(app: FastAPI, client: httpx.AsyncClient) -> SimpleNamespace:
    """A showtime on sale (Europe/Berlin, EUR), a customer, and the showtime's free seats."""
    shop = await seed_showtime(app)
    shop.customer = await make_user(app)
    shop.seats = iter(f"{row_letter(r)}{n}" for r in range(5) for n in range(1, 9))
    return shop


@pytest.fixture
async def racing_db(backend: Backend) -> AsyncIterator[Database]:
    """A database handle with a connection for every racer, so they really run at once on
    PostgreSQL and MariaDB (SQLite still takes one writer at a time)."""
    db = Database(create_engine(backend.url, pool_size=RACERS))
    yield db
    await db.dispose()


@pytest.fixture
async def fresh_limits(app: FastAPI) -> None:
    """The shared app's lookups from earlier tests no longer count against this test."""
    limiter = getattr(app.state, "rate_limiter", None)
    if limiter is not None:
        await limiter.storage.reset()


async def add_code(
    app: FastAPI, code: str = "SAVE10", kind: str = "percentage", value: str = "10", **fields: Any
) -> uuid.UUID:
    """A promo code row, straight through the model."""
    async with app.state.db.session() as session:
        promo = PromoCode(code=code, kind=kind, value=Decimal(value), uses=0, **fields)
        session.add(promo)
        await session.flush()
        return promo.id


async def bookings(
    app: FastAPI, shop: SimpleNamespace, user_id: uuid.UUID, count: int = 1
) -> list[uuid.UUID]:
    """Pending bookings of one seat each (a redemption belongs to a booking)."""
    ids = []
    async with app.state.db.session() as session:
        for _ in range(count):
            booking = await make_pending_booking(
                session, user_id, uuid.UUID(shop.showtime_id), [next(shop.seats)], Decimal("20")
            )
            ids.append(booking.id)
    return ids


async def order(
    app: FastAPI, shop: SimpleNamespace, user_id: uuid.UUID | None = None, **overrides: Any
) -> PromoContext:
    """The context of a 20.00 EUR order for the shop's showtime, through `context_for`."""
    async with app.state.db.session(write=False) as session:
        ctx = await context_for(
            session,
            user_id=user_id or shop.customer.id,
            showtime_id=uuid.UUID(shop.showtime_id),
            subtotal=Decimal("20.00"),
        )
    return dataclasses.replace(ctx, **overrides)


async def try_redeem(
    db: Database, code: str, booking_id: uuid.UUID, ctx: PromoContext
) -> Decimal | str:
    """Redeem in a transaction of its own: the discount, or the refusal's reason."""
    try:
        async with db.session() as session:
            return await redeem(session, code, booking_id, ctx)
    except PromoInvalid as exc:
        return exc.reason.value


async def try_check(app: FastAPI, code: str, ctx: PromoContext) -> Decimal | str:
    try:
        async with app.state.db.session() as session:
            return await check(session, code, ctx)
    except PromoInvalid as exc:
        return exc.reason.value


async def code_state(app: FastAPI, promo_id: uuid.UUID) -> tuple[int, list[PromoRedemption]]:
    """The code's live uses and its redemptions."""
    async with app.state.db.session(write=False) as session:
        uses = await session.scalar(select(PromoCode.uses).where(PromoCode.id == promo_id))
        rows = await session.scalars(
            select(PromoRedemption).where(PromoRedemption.promo_code_id == promo_id)
        )
        return int(uses or 0), list(rows.all())


async def audit_actions(app: FastAPI, entity_id: str) -> list[str]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.entity_type == "promo_code", AuditEntry.entity_id == entity_id)
            .order_by(AuditEntry.created_at)
        )
        return list(rows.all())


# ---------------------------------------------------------------------------------------------
# Admin CRUD


async def test_admin_creates_reads_lists_updates_and_deletes_a_code(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, shop: SimpleNamespace
) -> None:
    body = {
        "code": "summer-25",
        "description": "Summer sale",
        "kind": "percentage",
        "value": "25",
        "minOrder": "15.00",
        "maxDiscount": "8.00",
        "validFrom": "2026-06-01T00:00:00+02:00",
        "validUntil": "2026-09-01T00:00:00+02:00",
        "totalLimit": 100,
        "perCustomerLimit": 2,
        "movieIds": [shop.movie_id, shop.movie_id],
        "theaterIds": [shop.theater_id],
        "daysOfWeek": [4, 0, 4],
        "firstBookingOnly": False,
    }
    created = await client.post(ADMIN, json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    promo = created.json()
    assert promo == {
        "id": promo["id"],
        "code": "SUMMER-25",  # stored upper-case
        "description": "Summer sale",
        "kind": "percentage",
        "value": "25.00",
        "currency": None,
        "minOrder": "15.00",
        "maxDiscount": "8.00",
        "validFrom": "2026-05-31T22:00:00Z",
        "validUntil": "2026-08-31T22:00:00Z",
        "totalLimit": 100,
        "perCustomerLimit": 2,
        "uses": 0,
        "remaining": 100,
        "movieIds": [shop.movie_id],  # duplicates dropped
        "theaterIds": [shop.theater_id],
        "daysOfWeek": [0, 4],
        "firstBookingOnly": False,
        "active": True,
        "createdAt": promo["createdAt"],
        "updatedAt": promo["updatedAt"],
    }
    url = f"{ADMIN}/{promo['id']}"
    assert (await client.get(url, headers=admin.headers)).json() == promo

    await add_code(app, "WINTER", active=False, description="Cold nights")
    listed = await client.get(ADMIN, headers=admin.headers)
    assert listed.status_code == 200
    assert [p["code"] for p in listed.json()["promoCodes"]] == ["WINTER", "SUMMER-25"]
    assert listed.json()["pagination"] == {"page": 1, "limit": 20, "total": 2, "totalPages": 1}
    for params, expected in (
        ({"active": "true"}, ["SUMMER-25"]),
        ({"active": "false"}, ["WINTER"]),
        ({"search": "mer-2"}, ["SUMMER-25"]),
        ({"search": "cold"}, ["WINTER"]),  # the description, case-insensitive
        ({"search": "%"}, []),  # matched literally
        ({"limit": 1, "page": 2}, ["SUMMER-25"]),
    ):
        answer = await client.get(ADMIN, params=params, headers=admin.headers)
        assert [p["code"] for p in answer.json()["promoCodes"]] == expected, params

    patched = await client.patch(
        url, json={"value": "30", "movieIds": None, "code": "Summer-30"}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() | {"updatedAt": None} == promo | {
        "code": "SUMMER-30",
        "value": "30.00",
        "movieIds": None,
        "updatedAt": None,
    }

    deleted = await client.delete(url, headers=admin.headers)
    assert deleted.status_code == 204
    assert (await client.get(url, headers=admin.headers)).status_code == 404
    assert (await client.delete(url, headers=admin.headers)).status_code == 404
    assert await audit_actions(app, promo["id"]) == [
        "promo_code.created",
        "promo_code.updated",
        "promo_code.deleted",
    ]


async def test_deleting_a_redeemed_code_deactivates_it(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, shop: SimpleNamespace
) -> None:
    promo_id = await add_code(app)
    (booking_id,) = await bookings(app, shop, shop.customer.id)
    assert await try_redeem(app.state.db, "SAVE10", booking_id, await order(app, shop)) == Decimal(
        "2.00"
    )

    url = f"{ADMIN}/{promo_id}"
    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    kept = await client.get(url, headers=admin.headers)
    assert kept.status_code == 200
    assert kept.json()["active"] is False
    assert kept.json()["uses"] == 1
    assert len((await code_state(app, promo_id))[1]) == 1  # the booking's history is kept
    assert await audit_actions(app, str(promo_id)) == ["promo_code.deactivated"]
    # Deactivated, it no longer applies.
    (other,) = await bookings(app, shop, shop.customer.id)
    assert await try_redeem(app.state.db, "save10", other, await order(app, shop)) == "inactive"


async def test_codes_are_unique_whatever_their_case(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser
) -> None:
    await add_code(app, "SAVE10")
    taken = await client.post(
        ADMIN, json={"code": "save10", "kind": "percentage", "value": 5}, headers=admin.headers
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "promo_code_taken"
    other = await client.post(
        ADMIN, json={"code": "other", "kind": "percentage", "value": 5}, headers=admin.headers
    )
    renamed = await client.patch(
        f"{ADMIN}/{other.json()['id']}", json={"code": "Save10"}, headers=admin.headers
    )
    assert renamed.status_code == 409
    assert renamed.json()["code"] == "promo_code_taken"


VALID = {"code": "GOOD", "kind": "percentage", "value": "10"}


@pytest.mark.parametrize(
    "fields",
    [
        {"code": "AB"},
        {"code": "A" * 41},
        {"code": "SAVE 10"},
        {"code": "SAVE!"},
        {"code": "\u017fave10"},  # upper-cases to ASCII "SAVE10": not a second spelling
        {"code": "ÄRGER"},
        {"kind": "bogo"},
        {"value": "0"},
        {"value": "-5"},
        {"value": "100.01"},
        {"value": "12.345"},
        {"value": "NaN"},
        {"kind": "fixed", "value": "5"},  # no currency
        {"kind": "fixed", "value": "5", "currency": "EURO"},
        {"kind": "fixed", "value": "5", "currency": "E1R"},
        {"kind": "fixed", "value": "10000", "currency": "EUR"},
        {"minOrder": "-1"},
        {"maxDiscount": "0"},
        {"totalLimit": 0},
        {"totalLimit": "5"},
        {"perCustomerLimit": 0},
        {"validFrom": "2026-06-02T00:00:00+00:00", "validUntil": "2026-06-01T00:00:00+00:00"},
        {"validFrom": "2026-06-01T00:00:00+00:00", "validUntil": "2026-06-01T00:00:00+00:00"},
        {"validFrom": "2026-06-01T00:00:00"},  # no offset
        {"daysOfWeek": [7]},
        {"daysOfWeek": [-1]},
        {"daysOfWeek": []},
        {"movieIds": []},
        {"movieIds": ["not-a-uuid"]},
        {"description": "two\x00lines"},
        {"uses": 5},  # not writable
    ],
)
async def test_invalid_codes_are_refused(
    client: httpx.AsyncClient, admin: AppUser, fields: dict[str, Any]
) -> None:
    response = await client.post(ADMIN, json=VALID | fields, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert (await client.get(ADMIN, headers=admin.headers)).json()["promoCodes"] == []


async def test_valid_edge_values_are_accepted(client: httpx.AsyncClient, admin: AppUser) -> None:
    for body in (
        {"code": "ABC", "kind": "percentage", "value": "100"},
        {"code": "A" * 40, "kind": "percentage", "value": "0.01", "currency": "eur"},
        {"code": "FIX_1-2", "kind": "fixed", "value": "9999.99", "currency": "usd"},
        {"code": "DAYS", "kind": "percentage", "value": 5, "daysOfWeek": [0, 6]},
        {"code": "LIMITS", "kind": "percentage", "value": 5, "totalLimit": 1, "minOrder": 0},
    ):
        response = await client.post(ADMIN, json=body, headers=admin.headers)
        assert response.status_code == 201, (body, response.text)
    currencies = {
        p["code"]: p["currency"]
        for p in (await client.get(ADMIN, headers=admin.headers)).json()["promoCodes"]
    }
    assert currencies["FIX_1-2"] == "USD"
    assert currencies["A" * 40] == "EUR"


async def test_unknown_movies_and_theaters_are_refused(
    client: httpx.AsyncClient, admin: AppUser, shop: SimpleNamespace
) -> None:
    ghost = str(uuid.uuid4())
    response = await client.post(
        ADMIN, json=VALID | {"movieIds": [shop.movie_id, ghost]}, headers=admin.headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_references"
    assert response.json()["movieIds"] == [ghost]
    created = await client.post(ADMIN, json=VALID, headers=admin.headers)
    patched = await client.patch(
        f"{ADMIN}/{created.json()['id']}", json={"theaterIds": [ghost]}, headers=admin.headers
    )
    assert patched.status_code == 422
    assert patched.json()["theaterIds"] == [ghost]


@pytest.mark.parametrize(
    ("created", "patch"),
    [
        ({}, {"kind": "fixed"}),  # a fixed amount without a currency
        ({"kind": "fixed", "value": "150", "currency": "EUR"}, {"kind": "percentage"}),
        ({"validFrom": "2026-06-01T00:00:00+00:00"}, {"validUntil": "2026-05-01T00:00:00+00:00"}),
        ({"validUntil": "2026-06-01T00:00:00+00:00"}, {"validFrom": "2026-07-01T00:00:00+00:00"}),
        ({}, {"code": None}),
        ({}, {"value": None}),
        ({}, {"active": None}),
        ({}, {}),
        ({}, {"totalLimit": 0}),
        ({}, {"id": str(uuid.uuid4())}),
    ],
)
async def test_patches_that_break_the_rules_are_refused(
    client: httpx.AsyncClient, admin: AppUser, created: dict[str, Any], patch: dict[str, Any]
) -> None:
    made = await client.post(ADMIN, json=VALID | created, headers=admin.headers)
    assert made.status_code == 201, made.text
    url = f"{ADMIN}/{made.json()['id']}"
    response = await client.patch(url, json=patch, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert (await client.get(url, headers=admin.headers)).json() == made.json()


async def test_a_patch_is_judged_with_the_stored_fields(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    made = await client.post(ADMIN, json=VALID, headers=admin.headers)
    url = f"{ADMIN}/{made.json()['id']}"
    fixed = await client.patch(
        url, json={"kind": "fixed", "value": "150", "currency": "chf"}, headers=admin.headers
    )
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["kind"], fixed.json()["value"], fixed.json()["currency"]) == (
        "fixed",
        "150.00",
        "CHF",
    )
    too_much = await client.patch(url, json={"kind": "percentage"}, headers=admin.headers)
    assert too_much.status_code == 422
    assert too_much.json()["errors"][0]["field"] == "value"


@pytest.mark.parametrize("role", [None, "customer", "cashier", "operator"])
async def test_only_promotion_managers_may_administer_codes(
    app: FastAPI, client: httpx.AsyncClient, role: str | None
) -> None:
    promo_id = await add_code(app)
    headers = (await make_user(app, role)).headers if role else {}
    expected = 401 if role is None else 403
    url = f"{ADMIN}/{promo_id}"
    for response in (
        await client.post(ADMIN, json=VALID, headers=headers),
        await client.get(ADMIN, headers=headers),
        await client.get(url, headers=headers),
        await client.patch(url, json={"value": "50"}, headers=headers),
        await client.delete(url, headers=headers),
    ):
        assert response.status_code == expected, response.text
    assert (await code_state(app, promo_id))[0] == 0
    async with app.state.db.session(write=False) as session:
        promo = await session.get(PromoCode, promo_id)
        assert promo is not None
        assert promo.value == Decimal("10.0000")
    assert (await client.get(f"{ADMIN}/{uuid.uuid4()}", headers=headers)).status_code == expected


async def test_unknown_code_ids_are_not_found(client: httpx.AsyncClient, admin: AppUser) -> None:
    url = f"{ADMIN}/{uuid.uuid4()}"
    for response in (
        await client.get(url, headers=admin.headers),
        await client.patch(url, json={"value": "5"}, headers=admin.headers),
        await client.delete(url, headers=admin.headers),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


# ---------------------------------------------------------------------------------------------
# Refusals: each rule, and none of them takes a use


def _weekday_after(ctx: PromoContext) -> list[int]:
    return [(ctx.local_weekday + 1) % 7]


REFUSALS: dict[str, dict[str, Any]] = {
    "not_found": {"lookup": "NOSUCH"},
    "inactive": {"code": {"active": False}},
    "not_started": {"code": {"valid_from": utcnow() + dt.timedelta(hours=1)}},
    "expired": {
        "code": {
            "valid_from": utcnow() - dt.timedelta(days=2),
            "valid_until": utcnow() - dt.timedelta(minutes=1),
        }
    },
    "exhausted": {"code": {"total_limit": 1}, "earlier_by_others": 1},
    "customer_limit": {"code": {"per_customer_limit": 1}, "earlier_by_customer": 1},
    "min_order": {"code": {"min_order": Decimal("20.01")}},
    "currency": {"code": {"kind": "fixed", "value": "5", "currency": "USD"}},
    "movie": {"code": {"movie_ids": [str(uuid.uuid4())]}},
    "theater": {"code": {"theater_ids": [str(uuid.uuid4())]}},
    "day": {"code": {"days_of_week": _weekday_after}},
    "first_booking_only": {"code": {"first_booking_only": True}, "ctx": {"first_booking": False}},
}


@pytest.mark.parametrize("reason", list(REFUSALS))
async def test_every_refusal_has_its_reason_and_takes_no_use(
    app: FastAPI, shop: SimpleNamespace, reason: str
) -> None:
    case = REFUSALS[reason]
    ctx = await order(app, shop, **case.get("ctx", {}))
    fields = {
        name: value(ctx) if callable(value) else value
        for name, value in case.get("code", {}).items()
    }
    promo_id = await add_code(app, "CASE", **fields)
    earlier = 0
    for user_id, count in (
        ((await make_user(app)).id, case.get("earlier_by_others", 0)),
        (shop.customer.id, case.get("earlier_by_customer", 0)),
    ):
        for booking_id in await bookings(app, shop, user_id, count):
            before = await order(app, shop, user_id)
            assert await try_redeem(app.state.db, "CASE", booking_id, before) == Decimal("2.00")
            earlier += 1

    (booking_id,) = await bookings(app, shop, shop.customer.id)
    typed = case.get("lookup", "case")
    assert await try_check(app, typed, ctx) == reason
    assert await try_redeem(app.state.db, typed, booking_id, ctx) == reason
    uses, rows = await code_state(app, promo_id)
    assert uses == earlier
    assert len(rows) == earlier
    assert booking_id not in {row.booking_id for row in rows}


async def test_malformed_codes_are_simply_not_found(app: FastAPI, shop: SimpleNamespace) -> None:
    await add_code(app, "SAVE10")
    ctx = await order(app, shop)
    for typed in ("\u017fave10", "SAVE 10", "s", "SAVE10" * 10, ""):
        assert await try_check(app, typed, ctx) == "not_found", typed
    assert await try_check(app, "  save10 ", ctx) == Decimal("2.00")


async def test_rules_hold_up_to_their_edges(app: FastAPI, shop: SimpleNamespace) -> None:
    ctx = await order(app, shop)
    await add_code(
        app,
        "EDGES",
        valid_from=ctx.now,  # from: inclusive
        valid_until=ctx.now + dt.timedelta(microseconds=1),  # until: exclusive
        min_order=ctx.subtotal,
        currency="EUR",
        movie_ids=[str(uuid.uuid4()), str(ctx.movie_id)],
        theater_ids=[str(ctx.theater_id)],
        days_of_week=[ctx.local_weekday],
        first_booking_only=True,
        total_limit=1,
        per_customer_limit=1,
    )
    assert await try_check(app, "edges", ctx) == Decimal("2.00")
    later = dataclasses.replace(ctx, now=ctx.now + dt.timedelta(microseconds=1))
    assert await try_check(app, "edges", later) == "expired"
    (booking_id,) = await bookings(app, shop, shop.customer.id)
    assert await try_redeem(app.state.db, "edges", booking_id, ctx) == Decimal("2.00")


async def test_a_first_booking_code_is_one_use_per_customer(
    app: FastAPI, shop: SimpleNamespace
) -> None:
    promo_id = await add_code(app, "WELCOME", first_booking_only=True)
    first, second = await bookings(app, shop, shop.customer.id, 2)
    ctx = await order(app, shop)
    assert ctx.first_booking  # nothing paid yet: pending bookings do not count
    assert await try_redeem(app.state.db, "WELCOME", first, ctx) == Decimal("2.00")
    assert await try_redeem(app.state.db, "WELCOME", second, ctx) == "customer_limit"
    assert (await code_state(app, promo_id))[0] == 1


async def test_context_knows_first_bookings_and_the_theater_local_day(app: FastAPI) -> None:
    customer = await make_user(app)
    # Monday 20:00 UTC is already Tuesday 05:00 in Tokyo.
    today = utcnow().date()
    monday = today + dt.timedelta(days=(7 - today.weekday()) % 7 + 7)
    start = dt.datetime.combine(monday, dt.time(20, 0), dt.UTC)
    async with app.state.db.session() as session:
        city = await make_city(session, timezone="Asia/Tokyo")
        theater = await make_theater(session, city, currency="JPY")
        screen = await make_screen(session, theater)
        movie = await make_movie(session)
        showtime = await make_showtime(session, screen, movie, start_time=start)
        ctx = await context_for(
            session, user_id=customer.id, showtime_id=showtime.id, subtotal=Decimal("1800")
        )
    assert (ctx.local_weekday, ctx.currency, ctx.first_booking) == (1, "JPY", True)
    assert (ctx.movie_id, ctx.theater_id) == (movie.id, theater.id)

    async with app.state.db.session() as session:
        await make_confirmed_booking(session, customer.id, showtime.id, ["A1"])
    async with app.state.db.session(write=False) as session:
        ctx = await context_for(
            session, user_id=customer.id, showtime_id=showtime.id, subtotal=Decimal("1800")
        )
    assert ctx.first_booking is False


# ---------------------------------------------------------------------------------------------
# Discounts


@pytest.mark.parametrize(
    ("kind", "value", "subtotal", "max_discount", "expected"),
    [
        ("percentage", "10", "20.00", None, "2.00"),
        ("percentage", "100", "37.45", None, "37.45"),
        ("percentage", "12.5", "0.20", None, "0.03"),  # 0.025: half-up, not half-even
        ("percentage", "12.5", "10.05", None, "1.26"),  # 1.25625
        ("percentage", "33.33", "10.00", None, "3.33"),  # 3.333
        ("percentage", "15", "0.10", None, "0.02"),  # 0.015
        ("percentage", "0.01", "0.49", None, "0.00"),  # 0.000049
        ("percentage", "50", "30.00", "8.00", "8.00"),  # capped by maxDiscount
        ("percentage", "50", "10.00", "8.00", "5.00"),  # under the cap
        ("fixed", "5.00", "20.00", None, "5.00"),
        ("fixed", "15.00", "10.00", None, "10.00"),  # never more than the order
        ("fixed", "15.00", "20.00", "12.00", "12.00"),
        ("fixed", "5.00", "0.00", None, "0.00"),
    ],
)
def test_discount_arithmetic(
    kind: str, value: str, subtotal: str, max_discount: str | None, expected: str
) -> None:
    amount = compute_discount(
        kind=kind,
        value=Decimal(value),
        subtotal=Decimal(subtotal),
        max_discount=Decimal(max_discount) if max_discount else None,
    )
    assert amount == Decimal(expected)
    assert amount is not None
    assert amount.as_tuple().exponent == -2


def test_discount_without_a_subtotal() -> None:
    assert (
        compute_discount(kind="percentage", value=Decimal(10), subtotal=None, max_discount=None)
        is None
    )
    assert compute_discount(
        kind="fixed", value=Decimal("15"), subtotal=None, max_discount=Decimal("12")
    ) == Decimal("12.00")


async def test_a_redemption_stores_the_discount_it_returns(
    app: FastAPI, shop: SimpleNamespace
) -> None:
    promo_id = await add_code(app, "EIGHTH", value="12.5", max_discount=Decimal("3.00"))
    small, large = await bookings(app, shop, shop.customer.id, 2)
    assert await try_redeem(
        app.state.db, "eighth", small, await order(app, shop, subtotal=Decimal("0.20"))
    ) == Decimal("0.03")
    assert await try_redeem(
        app.state.db, "eighth", large, await order(app, shop, subtotal=Decimal("100.00"))
    ) == Decimal("3.00")
    uses, rows = await code_state(app, promo_id)
    assert uses == 2
    assert {row.booking_id: (row.amount, row.user_id, row.status) for row in rows} == {
        small: (Decimal("0.03"), shop.customer.id, "active"),
        large: (Decimal("3.00"), shop.customer.id, "active"),
    }


# ---------------------------------------------------------------------------------------------
# Races: separate transactions at once on the real database


async def test_many_customers_racing_for_the_last_uses_get_exactly_that_many(
    app: FastAPI, shop: SimpleNamespace, racing_db: Database
) -> None:
    uses_left = 3
    promo_id = await add_code(app, "RUSH", total_limit=uses_left)
    racers = []
    for _ in range(RACERS // 2):
        customer = await make_user(app)
        ctx = await order(app, shop, customer.id)
        racers += [(booking_id, ctx) for booking_id in await bookings(app, shop, customer.id, 2)]

    results = await asyncio.gather(
        *(try_redeem(racing_db, "RUSH", booking_id, ctx) for booking_id, ctx in racers)
    )

    assert Counter(results) == {Decimal("2.00"): uses_left, "exhausted": RACERS - uses_left}
    uses, rows = await code_state(app, promo_id)
    assert uses == uses_left
    assert len(rows) == uses_left
    assert {row.booking_id for row in rows} == {
        booking_id
        for (booking_id, _), result in zip(racers, results, strict=True)
        if result == Decimal("2.00")
    }


async def test_a_customer_racing_themselves_stays_within_their_limit(
    app: FastAPI, shop: SimpleNamespace, racing_db: Database
) -> None:
    promo_id = await add_code(app, "TWICE", per_customer_limit=2)
    ctx = await order(app, shop)
    booking_ids = await bookings(app, shop, shop.customer.id, RACERS // 2)

    results = await asyncio.gather(
        *(try_redeem(racing_db, "TWICE", booking_id, ctx) for booking_id in booking_ids)
    )

    assert Counter(results) == {Decimal("2.00"): 2, "customer_limit": RACERS // 2 - 2}
    uses, rows = await code_state(app, promo_id)
    assert uses == 2
    assert len(rows) == 2
    # Another customer is not held back by the first one's limit.
    (other_booking,) = await bookings(app, shop, (other := await make_user(app)).id)
    assert await try_redeem(
        app.state.db, "TWICE", other_booking, await order(app, shop, other.id)
    ) == Decimal("2.00")


async def test_a_release_gives_the_use_back_once_however_often_it_races(
    app: FastAPI, shop: SimpleNamespace, racing_db: Database
) -> None:
    promo_id = await add_code(app, "BACK", total_limit=2)
    ctx = await order(app, shop)
    first, second, third = await bookings(app, shop, shop.customer.id, 3)
    assert await try_redeem(app.state.db, "BACK", first, ctx) == Decimal("2.00")
    assert await try_redeem(app.state.db, "BACK", second, ctx) == Decimal("2.00")
    assert await try_redeem(app.state.db, "BACK", third, ctx) == "exhausted"

    async def release_in_own_transaction(booking_id: uuid.UUID) -> bool:
        async with racing_db.session() as session:
            return await release(session, booking_id)

    results = await asyncio.gather(*(release_in_own_transaction(first) for _ in range(4)))

    assert sorted(results) == [False, False, False, True]
    uses, rows = await code_state(app, promo_id)
    assert uses == 1
    statuses = {row.booking_id: (row.status, row.released_at is not None) for row in rows}
    assert statuses == {first: ("released", True), second: ("active", False)}
    # Idempotent afterwards, and a booking without a redemption has nothing to give back.
    assert await release_in_own_transaction(first) is False
    assert await release_in_own_transaction(third) is False
    assert (await code_state(app, promo_id))[0] == 1
    # The use that came back can be taken again.
    assert await try_redeem(app.state.db, "BACK", third, ctx) == Decimal("2.00")
    assert await try_redeem(app.state.db, "BACK", first, ctx) == "exhausted"


async def test_released_uses_no_longer_count_against_the_customer(
    app: FastAPI, shop: SimpleNamespace
) -> None:
    await add_code(app, "ONCE", per_customer_limit=1)
    ctx = await order(app, shop)
    first, second = await bookings(app, shop, shop.customer.id, 2)
    assert await try_redeem(app.state.db, "ONCE", first, ctx) == Decimal("2.00")
    assert await try_redeem(app.state.db, "ONCE", second, ctx) == "customer_limit"
    async with app.state.db.session() as session:
        assert await release(session, first) is True
    assert await try_redeem(app.state.db, "ONCE", second, ctx) == Decimal("2.00")


# ---------------------------------------------------------------------------------------------
# The customer's lookup


async def lookup(
    http: httpx.AsyncClient, user: AppUser | None, code: str, showtime_id: str, **fields: Any
) -> httpx.Response:
    return await http.post(
        CHECK,
        json={"code": code, "showtimeId": showtime_id, **fields},
        headers=user.headers if user else {},
    )


async def test_lookup_answers_the_discount_without_taking_a_use(
    app: FastAPI, client: httpx.AsyncClient, shop: SimpleNamespace, fresh_limits: None
) -> None:
    promo_id = await add_code(
        app, "HALF", value="50", max_discount=Decimal("6.00"), min_order=Decimal("10.00")
    )
    response = await lookup(client, shop.customer, "half", shop.showtime_id, subtotal="10.00")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "valid": True,
        "code": "HALF",
        "description": None,
        "kind": "percentage",
        "value": "50.00",
        "currency": "EUR",
        "subtotal": "10.00",
        "discount": "5.00",
        "minOrder": "10.00",
        "maxDiscount": "6.00",
        "validUntil": None,
    }
    # Without a subtotal: the minimum is not judged, a percentage's discount is unknown.
    blind = await lookup(client, shop.customer, "HALF", shop.showtime_id)
    assert blind.status_code == 200
    assert (blind.json()["discount"], blind.json()["subtotal"]) == (None, None)
    below = await lookup(client, shop.customer, "HALF", shop.showtime_id, subtotal="9.99")
    assert below.status_code == 422
    assert (below.json()["code"], below.json()["reason"]) == ("promo_invalid", "min_order")
    assert below.json()["minOrder"] == "10.00"
    assert below.headers["content-type"] == "application/problem+json"
    assert (await code_state(app, promo_id))[0] == 0


async def test_lookup_judges_the_showtime_and_the_customer(
    app: FastAPI, client: httpx.AsyncClient, shop: SimpleNamespace, fresh_limits: None
) -> None:
    await add_code(app, "OTHERFILM", movie_ids=[str(uuid.uuid4())])
    await add_code(app, "WELCOME", kind="fixed", value="4", currency="EUR", first_booking_only=True)
    await add_code(app, "OLD", valid_from=utcnow() - dt.timedelta(days=9), valid_until=utcnow())
    for code, reason in (("OTHERFILM", "movie"), ("OLD", "expired"), ("NOPE", "not_found")):
        refused = await lookup(client, shop.customer, code, shop.showtime_id)
        assert refused.status_code == 422
        assert refused.json()["reason"] == reason, code

    welcome = await lookup(client, shop.customer, "welcome", shop.showtime_id)
    assert welcome.json()["discount"] == "4.00"  # fixed: known without a subtotal
    async with app.state.db.session() as session:
        await make_confirmed_booking(
            session, shop.customer.id, uuid.UUID(shop.showtime_id), [next(shop.seats)]
        )
    again = await lookup(client, shop.customer, "welcome", shop.showtime_id)
    assert again.status_code == 422
    assert again.json()["reason"] == "first_booking_only"


async def test_lookup_needs_a_customer_and_a_showtime(
    app: FastAPI, client: httpx.AsyncClient, shop: SimpleNamespace, fresh_limits: None
) -> None:
    await add_code(app, "SAVE10")
    assert (await lookup(client, None, "SAVE10", shop.showtime_id)).status_code == 401
    missing = await lookup(client, shop.customer, "SAVE10", str(uuid.uuid4()))
    assert missing.status_code == 404
    for fields in ({"subtotal": "-1"}, {"subtotal": "1.001"}, {"extra": 1}):
        response = await lookup(client, shop.customer, "SAVE10", shop.showtime_id, **fields)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
    assert (await lookup(client, shop.customer, "", shop.showtime_id)).status_code == 422


# ---------------------------------------------------------------------------------------------
# Rate limits


async def _lookups(
    http: httpx.AsyncClient, user: AppUser | None, showtime_id: str, count: int
) -> list[int]:
    return [(await lookup(http, user, f"GUESS{i}", showtime_id)).status_code for i in range(count)]


async def test_lookups_are_rate_limited_per_customer(app: FastAPI, make_client: MakeClient) -> None:
    http = await make_client()  # a fresh app: its own in-memory windows
    shop = await seed_showtime(app)
    guesser, neighbour = await make_user(app), await make_user(app)

    # Refused guesses count: that is what the limit is for.
    assert await _lookups(http, guesser, shop.showtime_id, 10) == [422] * 10
    limited = await lookup(http, guesser, "GUESS", shop.showtime_id)
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["code"] == "rate_limited"
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert limited.json()["retryAfter"] == retry_after
    # Another customer at the same address still has their own window.
    assert (await lookup(http, neighbour, "GUESS", shop.showtime_id)).status_code == 422


async def test_lookups_are_rate_limited_per_address(app: FastAPI, make_client: MakeClient) -> None:
    http = await make_client(client_address="203.0.113.21")
    shop = await seed_showtime(app)
    # 60 a minute from one address, whoever asks (here: nobody signed in).
    assert await _lookups(http, None, shop.showtime_id, 60) == [401] * 60
    assert (await lookup(http, None, "GUESS", shop.showtime_id)).status_code == 429
    fresh_customer = await make_user(app)
    limited = await lookup(http, fresh_customer, "GUESS", shop.showtime_id)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


async def test_rate_limits_can_be_turned_off(app: FastAPI, make_client: MakeClient) -> None:
    http = await make_client(rate_limit_enabled=False)
    shop = await seed_showtime(app)
    guesser = await make_user(app)
    assert await _lookups(http, guesser, shop.showtime_id, 12) == [422] * 12


async def test_an_unreachable_redis_does_not_block_lookups(
    app: FastAPI, make_client: MakeClient
) -> None:
    http = await make_client(redis_url="redis://127.0.0.1:1/0")
    shop = await seed_showtime(app)
    guesser = await make_user(app)
    assert await _lookups(http, guesser, shop.showtime_id, 11) == [422] * 11


async def test_app_instances_on_one_redis_share_the_limits(
    app: FastAPI,
    client: httpx.AsyncClient,
    backend: Backend,
    tmp_path: Path,
    redis_url: str,
) -> None:
    shop = await seed_showtime(app)
    guesser = await make_user(app)
    # An address of its own, so earlier runs against the same Redis do not count.
    address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    managers: list[LifespanManager] = []
    clients: list[httpx.AsyncClient] = []
    try:
        for _ in range(2):
            application = create_app(make_settings(backend, tmp_path / "var", redis_url=redis_url))
            manager = LifespanManager(application)
            await manager.__aenter__()
            managers.append(manager)
            transport = httpx.ASGITransport(app=application, client=(address, 40000))
            clients.append(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
        first, second = clients

        assert await _lookups(first, guesser, shop.showtime_id, 6) == [422] * 6
        assert await _lookups(second, guesser, shop.showtime_id, 4) == [422] * 4
        for http in (first, second):
            limited = await lookup(http, guesser, "GUESS", shop.showtime_id)
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1
    finally:
        for http in clients:
            await http.aclose()
        for manager in reversed(managers):
            await manager.__aexit__(None, None, None)
