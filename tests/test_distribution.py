"""Distributors, rental contracts, the scheduling rule and the settlement arithmetic.

The settlement examples are worked by hand in the comments; bookings, showtimes and refunds are
inserted straight into the tables (in the past, at chosen times) so the arithmetic sees exactly
the money the comment shows. Contracts go through the API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from boxoffice.audit.models import AuditEntry
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.demo import load_demo
from boxoffice.distribution import jobs, service, settlement
from boxoffice.distribution.models import Contract, Distributor, SettlementEntry
from boxoffice.payments.models import Payment, Refund
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import Theater
from tests.factories import make_city, make_movie, make_screen, make_theater
from tests.helpers import TestUser, make_user

UTC = dt.UTC
D = Decimal
# 2026-10-01 is a Thursday; the contracts' weeks start on Thursdays (weekday 3).
OCT1 = dt.date(2026, 10, 1)


# ---------------------------------------------------------------------------------------------
# Helpers


async def _world(app: FastAPI, *, vat: str = "0.19", timezone: str = "Europe/Berlin") -> Any:
    async with app.state.db.session() as session:
        city = await make_city(session, timezone=timezone)
        theater = await make_theater(session, city)
        theater.vat_rate = D(vat)
        screen = await make_screen(session, theater, rows=2, seats_per_row=4)
        movie = await make_movie(session, title=f"Film {uuid.uuid4().hex[:6]}")
        await session.flush()
        ids = SimpleNamespace(theater_id=theater.id, screen_id=screen.id, movie_id=movie.id)
    admin = await make_user(app, "admin")
    customer = await make_user(app, "customer")
    return SimpleNamespace(**vars(ids), admin=admin, customer=customer)


async def _distributor(client: httpx.AsyncClient, admin: TestUser, name: str | None = None) -> str:
    response = await client.post(
        "/api/admin/distributors",
        json={"name": name or f"Dist {uuid.uuid4().hex[:6]}", "contactEmail": "ap@dist.example"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _contract(
    client: httpx.AsyncClient, world: Any, distributor_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    body = {
        "distributorId": distributor_id or await _distributor(client, world.admin),
        "movieId": str(world.movie_id),
        "startDate": OCT1.isoformat(),
        "endDate": (OCT1 + dt.timedelta(days=13)).isoformat(),
        "weekStartWeekday": 3,
        "terms": ["60"],
        **fields,
    }
    response = await client.post("/api/admin/contracts", json=body, headers=world.admin.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _show(app: FastAPI, world: Any, start: dt.datetime, fmt: str = "2D") -> uuid.UUID:
    """A showtime inserted as is (in the past too), without the scheduling checks."""
    async with app.state.db.session() as session:
        showtime = Showtime(
            movie_id=world.movie_id,
            screen_id=world.screen_id,
            theater_id=world.theater_id,
            start_time=start,
            end_time=start + dt.timedelta(hours=2),
            base_price=D("10.00"),
            currency="EUR",
            format=fmt,
        )
        session.add(showtime)
        await session.flush()
        return showtime.id


async def _booking(
    app: FastAPI,
    world: Any,
    showtime_id: uuid.UUID,
    final: str,
    *,
    total: str | None = None,
    snacks: str = "0.00",
    status: str = BookingStatus.CONFIRMED,
) -> uuid.UUID:
    """A paid booking: `total` (tickets + snacks) less discounts = `final`, paid in full."""
    total_amount = D(total or final)
    async with app.state.db.session() as session:
        booking = Booking(
            reference=uuid.uuid4().hex[:10].upper(),
            user_id=world.customer.id,
            showtime_id=showtime_id,
            status=status,
            currency="EUR",
            total_amount=total_amount,
            discount_amount=total_amount - D(final),
            final_amount=D(final),
            tickets_amount=total_amount - D(snacks),
            snacks_amount=D(snacks),
            expires_at=dt.datetime(2026, 9, 1, tzinfo=UTC),
            confirmed_at=dt.datetime(2026, 9, 1, tzinfo=UTC),
        )
        session.add(booking)
        await session.flush()
        session.add(
            Payment(
                booking_id=booking.id,
                provider="local",
                provider_ref=uuid.uuid4().hex,
                status="succeeded",
                amount=D(final),
                currency="EUR",
            )
        )
        return booking.id


async def _refund(app: FastAPI, booking_id: uuid.UUID, amount: str, at: dt.datetime) -> None:
    async with app.state.db.session() as session:
        payment_id = await session.scalar(
            select(Payment.id).where(Payment.booking_id == booking_id)
        )
        assert payment_id is not None
        session.add(
            Refund(
                payment_id=payment_id,
                booking_id=booking_id,
                amount=D(amount),
                status="succeeded",
                created_at=at,
            )
        )
        booking = await session.get(Booking, booking_id)
        assert booking is not None
        booking.refunded_amount += D(amount)


async def _weeks(
    client: httpx.AsyncClient, world: Any, contract_id: str, **params: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/admin/contracts/{contract_id}/settlements",
        params=params,
        headers=world.admin.headers,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _at(day: int, hour: int = 18, minute: int = 0) -> dt.datetime:
    """A time on an October 2026 day, UTC."""
    return dt.datetime(2026, 10, day, hour, minute, tzinfo=UTC)


def _figures(week: dict[str, Any]) -> tuple[str, ...]:
    return (
        week["weekStart"],
        week["gross"],
        week["net"],
        week["sharePercent"],
        week["distributorShare"],
        week["guaranteeTopup"],
        week["amountDue"],
    )


async def _audit_actions(app: FastAPI) -> list[str]:
    async with app.state.db.session() as session:
        return list(
            await session.scalars(select(AuditEntry.action).order_by(AuditEntry.created_at))
        )


# ---------------------------------------------------------------------------------------------
# Pure arithmetic


def test_weeks_start_on_the_contract_weekday() -> None:
    # Start Saturday 2026-10-03, weeks on Thursdays: week 1 is the week from Thursday 10-01;
    # the end date Monday 10-19 falls in the week from Thursday 10-15.
    weeks = settlement.contract_weeks(dt.date(2026, 10, 3), dt.date(2026, 10, 19), 3)
    assert weeks == [dt.date(2026, 10, 1), dt.date(2026, 10, 8), dt.date(2026, 10, 15)]
    assert settlement.week_start_for(dt.date(2026, 10, 1), 3) == dt.date(2026, 10, 1)
    assert settlement.week_start_for(dt.date(2026, 10, 7), 3) == dt.date(2026, 10, 1)
    assert settlement.week_start_for(dt.date(2026, 10, 7), 0) == dt.date(2026, 10, 5)  # Monday
    assert settlement.percent_for_week([D(60), D(50)], 1) == 60
    assert settlement.percent_for_week([D(60), D(50)], 5) == 50


# ---------------------------------------------------------------------------------------------
# CRUD and validation


async def test_distributor_and_contract_crud(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await _world(app)
    headers = world.admin.headers
    created = await client.post(
        "/api/admin/distributors",
        json={"name": "Northern Lights Films", "contactEmail": "ap@nlf.example", "address": "Oslo"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    distributor = created.json()
    assert distributor["name"] == "Northern Lights Films"
    duplicate = await client.post(
        "/api/admin/distributors", json={"name": "Northern Lights Films"}, headers=headers
    )
    assert duplicate.status_code == 409
    listed = await client.get("/api/admin/distributors", headers=headers)
    assert [d["name"] for d in listed.json()["distributors"]] == ["Northern Lights Films"]
    patched = await client.patch(
        f"/api/admin/distributors/{distributor['id']}", json={"address": "Bergen"}, headers=headers
    )
    assert patched.status_code == 200
    assert patched.json()["address"] == "Bergen"

    contract = await _contract(
        client,
        world,
        distributor["id"],
        format="3D",
        terms=["60", "50", "42.5"],
        houseAllowance="1500.00",
        minimumGuarantee="2000.00",
    )
    assert contract["terms"] == ["60.00", "50.00", "42.50"]
    assert contract["format"] == "3D"
    assert contract["houseAllowance"] == "1500.00"
    got = await client.get(f"/api/admin/contracts/{contract['id']}", headers=headers)
    assert got.status_code == 200
    assert got.json()["minimumGuarantee"] == "2000.00"
    listed = await client.get(
        "/api/admin/contracts", params={"movieId": str(world.movie_id)}, headers=headers
    )
    assert [c["id"] for c in listed.json()["contracts"]] == [contract["id"]]
    patched = await client.patch(
        f"/api/admin/contracts/{contract['id']}",
        json={"active": False, "terms": ["55"]},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["active"] is False
    assert patched.json()["terms"] == ["55.00"]

    # A distributor with contracts stays; the contract goes first.
    in_use = await client.delete(f"/api/admin/distributors/{distributor['id']}", headers=headers)
    assert in_use.status_code == 409
    assert (
        await client.delete(f"/api/admin/contracts/{contract['id']}", headers=headers)
    ).status_code == 204
    assert (
        await client.get(f"/api/admin/contracts/{contract['id']}", headers=headers)
    ).status_code == 404
    assert (
        await client.delete(f"/api/admin/distributors/{distributor['id']}", headers=headers)
    ).status_code == 204

    assert await _audit_actions(app) == [
        "distributor.created",
        "distributor.updated",
        "contract.created",
        "contract.updated",
        "contract.deleted",
        "distributor.deleted",
    ]


async def test_contract_validation(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await _world(app)
    headers = world.admin.headers
    distributor_id = await _distributor(client, world.admin)
    base = {
        "distributorId": distributor_id,
        "movieId": str(world.movie_id),
        "startDate": "2026-10-01",
        "endDate": "2026-10-31",
        "terms": ["60"],
    }

    async def post(**changes: Any) -> httpx.Response:
        return await client.post("/api/admin/contracts", json={**base, **changes}, headers=headers)

    for terms in (["101"], ["-1"], [], ["12.345"], ["abc"]):
        assert (await post(terms=terms)).status_code == 422, terms
    assert (await post(weekStartWeekday=7)).status_code == 422
    assert (await post(houseAllowance="-5")).status_code == 422
    assert (await post(currency="EURO")).status_code == 422
    assert (await post(unknown=1)).status_code == 422
    backwards = await post(startDate="2026-11-01")
    assert backwards.status_code == 422
    assert backwards.json()["code"] == "invalid_contract"
    unknown_distributor = await post(distributorId=str(uuid.uuid4()))
    assert unknown_distributor.status_code == 404
    assert unknown_distributor.json()["code"] == "distributor_not_found"
    unknown_movie = await post(movieId=str(uuid.uuid4()))
    assert unknown_movie.status_code == 422
    assert unknown_movie.json()["code"] == "movie_not_found"
    assert (await post(terms=["0", "100"])).status_code == 201

    contract_id = (await post()).json()["id"]
    patch = await client.patch(
        f"/api/admin/contracts/{contract_id}", json={"endDate": "2026-09-01"}, headers=headers
    )
    assert patch.status_code == 422
    empty = await client.patch(f"/api/admin/contracts/{contract_id}", json={}, headers=headers)
    assert empty.status_code == 422
    missing = await client.get(f"/api/admin/contracts/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    customer = await client.get("/api/admin/contracts", headers=world.customer.headers)
    assert customer.status_code == 403


# ---------------------------------------------------------------------------------------------
# The scheduling rule


def _future(days: int, hour: int = 18) -> dt.datetime:
    now = dt.datetime.now(UTC)
    return dt.datetime(now.year, now.month, now.day, hour, tzinfo=UTC) + dt.timedelta(days=days)


async def _schedule(
    client: httpx.AsyncClient, world: Any, start: dt.datetime, fmt: str = "2D"
) -> httpx.Response:
    return await client.post(
        "/api/admin/showtimes",
        json={
            "movieId": str(world.movie_id),
            "screenId": str(world.screen_id),
            "startTime": start.isoformat(),
            "basePrice": "10.00",
            "format": fmt,
        },
        headers=world.admin.headers,
    )


async def test_a_movie_with_contracts_is_scheduled_only_under_a_valid_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await _world(app)
    # No contract at all: scheduled freely (the default mode).
    assert (await _schedule(client, world, _future(2))).status_code == 201

    first = _future(5).date()
    contract = await _contract(
        client,
        world,
        format="3D",
        startDate=first.isoformat(),
        endDate=(first + dt.timedelta(days=6)).isoformat(),
    )
    inside = _future(6)
    wrong_format = await _schedule(client, world, inside, "2D")
    assert wrong_format.status_code == 409
    assert wrong_format.json()["code"] == "no_valid_contract"
    assert (await _schedule(client, world, _future(14), "3D")).status_code == 409  # after the end
    assert (await _schedule(client, world, _future(3), "3D")).status_code == 409  # before start
    created = await _schedule(client, world, inside, "3D")
    assert created.status_code == 201, created.text

    # Moving it out of the contract's dates, or to another format, is refused too.
    showtime_id = created.json()["id"]
    moved = await client.patch(
        f"/api/admin/showtimes/{showtime_id}",
        json={"startTime": _future(20).isoformat()},
        headers=world.admin.headers,
    )
    assert moved.status_code == 409
    assert moved.json()["code"] == "no_valid_contract"
    reformatted = await client.patch(
        f"/api/admin/showtimes/{showtime_id}", json={"format": "2D"}, headers=world.admin.headers
    )
    assert reformatted.status_code == 409

    # An inactive contract covers nothing.
    await client.patch(
        f"/api/admin/contracts/{contract['id']}",
        json={"active": False},
        headers=world.admin.headers,
    )
    assert (await _schedule(client, world, inside + dt.timedelta(hours=3), "3D")).status_code == 409


async def test_the_local_date_decides_the_contract_day(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await _world(app, timezone="America/New_York")
    day = _future(5).date()
    await _contract(client, world, startDate=day.isoformat(), endDate=day.isoformat())
    # 02:00 UTC the next day is still the contract's day in New York (22:00 or 21:00).
    late_local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(2), UTC)
    assert (await _schedule(client, world, late_local)).status_code == 201
    # 12:00 UTC the next day is the next local day: outside.
    next_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(12), UTC)
    assert (await _schedule(client, world, next_day)).status_code == 409


async def test_required_contracts_mode(app: FastAPI, make_client: Any) -> None:
    strict = await make_client(require_film_contracts=True)
    world = await _world(app)
    refused = await _schedule(strict, world, _future(2))
    assert refused.status_code == 409
    assert refused.json()["code"] == "no_valid_contract"
    first = _future(1).date()
    await _contract(
        strict,
        world,
        startDate=first.isoformat(),
        endDate=(first + dt.timedelta(days=9)).isoformat(),
    )
    assert (await _schedule(strict, world, _future(2))).status_code == 201


# ---------------------------------------------------------------------------------------------
# Settlement arithmetic (theater VAT 19%: net = gross / 1.19)


async def test_sliding_scale_across_weeks(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await _world(app)
    # Terms 60%, 50%, 40%; four weeks (10-01 .. 10-28): week 4 pays the last term, 40%.
    contract = await _contract(client, world, terms=["60", "50", "40"], endDate="2026-10-28")
    week1 = await _show(app, world, _at(2))
    week2 = await _show(app, world, _at(9))
    week3 = await _show(app, world, _at(15))
    week4 = await _show(app, world, _at(28))
    await _booking(app, world, week1, "119.00")
    await _booking(app, world, week1, "119.00")
    await _booking(app, world, week2, "59.50")
    await _booking(app, world, week3, "11.90")
    await _booking(app, world, week4, "23.80")
    # Not money: a pending and an expired booking, and another movie's show.
    await _booking(app, world, week1, "500.00", status=BookingStatus.PENDING)
    await _booking(app, world, week1, "500.00", status=BookingStatus.EXPIRED)
    # week 1: gross 238.00, net 238.00 / 1.19 = 200.00, 60% = 120.00
    # week 2: gross  59.50, net 50.00, 50% = 25.00
    # week 3: gross  11.90, net 10.00, 40% = 4.00
    # week 4: gross  23.80, net 20.00, 40% (last term) = 8.00
    weeks = await _weeks(client, world, contract["id"])
    assert [_figures(week) for week in weeks] == [
        ("2026-10-01", "238.00", "200.00", "60.00", "120.00", "0.00", "120.00"),
        ("2026-10-08", "59.50", "50.00", "50.00", "25.00", "0.00", "25.00"),
        ("2026-10-15", "11.90", "10.00", "40.00", "4.00", "0.00", "4.00"),
        ("2026-10-22", "23.80", "20.00", "40.00", "8.00", "0.00", "8.00"),
    ]
    assert [week["weekNumber"] for week in weeks] == [1, 2, 3, 4]
    assert weeks[0]["weekEnd"] == "2026-10-07"
    assert weeks[0]["status"] == "open"
    # from/to pick weeks by their start date.
    picked = await _weeks(
        client, world, contract["id"], **{"from": "2026-10-05", "to": "2026-10-15"}
    )
    assert [week["weekStart"] for week in picked] == ["2026-10-08", "2026-10-15"]


async def test_format_contract_counts_only_its_format(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await _world(app)
    contract = await _contract(client, world, format="3D", terms=["50"])
    await _booking(app, world, await _show(app, world, _at(2), "3D"), "119.00")
    await _booking(app, world, await _show(app, world, _at(3), "2D"), "238.00")
    # Only the 3D show: gross 119.00, net 100.00, 50% = 50.00
    weeks = await _weeks(client, world, contract["id"])
    assert _figures(weeks[0]) == (
        "2026-10-01",
        "119.00",
        "100.00",
        "50.00",
        "50.00",
        "0.00",
        "50.00",
    )


async def test_house_allowance_90_10(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await _world(app)
    contract = await _contract(client, world, terms=["60"], houseAllowance="50.00")
    await _booking(app, world, await _show(app, world, _at(2)), "357.00")
    await _booking(app, world, await _show(app, world, _at(9)), "119.00")
    # week 1: net 357.00 / 1.19 = 300.00; 60% = 180.00; 90% x (300.00 - 50.00) = 225.00
    #         -> the larger: 225.00
    # week 2: net 100.00; 60% = 60.00; 90% x (100.00 - 50.00) = 45.00 -> 60.00
    weeks = await _weeks(client, world, contract["id"])
    assert [_figures(week) for week in weeks] == [
        ("2026-10-01", "357.00", "300.00", "60.00", "225.00", "0.00", "225.00"),
        ("2026-10-08", "119.00", "100.00", "60.00", "60.00", "0.00", "60.00"),
    ]


async def test_minimum_guarantee_tops_up_the_last_week(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await _world(app)
    contract = await _contract(client, world, terms=["50"], minimumGuarantee="200.00")
    await _booking(app, world, await _show(app, world, _at(2)), "119.00")
    await _booking(app, world, await _show(app, world, _at(9)), "59.50")
    # week 1: net 100.00, 50% = 50.00
    # week 2: net  50.00, 50% = 25.00
    # shares 75.00 < guarantee 200.00: top-up 125.00 in the last week, due 25.00 + 125.00
    weeks = await _weeks(client, world, contract["id"])
    assert [_figures(week) for week in weeks] == [
        ("2026-10-01", "119.00", "100.00", "50.00", "50.00", "0.00", "50.00"),
        ("2026-10-08", "59.50", "50.00", "50.00", "25.00", "125.00", "150.00"),
    ]
    # Over the guarantee: no top-up.
    await client.patch(
        f"/api/admin/contracts/{contract['id']}",
        json={"minimumGuarantee": "60.00"},
        headers=world.admin.headers,
    )
    weeks = await _weeks(client, world, contract["id"])
    assert [week["guaranteeTopup"] for week in weeks] == ["0.00", "0.00"]


async def test_discounts_and_snacks_split_in_proportion(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await _world(app)
    contract = await _contract(client, world, terms=["50"])
    show = await _show(app, world, _at(2))
    # Tickets 20.00 + snacks 10.00 = total 30.00, discount 6.00, final 24.00.
    # Tickets' part of the money: 24.00 x 20.00 / 30.00 = 16.00 (gross)
    # net = 16.00 / 1.19 = 13.445378..., shown 13.45
    # share = 50% x 13.445378... = 6.722689... -> 6.72 (rounded once; 50% of 13.45 would be 6.73)
    await _booking(app, world, show, "24.00", total="30.00", snacks="10.00")
    weeks = await _weeks(client, world, contract["id"])
    assert _figures(weeks[0]) == ("2026-10-01", "16.00", "13.45", "50.00", "6.72", "0.00", "6.72")


async def test_a_refund_after_the_week_is_an_adjustment_of_the_week_it_was_made(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await _world(app)  # Europe/Berlin, UTC+2 in October
    contract = await _contract(client, world, terms=["60", "50"])
    show1 = await _show(app, world, _at(6))  # Tuesday of week 1
    show2 = await _show(app, world, _at(9))  # week 2
    early = await _booking(app, world, show1, "119.00")
    late = await _booking(app, world, show1, "119.00")
    await _booking(app, world, show2, "238.00")
    # Refunded inside week 1 (Wed 10-07 23:30 Berlin = 21:30 UTC): reduces week 1.
    await _refund(app, early, "59.50", _at(7, 21, 30))
    before = await _weeks(client, world, contract["id"])
    # Refunded Thu 10-08 00:30 Berlin (still 10-07 in UTC): week 1 is over, so it is an
    # adjustment of week 2, the week it was made in.
    await _refund(app, late, "59.50", _at(7, 22, 30))
    # week 1: gross 119.00 + 119.00 - 59.50 = 178.50, net 150.00, 60% = 90.00
    # week 2: gross 238.00 - 59.50 (late refund) = 178.50, net 150.00, 50% = 75.00
    weeks = await _weeks(client, world, contract["id"])
    assert [_figures(week) for week in weeks] == [
        ("2026-10-01", "178.50", "150.00", "60.00", "90.00", "0.00", "90.00"),
        ("2026-10-08", "178.50", "150.00", "50.00", "75.00", "0.00", "75.00"),
    ]
    # Week 1 was over when the late refund came: its figures did not change.
    assert _figures(before[0]) == _figures(weeks[0])
    assert before[1]["gross"] == "238.00"


async def test_a_refund_after_the_contract_counts_in_its_last_week(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await _world(app)
    contract = await _contract(client, world, terms=["50"])  # weeks 10-01 and 10-08
    booking = await _booking(app, world, await _show(app, world, _at(2)), "119.00")
    await _refund(app, booking, "119.00", _at(30))
    # week 1: net 100.00, 50% = 50.00; week 2 (last): gross -119.00, net -100.00, -50.00
    weeks = await _weeks(client, world, contract["id"])
    assert [week["amountDue"] for week in weeks] == ["50.00", "-50.00"]


async def test_weeks_follow_the_theater_timezone(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await _world(app, vat="0")
    contract = await _contract(client, world, terms=["50"])
    # Wed 10-07 23:59 Berlin (21:59 UTC): week 1. Thu 10-08 00:30 Berlin (22:30 UTC on
    # Wednesday 10-07): week 2, though its UTC date is in week 1.
    await _booking(app, world, await _show(app, world, _at(7, 21, 59)), "10.00")
    await _booking(app, world, await _show(app, world, _at(7, 22, 30)), "30.00")
    weeks = await _weeks(client, world, contract["id"])
    assert [(week["gross"], week["amountDue"]) for week in weeks] == [
        ("10.00", "5.00"),
        ("30.00", "15.00"),
    ]


# ---------------------------------------------------------------------------------------------
# Payment history


async def test_weekly_job_records_once_and_pay_marks_paid_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await _world(app)
    distributor_id = await _distributor(client, world.admin, "Harbour Pictures")
    contract = await _contract(client, world, distributor_id, terms=["60", "50"])
    await _booking(app, world, await _show(app, world, _at(2)), "119.00")
    await _booking(app, world, await _show(app, world, _at(9)), "59.50")

    # Before week 2 is over only week 1 is recorded; then both; twice changes nothing.
    async with app.state.db.session() as session:
        assert await service.record_completed_weeks(session, now=_at(15, 1)) == 1
    await jobs.record_once(app)
    await jobs.record_once(app)
    await asyncio.gather(jobs.record_once(app), jobs.record_once(app))
    async with app.state.db.session() as session:
        entries = (
            await session.scalars(select(SettlementEntry).order_by(SettlementEntry.week_start))
        ).all()
    assert [(e.week_start, e.amount_due, e.status) for e in entries] == [
        (dt.date(2026, 10, 1), D("60.00"), "due"),  # net 100.00 x 60%
        (dt.date(2026, 10, 8), D("25.00"), "due"),  # net 50.00 x 50%
    ]

    paid = await client.post(
        f"/api/admin/settlements/{entries[0].id}/pay", headers=world.admin.headers
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    assert paid.json()["paidAt"]
    again = await client.post(
        f"/api/admin/settlements/{entries[0].id}/pay", headers=world.admin.headers
    )
    assert again.status_code == 409
    assert again.json()["code"] == "settlement_already_paid"
    # Two at once: one pays, the other is told it was paid.
    racing = await asyncio.gather(
        *(
            client.post(f"/api/admin/settlements/{entries[1].id}/pay", headers=world.admin.headers)
            for _ in range(2)
        )
    )
    assert sorted(r.status_code for r in racing) == [200, 409]
    missing = await client.post(
        f"/api/admin/settlements/{uuid.uuid4()}/pay", headers=world.admin.headers
    )
    assert missing.status_code == 404

    # A recorded contract is not deleted (deactivate it instead).
    deleted = await client.delete(
        f"/api/admin/contracts/{contract['id']}", headers=world.admin.headers
    )
    assert deleted.status_code == 409

    report = await client.get(
        f"/api/admin/distributors/{distributor_id}/settlements", headers=world.admin.headers
    )
    assert report.status_code == 200, report.text
    body = report.json()
    assert [(i["weekStart"], i["amountDue"], i["status"]) for i in body["items"]] == [
        ("2026-10-01", "60.00", "paid"),
        ("2026-10-08", "25.00", "paid"),
    ]
    assert body["totalDue"] == "85.00"
    assert body["totalPaid"] == "85.00"
    assert body["items"][0]["distributorName"] == "Harbour Pictures"

    actions = await _audit_actions(app)
    assert actions.count("settlement.recorded") == 2
    assert actions.count("settlement.paid") == 2
    async with app.state.db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "settlement.paid")
        )
    assert count == 2


async def test_settlement_report_rows(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await _world(app)
    distributor_id = await _distributor(client, world.admin, "Report Films")
    await _contract(client, world, distributor_id, terms=["50"], format="2D")
    await _booking(app, world, await _show(app, world, _at(9)), "119.00")
    async with app.state.db.session() as session:
        theater = await session.get(Theater, world.theater_id)
        assert theater is not None
        rows = await service.settlement_report_rows(
            session, dt.date(2026, 10, 5), dt.date(2026, 10, 31)
        )
    assert len(rows) == 1
    row = rows[0]
    assert (row.distributor_name, row.format, row.week_start, row.week_end) == (
        "Report Films",
        "2D",
        dt.date(2026, 10, 8),
        dt.date(2026, 10, 14),
    )
    assert (row.gross, row.net, row.share_percent, row.distributor_share, row.amount_due) == (
        D("119.00"),
        D("100.00"),
        D("50.00"),
        D("50.00"),
        D("50.00"),
    )
    assert row.currency == "EUR"
    assert row.status == "open"
    assert row.guarantee_topup == 0
    assert row.movie_title.startswith("Film ")


async def test_demo_films_have_contracts_once(app: FastAPI, client: httpx.AsyncClient) -> None:
    async with app.state.db.session() as session:
        first = await load_demo(session)
    async with app.state.db.session() as session:
        second = await load_demo(session)
        contracts = (await session.scalars(select(Contract))).all()
        distributors = await session.scalar(select(func.count()).select_from(Distributor))
    assert "16 rental contracts" in first  # 8 films x (EUR, GBP)
    assert "0 rental contracts" in second
    assert len(contracts) == 16
    assert distributors == 2
    assert {c.currency for c in contracts} == {"EUR", "GBP"}
