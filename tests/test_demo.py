"""`boxoffice demo`: the promised demo cinema, loaded idempotently."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from boxoffice.demo import DEMO_ACCOUNTS, load_demo
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import Screen, Seat


async def test_demo_data_is_complete_and_idempotent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with app.state.db.session() as session:
        first = await load_demo(session)
    async with app.state.db.session() as session:
        second = await load_demo(session)
        showtimes = await session.scalar(select(func.count()).select_from(Showtime))
        screens = (await session.scalars(select(Screen))).all()
        imax = next(s for s in screens if s.hall_type == "IMAX")
        imax_classes = Counter(
            (await session.scalars(select(Seat.seat_class).where(Seat.screen_id == imax.id))).all()
        )
        days = {
            start.date() for start in (await session.scalars(select(Showtime.start_time))).all()
        }
    assert "added 4 accounts" in first
    assert "added 0 accounts, 0 showtimes and 0 snacks" in second

    cities = (await client.get("/api/cities")).json()["cities"]
    theaters = (await client.get("/api/theaters")).json()["theaters"]
    movies = (await client.get("/api/movies", params={"limit": 100})).json()["movies"]
    assert len(cities) == 2
    assert len(theaters) == 3
    assert len(screens) >= 5
    assert {"VIP", "IMAX"} <= {s.hall_type for s in screens}
    assert imax.capacity == 300
    assert imax_classes["wheelchair"] > 0
    assert imax_classes["couple"] > 0
    assert len(movies) == 8
    assert showtimes
    # A week ahead: today's shows may all be over already (late in the evening).
    assert len(days) >= 6
    assert max(days) - dt.datetime.now(dt.UTC).date() >= dt.timedelta(days=6)

    # The commerce side: a menu, a code for first bookings, theater VAT rates.
    snacks = (await client.get("/api/snacks")).json()["snacks"]
    assert len(snacks) == 5
    assert all(s["available"] for s in snacks)
    assert {t["vatRate"] for t in theaters} == {"0.0700", "0.2000"}

    for account in DEMO_ACCOUNTS:
        login = await client.post(
            "/api/auth/login", json={"email": account.email, "password": account.password}
        )
        assert login.status_code == 200, login.text
        assert login.json()["user"]["role"] == account.role
