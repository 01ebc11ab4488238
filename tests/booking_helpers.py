"""Shared set-up for the booking tests: a showtime on sale and customers to race for it."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI

from boxoffice.booking.verdicts import HoldRequest
from boxoffice.core.clock import utcnow
from tests.factories import make_city, make_movie, make_screen, make_showtime, make_theater


async def seed_showtime(
    app: FastAPI,
    *,
    rows: int = 5,
    seats_per_row: int = 8,
    hall_type: str = "STANDARD",
    classes: dict[str, str] | None = None,
    starts_in: dt.timedelta = dt.timedelta(days=2),
    base_price: Decimal = Decimal("10.00"),
) -> SimpleNamespace:
    async with app.state.db.session() as session:
        city = await make_city(session)
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
        showtime = await make_showtime(
            session,
            screen,
            movie,
            start_time=dt.datetime.now(dt.UTC).replace(microsecond=0) + starts_in,
            base_price=base_price,
        )
        return SimpleNamespace(
            showtime_id=str(showtime.id),
            screen_id=str(screen.id),
            theater_id=str(theater.id),
            movie_id=str(movie.id),
            start_time=showtime.start_time,
        )


async def hold(
    client: httpx.AsyncClient, headers: dict[str, str], showtime_id: str, *labels: str
) -> httpx.Response:
    return await client.post(
        "/api/bookings/lock-seats",
        json={"showtimeId": showtime_id, "seatNumbers": list(labels)},
        headers=headers,
    )


async def seat_statuses(
    client: httpx.AsyncClient, showtime_id: str, headers: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    response = await client.get(f"/api/showtimes/{showtime_id}/seats", headers=headers or {})
    assert response.status_code == 200, response.text
    return {seat["label"]: seat for row in response.json()["rows"] for seat in row["seats"]}


SUCCESS_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"


async def book_hold(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    showtime_id: str,
    lock_token: str,
    *labels: str,
    key: str | None = None,
    **extra: Any,
) -> httpx.Response:
    """`POST /api/bookings` for a hold (`extra`: more body fields, e.g. promoCode)."""
    body = {"showtimeId": showtime_id, "seatNumbers": list(labels), "lockToken": lock_token}
    return await client.post(
        "/api/bookings",
        json={**body, **extra},
        headers={**headers, "Idempotency-Key": key} if key else headers,
    )


async def book(
    client: httpx.AsyncClient, headers: dict[str, str], showtime_id: str, *labels: str
) -> dict[str, Any]:
    """Hold the seats and book them; the `{booking, paymentClientSecret, paymentIntentId}`."""
    held = await hold(client, headers, showtime_id, *labels)
    assert held.status_code == 201, held.text
    booked = await book_hold(client, headers, showtime_id, held.json()["lockToken"], *labels)
    assert booked.status_code == 201, booked.text
    answer: dict[str, Any] = booked.json()
    return answer


async def pay(
    client: httpx.AsyncClient, headers: dict[str, str], intent_id: str, card: str = SUCCESS_CARD
) -> httpx.Response:
    """The local provider's card form."""
    return await client.post(
        "/api/payments/local/confirm",
        json={"paymentIntentId": intent_id, "card": card},
        headers=headers,
    )


async def book_and_pay(
    client: httpx.AsyncClient, headers: dict[str, str], showtime_id: str, *labels: str
) -> dict[str, Any]:
    """A confirmed booking of the seats, through hold, book and pay; the booking."""
    answer = await book(client, headers, showtime_id, *labels)
    paid = await pay(client, headers, answer["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["bookingStatus"] == "confirmed", paid.text
    booking: dict[str, Any] = answer["booking"]
    return booking


def hold_request(
    user_id: uuid.UUID,
    showtime_id: uuid.UUID,
    labels: list[str],
    *,
    max_held: int = 0,
    token_issued_at: dt.datetime | None = None,
) -> HoldRequest:
    """What PostgreSQL's hold statement is asked, for tests that run it directly: a new hold
    of these seats now, for ten minutes, on a showtime open for sale."""
    now = utcnow()
    return HoldRequest(
        hold_id=uuid.uuid4(),
        user_id=user_id,
        showtime_id=showtime_id,
        labels=labels,
        now=now,
        expires=now + dt.timedelta(minutes=10),
        closes_after=now,
        need_verified=False,
        max_held=max_held,
        token_issued_at=token_issued_at,
    )
