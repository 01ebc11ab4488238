"""Bookings over HTTP: from a live hold to a priced pending booking, idempotent creation,
reading, listing, paying (the whole customer path) and cancelling an unpaid booking."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from boxoffice.accounts.models import User
from boxoffice.booking.models import Booking
from boxoffice.core.clock import utcnow
from boxoffice.payments.models import Payment
from boxoffice.scheduling.models import ShowtimeSeat
from boxoffice.venues.models import Seat
from tests.booking_helpers import (
    DECLINE_CARD,
    SUCCESS_CARD,
    book,
    book_and_pay,
    book_hold,
    hold,
    pay,
    seat_statuses,
    seed_showtime,
)
from tests.helpers import make_user

UNAMBIGUOUS = set("23456789ABCDEFGHJKMNPQRSTUVWXYZ")
MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def _count_bookings(app: FastAPI, user_id: uuid.UUID) -> int:
    async with app.state.db.session(write=False) as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Booking).where(Booking.user_id == user_id)
            )
            or 0
        )


async def _payment_status(app: FastAPI, intent_id: str) -> str:
    async with app.state.db.session(write=False) as session:
        status = await session.scalar(
            select(Payment.status).where(Payment.provider_ref == intent_id)
        )
        assert status is not None
        return status


# ---------------------------------------------------------------------------------------------
# Creating a booking


async def test_booking_from_a_live_hold_is_priced_by_the_server(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # VIP hall (x1.5); C4 premium (x1.2), C5 standard: 10.00 * 1.5 * 1.2 + 10.00 * 1.5.
    show = await seed_showtime(app, hall_type="VIP", classes={"C4": "premium"})
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "C4", "C5")).json()["lockToken"]

    # The client cannot name a price.
    priced = await book_hold(
        client, ann.headers, show.showtime_id, token, "C4", "C5", totalAmount="0.01"
    )
    assert priced.status_code == 422

    response = await book_hold(client, ann.headers, show.showtime_id, token, "C5", "C4")
    assert response.status_code == 201, response.text
    answer = response.json()
    booking = answer["booking"]
    reference = booking["bookingReference"]
    assert len(reference) == 8
    assert set(reference) <= UNAMBIGUOUS, reference
    assert booking["status"] == "pending"
    assert booking["userId"] == str(ann.id)
    assert booking["showtimeId"] == show.showtime_id
    assert booking["seatNumbers"] == ["C4", "C5"]
    assert {line["seatLabel"]: line["unitPrice"] for line in booking["lines"]} == {
        "C4": "18.00",
        "C5": "15.00",
    }
    assert booking["totalAmount"] == "33.00"
    assert booking["discountAmount"] == "0.00"
    assert booking["finalAmount"] == "33.00"
    assert booking["currency"] == "EUR"
    deadline = _parse(booking["expiresAt"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=890) < deadline <= dt.timedelta(seconds=900)
    assert answer["paymentClientSecret"]
    assert answer["paymentIntentId"]
    assert await _payment_status(app, answer["paymentIntentId"]) == "pending"
    seats = await seat_statuses(client, show.showtime_id, ann.headers)
    assert seats["C4"]["status"] == seats["C5"]["status"] == "held"


async def test_booking_keeps_the_seats_until_the_payment_deadline(
    make_client: MakeClient, app: FastAPI
) -> None:
    client = await make_client(hold_ttl=1, expiry_interval_seconds=0)
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    answer = await book(client, ann.headers, show.showtime_id, "B2", "B3")

    await asyncio.sleep(1.5)  # the hold's own TTL is over; the booking's deadline is not
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["B2"]["status"] == seats["B3"]["status"] == "held"
    taken = await hold(client, bob.headers, show.showtime_id, "B3", "B4")
    assert taken.status_code == 409
    assert taken.json()["seats"] == ["B3"]
    best = await client.post(
        "/api/bookings/lock-best",
        json={"showtimeId": show.showtime_id, "quantity": 1},
        headers=bob.headers,
    )
    assert best.status_code == 201
    assert not {"B2", "B3"} & set(best.json()["lockedSeats"])

    paid = await pay(client, ann.headers, answer["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["bookingStatus"] == "confirmed"


async def test_a_hold_whose_seat_lapsed_cannot_be_booked(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # The hold is alive, but one of its seats is no longer held by it (its time on that seat
    # ran out, say): nothing is booked, and its other seat stays as it was.
    show = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A1", "A2")).json()["lockToken"]
    async with app.state.db.session() as session:
        screen, showtime = uuid.UUID(show.screen_id), uuid.UUID(show.showtime_id)
        a2 = select(Seat.id).where(Seat.screen_id == screen, Seat.label == "A2")
        await session.execute(
            update(ShowtimeSeat)
            .where(ShowtimeSeat.showtime_id == showtime, ShowtimeSeat.seat_id.in_(a2))
            .values(held_until=utcnow() - dt.timedelta(seconds=1))
        )
    response = await book_hold(client, ann.headers, show.showtime_id, token, "A1", "A2")
    assert response.status_code == 410, response.text
    assert response.json()["code"] == "hold_expired"
    assert await _count_bookings(app, ann.id) == 0
    seats = await seat_statuses(client, show.showtime_id)
    assert (seats["A1"]["status"], seats["A2"]["status"]) == ("held", "available")


async def test_an_expired_hold_cannot_be_booked(make_client: MakeClient, app: FastAPI) -> None:
    client = await make_client(hold_ttl=1, expiry_interval_seconds=0)
    show = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A1")).json()["lockToken"]
    await asyncio.sleep(1.2)
    response = await book_hold(client, ann.headers, show.showtime_id, token, "A1")
    assert response.status_code == 410
    assert response.json()["code"] == "hold_expired"
    assert await _count_bookings(app, ann.id) == 0


async def test_someone_elses_or_an_unknown_hold_is_not_found(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A1")).json()["lockToken"]
    theirs = await book_hold(client, bob.headers, show.showtime_id, token, "A1")
    assert theirs.status_code == 404
    unknown = await book_hold(client, bob.headers, show.showtime_id, str(uuid.uuid4()), "A1")
    assert unknown.status_code == 404
    anonymous = await book_hold(client, {}, show.showtime_id, token, "A1")
    assert anonymous.status_code == 401
    assert await _count_bookings(app, bob.id) == 0
    # Ann's hold is untouched and still bookable.
    assert (await book_hold(client, ann.headers, show.showtime_id, token, "A1")).status_code == 201


async def test_the_booking_must_match_the_hold(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)
    other = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A1", "A2")).json()["lockToken"]
    for showtime_id, labels in [
        (show.showtime_id, ("A1", "A3")),  # another seat
        (show.showtime_id, ("A1",)),  # fewer seats
        (show.showtime_id, ("A1", "A2", "A3")),  # more seats
        (other.showtime_id, ("A1", "A2")),  # another showtime
    ]:
        response = await book_hold(client, ann.headers, showtime_id, token, *labels)
        assert response.status_code == 409, (showtime_id, labels, response.text)
        assert response.json()["code"] == "hold_mismatch"
    assert await _count_bookings(app, ann.id) == 0
    assert (
        await book_hold(client, ann.headers, show.showtime_id, token, "A1", "A2")
    ).status_code == 201


async def test_a_hold_is_booked_once(app: FastAPI, client: httpx.AsyncClient) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A1")).json()["lockToken"]
    first = await book_hold(client, ann.headers, show.showtime_id, token, "A1")
    assert first.status_code == 201
    again = await book_hold(client, ann.headers, show.showtime_id, token, "A1")
    assert again.status_code == 409
    assert again.json()["code"] == "hold_already_booked"
    assert await _count_bookings(app, ann.id) == 1


async def test_idempotency_key_replays_the_first_answer(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A1", "A2")).json()["lockToken"]
    key = f"book-{uuid.uuid4()}"
    first = await book_hold(client, ann.headers, show.showtime_id, token, "A1", "A2", key=key)
    assert first.status_code == 201, first.text
    replay = await book_hold(client, ann.headers, show.showtime_id, token, "A1", "A2", key=key)
    assert replay.status_code == 201, replay.text
    assert replay.json() == first.json()
    assert await _count_bookings(app, ann.id) == 1

    other_body = await book_hold(client, ann.headers, show.showtime_id, token, "A1", key=key)
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"
    # Keys belong to their user: Bob's request with Ann's key is his own (and not his hold).
    bobs = await book_hold(client, bob.headers, show.showtime_id, token, "A1", "A2", key=key)
    assert bobs.status_code == 404
    assert await _count_bookings(app, ann.id) == 1


async def test_concurrent_requests_with_one_key_book_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "B1", "B2")).json()["lockToken"]
    key = f"book-{uuid.uuid4()}"
    responses = await asyncio.gather(
        *(
            book_hold(client, ann.headers, show.showtime_id, token, "B1", "B2", key=key)
            for _ in range(5)
        )
    )
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {201, 409}, [r.text for r in responses]
    assert codes[201] >= 1
    booked = {r.json()["booking"]["id"] for r in responses if r.status_code == 201}
    assert len(booked) == 1
    assert all(
        r.json()["code"] == "idempotency_in_progress" for r in responses if r.status_code == 409
    )
    assert await _count_bookings(app, ann.id) == 1
    # Once the first has finished, a repeat gets its answer.
    replay = await book_hold(client, ann.headers, show.showtime_id, token, "B1", "B2", key=key)
    assert replay.status_code == 201
    assert {replay.json()["booking"]["id"]} == booked


async def test_a_refused_extra_takes_nothing_and_leaves_the_hold_usable(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A1")).json()["lockToken"]
    for extra, status, code in (
        ({"snacks": [{"snackId": str(uuid.uuid4()), "quantity": 1}]}, 404, "snack_not_found"),
        ({"promoCode": "SUMMER"}, 422, "promo_invalid"),
        ({"pointsToRedeem": 100}, 422, "points_insufficient"),
    ):
        response = await book_hold(client, ann.headers, show.showtime_id, token, "A1", **extra)
        assert (response.status_code, response.json()["code"]) == (status, code), extra
    assert await _count_bookings(app, ann.id) == 0
    # Nothing of the refused attempts stuck: the same hold still books.
    response = await book_hold(client, ann.headers, show.showtime_id, token, "A1")
    assert response.status_code == 201, response.text
    assert await _count_bookings(app, ann.id) == 1


# ---------------------------------------------------------------------------------------------
# Reading


async def test_owner_and_staff_read_a_booking_others_do_not(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    cashier = await make_user(app, "cashier")
    booking = (await book(client, ann.headers, show.showtime_id, "A1"))["booking"]
    url = f"/api/bookings/{booking['id']}"

    own = await client.get(url, headers=ann.headers)
    assert own.status_code == 200, own.text
    body = own.json()
    assert set(body) == {"booking", "showtime", "movie", "theater", "screen"}
    assert body["booking"]["id"] == booking["id"]
    assert body["booking"]["bookingReference"] == booking["bookingReference"]
    assert body["booking"]["status"] == "pending"
    assert body["showtime"]["id"] == show.showtime_id
    assert body["movie"]["id"] == show.movie_id
    assert body["theater"]["id"] == show.theater_id
    assert body["screen"]["id"] == show.screen_id

    assert (await client.get(url, headers=bob.headers)).status_code == 404
    assert (await client.get(url)).status_code == 401
    assert (await client.get(f"/api/bookings/{uuid.uuid4()}", headers=ann.headers)).status_code == (
        404
    )
    staff = await client.get(url, headers=cashier.headers)
    assert staff.status_code == 200
    assert staff.json()["booking"]["id"] == booking["id"]


async def test_my_bookings_newest_first_and_paginated(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    ids = [
        (await book(client, ann.headers, show.showtime_id, f"A{n}"))["booking"]["id"]
        for n in (1, 2, 3)
    ]
    await book(client, bob.headers, show.showtime_id, "B1")

    first = await client.get("/api/me/bookings?page=1&limit=2", headers=ann.headers)
    assert first.status_code == 200, first.text
    assert [b["id"] for b in first.json()["bookings"]] == [ids[2], ids[1]]
    pagination = first.json()["pagination"]
    assert (pagination["total"], pagination["totalPages"]) == (3, 2)
    second = await client.get("/api/me/bookings?page=2&limit=2", headers=ann.headers)
    assert [b["id"] for b in second.json()["bookings"]] == [ids[0]]
    assert second.json()["bookings"][0]["seatNumbers"] == ["A1"]
    assert (await client.get("/api/me/bookings")).status_code == 401


# ---------------------------------------------------------------------------------------------
# Paying


async def test_hold_book_pay_confirms_sells_the_seats_and_issues_tickets(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    answer = await book(client, ann.headers, show.showtime_id, "D4", "D5")
    booking_id = answer["booking"]["id"]
    before = await client.get(f"/api/bookings/{booking_id}/tickets", headers=ann.headers)
    assert before.status_code == 409  # nothing issued while unpaid

    paid = await pay(client, ann.headers, answer["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"
    assert paid.json()["bookingStatus"] == "confirmed"

    booking = (await client.get(f"/api/bookings/{booking_id}", headers=ann.headers)).json()
    assert booking["booking"]["status"] == "confirmed"
    assert booking["booking"]["confirmedAt"] is not None
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["D4"]["status"] == seats["D5"]["status"] == "booked"
    showtime = (await client.get(f"/api/showtimes/{show.showtime_id}")).json()
    assert showtime["availableSeats"] == 40 - 2
    tickets = (await client.get(f"/api/bookings/{booking_id}/tickets", headers=ann.headers)).json()
    assert sorted(t["seatLabel"] for t in tickets["tickets"]) == ["D4", "D5"]
    assert all(t["qrToken"] and t["status"] == "valid" for t in tickets["tickets"])

    # Paying again is harmless: no second charge, no more tickets.
    again = await pay(client, ann.headers, answer["paymentIntentId"])
    assert again.status_code == 200, again.text
    assert again.json()["bookingStatus"] == "confirmed"
    tickets_again = await client.get(f"/api/bookings/{booking_id}/tickets", headers=ann.headers)
    assert tickets_again.json() == tickets
    assert await _payment_status(app, answer["paymentIntentId"]) == "succeeded"


@pytest.mark.parametrize(
    "change", ["is_active", "password_changed_at", "sessions_revoked_at", "email_verified_at"]
)
async def test_a_closed_account_or_stale_token_neither_books_nor_pays(
    make_client: MakeClient, app: FastAPI, change: str
) -> None:
    """Book and pay refuse a deactivated account and tokens from before a password change or
    a "sign out everywhere" (401), and change nothing: also for a hold or an intent that does
    not exist (the account is judged first, with the hold or payment where it is read along)
    and for a repeat of a kept answer (Idempotency-Key). With verified addresses required, an
    address that is no longer verified may not book (403) but may still pay what it booked."""
    client = await make_client(require_verified_email=True)
    show = await seed_showtime(app)
    ann = await make_user(app)
    booked = await book(client, ann.headers, show.showtime_id, "A1")
    held = await hold(client, ann.headers, show.showtime_id, "A2")
    assert held.status_code == 201, held.text
    kept = await hold(client, ann.headers, show.showtime_id, "A3")
    kept_token = kept.json()["lockToken"]
    keyed = await book_hold(client, ann.headers, show.showtime_id, kept_token, "A3", key="once")
    assert keyed.status_code == 201, keyed.text

    async def pay_once(intent_id: str) -> httpx.Response:
        return await client.post(
            "/api/payments/local/confirm",
            json={"paymentIntentId": intent_id, "card": SUCCESS_CARD},
            headers={**ann.headers, "Idempotency-Key": "paid-once"},
        )

    assert (await pay_once(keyed.json()["paymentIntentId"])).status_code == 200
    later = utcnow() + dt.timedelta(minutes=1)
    value = {"is_active": False, "email_verified_at": None}.get(change, later)
    async with app.state.db.session() as session:
        await session.execute(update(User).where(User.id == ann.id).values({change: value}))

    booking = await book_hold(client, ann.headers, show.showtime_id, held.json()["lockToken"], "A2")
    paid = await pay(client, ann.headers, booked["paymentIntentId"])
    no_hold = await book_hold(client, ann.headers, show.showtime_id, str(uuid.uuid4()), "A4")
    no_intent = await pay(client, ann.headers, "pi_local_no_such_intent")
    book_again = await book_hold(
        client, ann.headers, show.showtime_id, kept_token, "A3", key="once"
    )
    pay_again = await pay_once(keyed.json()["paymentIntentId"])
    if change == "email_verified_at":
        for refused in (booking, no_hold, book_again):
            assert (refused.status_code, refused.json()["code"]) == (403, "email_not_verified")
        assert (paid.status_code, pay_again.status_code) == (200, 200), paid.text
        assert no_intent.status_code == 404, no_intent.text
        return
    for refused in (booking, paid, no_hold, no_intent, book_again, pay_again):
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "invalid_token"
    async with app.state.db.session() as session:
        statuses = (await session.scalars(select(Payment.status))).all()
        bookings = (await session.scalar(select(func.count()).select_from(Booking))) or 0
    assert (sorted(statuses), bookings) == (["pending", "succeeded"], 2)


async def test_a_declined_card_leaves_the_booking_pending_to_pay_again(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    answer = await book(client, ann.headers, show.showtime_id, "C1")
    url = f"/api/bookings/{answer['booking']['id']}"

    declined = await pay(client, ann.headers, answer["paymentIntentId"], DECLINE_CARD)
    assert declined.status_code == 402
    assert declined.json()["code"] == "card_declined"
    assert (await client.get(url, headers=ann.headers)).json()["booking"]["status"] == "pending"
    assert (await seat_statuses(client, show.showtime_id))["C1"]["status"] == "held"

    paid = await pay(client, ann.headers, answer["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    assert (await client.get(url, headers=ann.headers)).json()["booking"]["status"] == "confirmed"
    assert (await seat_statuses(client, show.showtime_id))["C1"]["status"] == "booked"


# ---------------------------------------------------------------------------------------------
# Cancelling an unpaid booking (confirmed ones: see test_refunds.py)


async def test_cancelling_a_pending_booking_frees_its_seats_and_cancels_the_intent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    answer = await book(client, ann.headers, show.showtime_id, "E1", "E2")
    booking_id = answer["booking"]["id"]

    assert (
        await client.post(f"/api/bookings/{booking_id}/cancel", headers=bob.headers)
    ).status_code == 404
    cancelled = await client.post(f"/api/bookings/{booking_id}/cancel", headers=ann.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["E1"]["status"] == seats["E2"]["status"] == "available"
    assert await _payment_status(app, answer["paymentIntentId"]) == "cancelled"
    late = await pay(client, ann.headers, answer["paymentIntentId"])
    assert late.status_code == 409
    assert (await hold(client, bob.headers, show.showtime_id, "E1", "E2")).status_code == 201

    twice = await client.post(f"/api/bookings/{booking_id}/cancel", headers=ann.headers)
    assert twice.status_code == 409
    assert twice.json()["code"] == "booking_not_cancellable"
    read = await client.get(f"/api/bookings/{booking_id}", headers=ann.headers)
    assert read.json()["booking"]["status"] == "cancelled"


async def test_a_booked_hold_cannot_be_released_or_rebooked_after_cancel(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "A3")).json()["lockToken"]
    booking = (await book_hold(client, ann.headers, show.showtime_id, token, "A3")).json()
    released = await client.delete(f"/api/bookings/lock-seats/{token}", headers=ann.headers)
    assert released.status_code == 409
    assert (await seat_statuses(client, show.showtime_id))["A3"]["status"] == "held"
    await client.post(f"/api/bookings/{booking['booking']['id']}/cancel", headers=ann.headers)
    again = await book_hold(client, ann.headers, show.showtime_id, token, "A3")
    assert again.status_code == 409
    assert await _count_bookings(app, ann.id) == 1
    # A fresh hold books the seat again.
    assert (await book_and_pay(client, ann.headers, show.showtime_id, "A3"))["id"]


async def test_concurrent_bookings_of_one_hold_make_one_booking(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    token = (await hold(client, ann.headers, show.showtime_id, "C1", "C2")).json()["lockToken"]
    responses = await asyncio.gather(
        *(book_hold(client, ann.headers, show.showtime_id, token, "C1", "C2") for _ in range(5))
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 409: 4}, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"hold_already_booked"}
    assert await _count_bookings(app, ann.id) == 1


async def test_cancel_racing_the_payment_ends_consistent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Whichever comes first wins; the other is refused or undone, never a 500."""
    show = await seed_showtime(app)
    users = [await make_user(app) for _ in range(4)]
    answers = [
        await book(client, user.headers, show.showtime_id, f"D{2 * n + 1}", f"D{2 * n + 2}")
        for n, user in enumerate(users)
    ]
    results = await asyncio.gather(
        *(
            call
            for user, answer in zip(users, answers, strict=True)
            for call in (
                pay(client, user.headers, answer["paymentIntentId"]),
                client.post(
                    f"/api/bookings/{answer['booking']['id']}/cancel", headers=user.headers
                ),
            )
        )
    )
    assert all(r.status_code < 500 for r in results), [r.text for r in results]
    seats = await seat_statuses(client, show.showtime_id)
    for user, answer in zip(users, answers, strict=True):
        booking_id = answer["booking"]["id"]
        status = (await client.get(f"/api/bookings/{booking_id}", headers=user.headers)).json()[
            "booking"
        ]["status"]
        payment = await _payment_status(app, answer["paymentIntentId"])
        # Cancelled before the money came (the intent died with it), or paid then refunded.
        assert (status, payment) in {("cancelled", "cancelled"), ("refunded", "refunded")}
        labels = answer["booking"]["seatNumbers"]
        assert {seats[label]["status"] for label in labels} == {"available"}
