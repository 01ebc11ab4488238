"""The benchmark's purchase ceiling (bench/ceilings.py) does a purchase's database work.

`make bench` reports the app's purchases as a fraction of raw one-statement purchases on the
same server. That ratio means something only while the raw statements write what the app's
purchase writes: here both buy two seats on the same showtime and must grow the same tables,
leave the seats sold and the tickets listed. A migration that adds a required column or a
table a purchase fills breaks this test instead of quietly flattering the ratio.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from bench.ceilings import create_bench_app
from fastapi import FastAPI
from sqlalchemy import select, text

from boxoffice.documents.models import Invoice
from boxoffice.models import Base
from tests.booking_helpers import book_and_pay, seat_statuses, seed_showtime
from tests.conftest import Backend, make_settings, settle_jobs
from tests.helpers import make_user

# The backends the benchmark runs on (raw asyncpg on PostgreSQL, sqlite3 on SQLite).
pytestmark = pytest.mark.backends("postgres", "sqlite")


@pytest.fixture
async def bench_app(backend: Backend, tmp_path: Path) -> AsyncIterator[FastAPI]:
    application = create_bench_app(make_settings(backend, tmp_path))
    async with LifespanManager(application):
        yield application


async def _row_counts(app: FastAPI) -> dict[str, int]:
    tables = [table.name for table in Base.metadata.sorted_tables]
    query = " UNION ALL ".join(f"SELECT '{name}', count(*) FROM {name}" for name in tables)
    async with app.state.db.engine.connect() as connection:
        rows = (await connection.execute(text(query))).all()
    return {str(row[0]): int(row[1]) for row in rows}


def _grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


async def test_the_raw_purchase_writes_what_the_apps_purchase_writes(
    app: FastAPI, bench_app: FastAPI
) -> None:
    await settle_jobs(app)  # the shared app's jobs of earlier tests write nothing meanwhile
    showtime = await seed_showtime(bench_app)
    user = await make_user(bench_app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bench_app), base_url="http://testserver"
    ) as client:
        start = await _row_counts(bench_app)
        booking = await book_and_pay(client, user.headers, showtime.showtime_id, "A1", "A2")
        tickets = await client.get(f"/api/bookings/{booking['id']}/tickets", headers=user.headers)
        assert tickets.status_code == 200, tickets.text
        await settle_jobs(bench_app)  # the confirmation mail, in the server here
        after_app = await _row_counts(bench_app)

        held = await client.post(
            "/bench/raw/lock-seats",
            json={
                "showtimeId": showtime.showtime_id,
                "seatNumbers": ["B1", "B2"],
                "userId": str(user.id),
            },
        )
        assert held.status_code == 201, held.text
        assert held.json()["taken"] == 2
        token = held.json()["lockToken"]
        booked = await client.post(
            "/bench/raw/bookings", json={"lockToken": token, "userId": str(user.id)}
        )
        assert booked.status_code == 201, booked.text
        again = await client.post(
            "/bench/raw/bookings", json={"lockToken": token, "userId": str(user.id)}
        )
        assert again.status_code == 409  # the hold became that booking
        ref = booked.json()["paymentIntentId"]
        paid = await client.post("/bench/raw/payments/confirm", json={"paymentIntentId": ref})
        assert paid.status_code == 200, paid.text
        repeated = await client.post("/bench/raw/payments/confirm", json={"paymentIntentId": ref})
        assert repeated.status_code == 409  # sold once
        booking_id = booked.json()["booking"]["id"]
        listed = await client.get(f"/bench/raw/bookings/{booking_id}/tickets?user={user.id}")
        after_raw = await _row_counts(bench_app)
        statuses = await seat_statuses(client, showtime.showtime_id)
    async with bench_app.state.db.engine.connect() as connection:
        of_theater = Invoice.theater_id == uuid.UUID(showtime.theater_id)
        invoices = select(Invoice.number).where(of_theater).order_by(Invoice.number)
        numbers = list((await connection.execute(invoices)).scalars())

    assert sorted(t["seatNumber"] for t in listed.json()["tickets"]) == ["B1", "B2"]
    sold = ("A1", "A2", "B1", "B2")
    assert {label: statuses[label]["status"] for label in sold} == dict.fromkeys(sold, "booked")
    by_app, by_raw = _grown(start, after_app), _grown(after_app, after_raw)
    # The theater-year's invoice counter is a row the first invoice inserts and the next
    # ones count on: the raw purchase's invoice has the number after the app's.
    assert by_app.pop("invoice_counters") == 1
    assert by_app.keys() == by_raw.keys(), (by_app, by_raw)
    assert numbers == [1, 2]
    for table in ("booking_lines", "tickets"):
        assert by_app[table] == by_raw[table] == 2
    for table in ("bookings", "payments", "invoices", "notifications"):
        assert by_app[table] == by_raw[table] == 1
