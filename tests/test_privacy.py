"""Privacy: the data export (GDPR access), erasure of the account (`DELETE /api/me`), the
retention purge of never-verified accounts, and secrets kept out of the logs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from email import message_from_bytes
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from boxoffice.accounts.models import AccountToken, LoginFailure, RefreshToken, User
from boxoffice.audit.models import AuditEntry
from boxoffice.booking.models import Booking, Hold
from boxoffice.catalog.models import Movie
from boxoffice.concessions.models import Snack
from boxoffice.core.db import Base
from boxoffice.core.logging import REDACTED, RedactingFilter, configure_logging, redact, scrub
from boxoffice.documents.models import Invoice
from boxoffice.notifications.models import Notification
from boxoffice.payments.models import Payment
from boxoffice.privacy.export import USER_TABLES, email_key
from boxoffice.privacy.jobs import purge_unverified_accounts
from boxoffice.promotions.models import PromoCode
from boxoffice.reviews.models import Review
from boxoffice.storage.local import LocalStorage
from tests.booking_helpers import book, book_and_pay, book_hold, hold, pay, seat_statuses
from tests.booking_helpers import seed_showtime as seed_show
from tests.conftest import Backend, make_settings, settle_jobs
from tests.factories import make_confirmed_booking
from tests.helpers import DEFAULT_PASSWORD, TestUser, make_user

EXPORT = "/api/me/export"
MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


# ---------------------------------------------------------------------------------------------
# helpers


async def register(
    client: httpx.AsyncClient, email: str | None = None, phone: str | None = "+49 30 1234567"
) -> dict[str, Any]:
    email = email or f"anna-{uuid.uuid4().hex[:8]}@example.com"
    body: dict[str, Any] = {"email": email, "password": DEFAULT_PASSWORD, "fullName": "Anna Lind"}
    if phone:
        body["phone"] = phone
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    answer["email"] = email
    answer["headers"] = {"Authorization": f"Bearer {answer['accessToken']}"}
    return answer


async def add_snack(client: httpx.AsyncClient, admin: TestUser, stock: int | None = 10) -> str:
    response = await client.post(
        "/api/admin/snacks",
        json={"name": "Popcorn", "category": "popcorn", "price": "6.50", "stock": stock},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add_promo(client: httpx.AsyncClient, admin: TestUser, code: str) -> None:
    response = await client.post(
        "/api/admin/promocodes",
        json={"code": code, "kind": "percentage", "value": "10"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text


async def check_in_all(
    client: httpx.AsyncClient, booking_id: str, owner: dict[str, str], cashier: TestUser
) -> None:
    tickets = await client.get(f"/api/bookings/{booking_id}/tickets", headers=owner)
    assert tickets.status_code == 200, tickets.text
    for ticket in tickets.json()["tickets"]:
        scan = await client.post(
            "/api/checkin", json={"qrToken": ticket["qrToken"]}, headers=cashier.headers
        )
        assert scan.status_code == 200, scan.text
        assert scan.json()["result"] == "valid", scan.text


async def review(
    client: httpx.AsyncClient, movie_id: str, headers: dict[str, str], rating: int, text: str
) -> str:
    response = await client.post(
        f"/api/movies/{movie_id}/reviews", json={"rating": rating, "text": text}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def movie_of(client: httpx.AsyncClient, movie_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/movies/{movie_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def export_of(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get(EXPORT, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment;")
    body: dict[str, Any] = response.json()
    return body


async def user_row(app: FastAPI, user_id: uuid.UUID | str) -> User | None:
    async with app.state.db.session() as session:
        return await session.get(User, uuid.UUID(str(user_id)))


async def count(app: FastAPI, statement: Any) -> int:
    async with app.state.db.session() as session:
        return int(await session.scalar(statement) or 0)


# ---------------------------------------------------------------------------------------------
# coverage of the schema


def test_every_table_that_refers_to_users_is_exported_and_has_an_erasure_rule() -> None:
    """A new table with a foreign key to users.id must be added to the export and to the
    erasure rules (privacy/export.py USER_TABLES), or this fails."""
    referring = {
        table.name
        for table in Base.metadata.tables.values()
        for fk in table.foreign_keys
        if fk.column.table.name == "users"
    }
    assert referring, "the metadata lost its tables"
    missing = sorted(referring - set(USER_TABLES))
    assert not missing, f"tables referring to users not covered by privacy: {missing}"
    assert set(USER_TABLES) <= {*referring, "users"}  # no stale names either


# ---------------------------------------------------------------------------------------------
# export


async def test_export_contains_every_area_of_the_customers_data(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_show(app, starts_in=dt.timedelta(minutes=20))
    admin = await make_user(app, "admin")
    cashier = await make_user(app, "cashier")
    snack_id = await add_snack(client, admin)
    await add_promo(client, admin, "WELCOME10")
    anna = await register(client)
    headers = anna["headers"]
    await client.patch("/api/me", json={"locale": "de"}, headers=headers)
    wrong = await client.post(
        "/api/auth/login", json={"email": anna["email"], "password": "Not-The-Password-1"}
    )
    assert wrong.status_code == 401

    # A booking with a promo code and a snack, paid and checked in (points, used tickets).
    held = await hold(client, headers, show.showtime_id, "A1", "A2")
    assert held.status_code == 201, held.text
    booked = await book_hold(
        client,
        headers,
        show.showtime_id,
        held.json()["lockToken"],
        "A1",
        "A2",
        promoCode="welcome10",
        snacks=[{"snackId": snack_id, "quantity": 2}],
    )
    assert booked.status_code == 201, booked.text
    paid = await pay(client, headers, booked.json()["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    booking_id = booked.json()["booking"]["id"]
    await check_in_all(client, booking_id, headers, cashier)
    # A second booking, refunded by staff.
    refunded = await book_and_pay(client, headers, show.showtime_id, "C1")
    refund = await client.post(
        "/api/payments/refund", json={"bookingId": refunded["id"]}, headers=admin.headers
    )
    assert refund.status_code == 200, refund.text
    # A snack preorder, and a live hold.
    preorder = await client.post(
        "/api/concessions/preorders",
        json={"showtimeId": show.showtime_id, "snacks": [{"snackId": snack_id, "quantity": 1}]},
        headers={**headers, "Idempotency-Key": "preorder-1"},
    )
    assert preorder.status_code == 201, preorder.text
    assert (await hold(client, headers, show.showtime_id, "D1")).status_code == 201
    # A review, and a helpful vote on another customer's review.
    await review(client, show.movie_id, headers, 5, "Loved it.")
    other = await make_user(app)
    async with app.state.db.session() as session:
        other_booking, _ = await make_confirmed_booking(
            session, other.id, uuid.UUID(show.showtime_id), ["B1"]
        )
    await check_in_all(client, str(other_booking.id), other.headers, cashier)
    other_review = await review(client, show.movie_id, other.headers, 3, "Fine.")
    vote = await client.post(
        f"/api/movies/{show.movie_id}/reviews/{other_review}/helpful", headers=headers
    )
    assert vote.status_code in (200, 201), vote.text

    body = await export_of(client, headers)
    text = json.dumps(body)

    profile = body["profile"]
    assert profile["id"] == anna["user"]["id"]
    assert profile["email"] == anna["email"]
    assert profile["fullName"] == "Anna Lind"
    assert profile["phone"] == "+49 30 1234567"
    assert profile["mfaEnabled"] is False
    assert body["notificationPreferences"]["locale"] == "de"
    assert body["sessions"]
    assert all("userAgent" in s for s in body["sessions"])
    assert [t["purpose"] for t in body["accountTokens"]] == ["verify_email"]
    assert {r["scope"] for r in body["signInRecords"]} >= {"account", "pair"}
    assert all("accountKey" not in r for r in body["signInRecords"])
    assert {h["status"] for h in body["holds"]} >= {"converted", "active"}

    bookings = {b["id"]: b for b in body["bookings"]}
    first = bookings[booking_id]
    assert first["status"] in ("used", "confirmed")
    assert sorted(seat["seatLabel"] for seat in first["seats"]) == ["A1", "A2"]
    assert {t["status"] for t in first["tickets"]} == {"used"}
    assert first["snacks"][0]["quantity"] == 2
    assert first["promoCode"]["code"] == "WELCOME10"
    assert first["payments"][0]["status"] == "succeeded"
    assert first["payments"][0]["amount"] == first["finalAmount"]
    assert first["invoice"]["invoiceNumber"]
    assert first["movieTitle"]
    assert bookings[refunded["id"]]["refunds"][0]["amount"] == refunded["finalAmount"]
    [snacks_only] = body["concessionPreorders"]
    assert snacks_only["id"] == preorder.json()["booking"]["id"]
    assert snacks_only["hasPickupCode"] is True

    assert body["loyalty"]["account"]["balance"] > 0
    assert {e["kind"] for e in body["loyalty"]["entries"]} >= {"earn"}
    assert [r["code"] for r in body["promoRedemptions"]] == ["WELCOME10"]
    assert [(r["rating"], r["text"]) for r in body["reviews"]] == [(5, "Loved it.")]
    assert [v["reviewId"] for v in body["helpfulVotes"]] == [other_review]
    assert body["notifications"]
    assert [k["key"] for k in body["idempotencyKeys"]] == ["preorder-1"]
    assert any(e["action"].startswith("payment.") for e in body["auditLog"])

    # Credentials stay out: no hashes, secrets, client secrets, pickup codes or tokens.
    for field in ("passwordHash", "mfaSecret", "tokenHash", "clientSecret", "pickupCode"):
        assert f'"{field}"' not in text, field
    for secret in (
        DEFAULT_PASSWORD,
        anna["refreshToken"],
        anna["accessToken"],
        booked.json()["paymentClientSecret"],
        preorder.json()["booking"].get("pickupCode") or "no-pickup-code",
    ):
        assert secret not in text

    # Staff see their own activity: the refund they made, the tickets they scanned.
    assert (await export_of(client, admin.headers))["staffActivity"]["refundsRequested"]
    scanned = (await export_of(client, cashier.headers))["staffActivity"]["ticketsCheckedIn"]
    assert {t["bookingId"] for t in scanned} == {booking_id, str(other_booking.id)}

    # Someone else's data never appears in the customer's export.
    assert other.email not in text
    assert str(other_booking.id) not in text


async def test_export_needs_sign_in_and_is_rate_limited(
    make_client: MakeClient, app: FastAPI
) -> None:
    assert (await (await make_client()).get(EXPORT)).status_code == 401
    client = await make_client()
    user = await make_user(app)
    for _ in range(10):
        assert (await client.get(EXPORT, headers=user.headers)).status_code == 200
    limited = await client.get(EXPORT, headers=user.headers)
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0


# ---------------------------------------------------------------------------------------------
# erasure


async def test_erasure_anonymises_the_account_and_keeps_what_accounting_needs(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_show(app)
    admin = await make_user(app, "admin")
    snack_id = await add_snack(client, admin, stock=5)
    await add_promo(client, admin, "ONCE")
    anna = await register(client)
    headers = anna["headers"]
    confirmed = await book_and_pay(client, headers, show.showtime_id, "A1", "A2")
    # An unpaid booking with a promo use and snacks, and a live hold on another seat.
    pending = await book_hold(
        client,
        headers,
        show.showtime_id,
        (await hold(client, headers, show.showtime_id, "B1")).json()["lockToken"],
        "B1",
        promoCode="ONCE",
        snacks=[{"snackId": snack_id, "quantity": 2}],
    )
    assert pending.status_code == 201, pending.text
    pending_id = pending.json()["booking"]["id"]
    other_show = await seed_show(app)
    assert (await hold(client, headers, other_show.showtime_id, "C3")).status_code == 201
    before = (await client.get(f"/api/bookings/{confirmed['id']}", headers=admin.headers)).json()
    async with app.state.db.session() as session:
        assert (await session.scalar(select(PromoCode.uses).where(PromoCode.code == "ONCE"))) == 1
        assert (
            await session.scalar(select(Snack.stock).where(Snack.id == uuid.UUID(snack_id)))
        ) == 3

    failed = await client.post(
        "/api/auth/login", json={"email": anna["email"], "password": "Not-The-Password-1"}
    )
    assert failed.status_code == 401
    by_email = (
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.account_key == email_key(anna["email"]))
    )
    assert await count(app, by_email) > 0

    erased = await client.delete("/api/me", headers=headers)
    assert erased.status_code == 204, erased.text
    assert await count(app, by_email) == 0  # the failed sign-ins and trusted IPs are gone

    # Signed out everywhere: the old access and refresh tokens and the password are refused.
    assert (await client.get("/api/me", headers=headers)).status_code == 401
    assert (await client.get("/api/me/bookings", headers=headers)).status_code == 401
    assert (await hold(client, headers, show.showtime_id, "E1")).status_code == 401
    refresh = await client.post("/api/auth/refresh", json={"refreshToken": anna["refreshToken"]})
    assert refresh.status_code == 401
    login = await client.post(
        "/api/auth/login", json={"email": anna["email"], "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 401
    assert login.json()["code"] == "invalid_credentials"

    # The row stays, anonymised.
    user_id = uuid.UUID(anna["user"]["id"])
    row = await user_row(app, user_id)
    assert row is not None
    assert row.email == f"erased-{user_id.hex}@invalid"
    assert row.full_name == "Erased user"
    assert row.phone is None
    assert row.is_active is False
    assert row.erased_at is not None
    assert row.mfa_secret is None
    assert row.mfa_enabled is False
    assert row.role == "customer"
    for model in (RefreshToken, AccountToken, Notification):
        assert (
            await count(
                app, select(func.count()).select_from(model).where(model.user_id == user_id)
            )
            == 0
        ), model

    # Accounting: the confirmed booking, its payment and invoice, unchanged, found by staff.
    after = await client.get(f"/api/bookings/{confirmed['id']}", headers=admin.headers)
    assert after.status_code == 200, after.text
    assert after.json()["booking"] == before["booking"]
    assert (
        await count(
            app,
            select(func.count())
            .select_from(Payment)
            .where(Payment.booking_id == uuid.UUID(confirmed["id"]), Payment.status == "succeeded"),
        )
        == 1
    )
    assert (
        await count(
            app,
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.booking_id == uuid.UUID(confirmed["id"])),
        )
        == 1
    )
    invoice = await client.get(
        f"/api/bookings/{confirmed['id']}/invoice.pdf", headers=admin.headers
    )
    assert invoice.status_code == 200, invoice.text
    assert invoice.content.startswith(b"%PDF")
    audit = await client.get("/api/admin/audit-log", headers=admin.headers)
    assert audit.status_code == 200, audit.text
    assert "user.erased" in {entry["action"] for entry in audit.json()["entries"]}

    # The unpaid booking was cancelled the way a customer's cancel does: seats, promo use and
    # snack stock came back; the live hold on the other showtime ended.
    cancelled = await client.get(f"/api/bookings/{pending_id}", headers=admin.headers)
    assert cancelled.json()["booking"]["status"] == "cancelled"
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["A1"]["status"] == seats["A2"]["status"] == "booked"
    assert seats["B1"]["status"] == "available"
    assert (await seat_statuses(client, other_show.showtime_id))["C3"]["status"] == "available"
    async with app.state.db.session() as session:
        assert (await session.scalar(select(PromoCode.uses).where(PromoCode.code == "ONCE"))) == 0
        assert (
            await session.scalar(select(Snack.stock).where(Snack.id == uuid.UUID(snack_id)))
        ) == 5
        assert set(
            (await session.scalars(select(Hold.status).where(Hold.user_id == user_id))).all()
        ) <= {"converted", "released"}

    # The address is free again.
    again = await register(client, anna["email"])
    assert again["user"]["id"] != anna["user"]["id"]
    assert (await client.get("/api/me/bookings", headers=again["headers"])).json()["bookings"] == []
    # Erasing twice is impossible: the account no longer signs in.
    assert (await client.delete("/api/me", headers=headers)).status_code == 401


def stored_invoice_pdfs(app: FastAPI, invoice: Invoice) -> list[str]:
    storage = app.state.storage
    assert isinstance(storage, LocalStorage)  # the tests' default: var/files of the app
    folder = storage.root / "invoices" / str(invoice.year)
    return sorted(path.name for path in folder.glob(f"{invoice.id}-*.pdf"))


async def invoice_of(app: FastAPI, booking_id: str) -> Invoice:
    async with app.state.db.session(write=False) as session:
        invoice = await session.scalar(
            select(Invoice).where(Invoice.booking_id == uuid.UUID(booking_id))
        )
    assert invoice is not None
    return invoice


async def test_erasure_deletes_the_stored_invoice_pdfs_that_show_the_customer(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_show(app)
    admin = await make_user(app, "admin")
    anna, bob = await register(client), await register(client)
    booked = {
        name: await book_and_pay(client, who["headers"], show.showtime_id, seat)
        for name, who, seat in (("anna", anna, "A1"), ("bob", bob, "A2"))
    }
    for name, who in (("anna", anna), ("bob", bob)):
        pdf = await client.get(
            f"/api/bookings/{booked[name]['id']}/invoice.pdf", headers=who["headers"]
        )
        assert pdf.status_code == 200, pdf.text
    annas, bobs = (
        await invoice_of(app, booked["anna"]["id"]),
        await invoice_of(app, booked["bob"]["id"]),
    )
    with_her_name = stored_invoice_pdfs(app, annas)
    assert len(with_her_name) == 1
    bobs_pdfs = stored_invoice_pdfs(app, bobs)
    assert len(bobs_pdfs) == 1

    assert (await client.delete("/api/me", headers=anna["headers"])).status_code == 204
    await settle_jobs(app)
    assert stored_invoice_pdfs(app, annas) == []  # her name and address are gone from storage
    assert stored_invoice_pdfs(app, bobs) == bobs_pdfs  # another customer's stay

    # The invoice itself stays (accounting): rendered anew, anonymised, under another key.
    again = await client.get(
        f"/api/bookings/{booked['anna']['id']}/invoice.pdf", headers=admin.headers
    )
    assert again.status_code == 200, again.text
    assert again.content.startswith(b"%PDF")
    anonymised = stored_invoice_pdfs(app, annas)
    assert len(anonymised) == 1
    assert anonymised != with_her_name


async def test_the_last_active_admin_cannot_be_erased(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await make_user(app, "admin")
    refused = await client.delete("/api/me", headers=first.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "last_admin"
    assert (await client.get("/api/me", headers=first.headers)).status_code == 200

    second = await make_user(app, "admin")
    assert (await client.delete("/api/me", headers=first.headers)).status_code == 204
    # The erased admin no longer counts: the remaining one is the last.
    again = await client.delete("/api/me", headers=second.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "last_admin"


async def _reviewed_movie(app: FastAPI, client: httpx.AsyncClient) -> SimpleNamespace:
    """A movie reviewed by two customers (5 and 2 stars); the first voted the second's review
    helpful, a third customer voted the first's."""
    show = await seed_show(app, starts_in=dt.timedelta(minutes=20))
    cashier = await make_user(app, "cashier")
    customers = [await make_user(app) for _ in range(3)]
    for index, customer in enumerate(customers):
        async with app.state.db.session() as session:
            booking, _ = await make_confirmed_booking(
                session, customer.id, uuid.UUID(show.showtime_id), [f"A{index + 1}"]
            )
        await check_in_all(client, str(booking.id), customer.headers, cashier)
    first, second, third = customers
    mine = await review(client, show.movie_id, first.headers, 5, "My name is Anna; loved it.")
    theirs = await review(client, show.movie_id, second.headers, 2, "Too long.")
    url = f"/api/movies/{show.movie_id}/reviews/{{}}/helpful"
    assert (await client.post(url.format(theirs), headers=first.headers)).status_code < 300
    assert (await client.post(url.format(mine), headers=third.headers)).status_code < 300
    return SimpleNamespace(
        movie_id=show.movie_id, first=first, second=second, mine=mine, theirs=theirs
    )


async def test_erasure_deletes_reviews_and_votes_and_keeps_movie_ratings_exact(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await _reviewed_movie(app, client)
    movie = await movie_of(client, setup.movie_id)
    assert (movie["reviewCount"], movie["averageRating"]) == (2, 3.5)

    assert (await client.delete("/api/me", headers=setup.first.headers)).status_code == 204

    movie = await movie_of(client, setup.movie_id)
    assert (movie["reviewCount"], movie["averageRating"]) == (1, 2.0)
    listed = (await client.get(f"/api/movies/{setup.movie_id}/reviews")).json()["reviews"]
    assert [r["id"] for r in listed] == [setup.theirs]
    assert listed[0]["helpfulCount"] == 0
    async with app.state.db.session() as session:
        stored = await session.get(Movie, uuid.UUID(setup.movie_id))
        assert stored is not None
        assert (stored.review_count, stored.rating_sum) == (1, 2)
        assert await session.get(Review, uuid.UUID(setup.mine)) is None


# ---------------------------------------------------------------------------------------------
# retention


async def _backdate(app: FastAPI, user_id: uuid.UUID, days: int) -> None:
    async with app.state.db.session() as session:
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days))
        )


async def test_retention_purges_old_unverified_accounts_only(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_show(app)
    # Never verified, 31 days old, only a live hold: deleted, the seat free.
    idle = await make_user(app, verified=False)
    assert (await hold(client, idle.headers, show.showtime_id, "A1")).status_code == 201
    await _backdate(app, idle.id, 31)
    # Never verified, 40 days old, with an unpaid booking: anonymised, the booking cancelled.
    buyer = await make_user(app, verified=False)
    answer = await book(client, buyer.headers, show.showtime_id, "B1")
    await _backdate(app, buyer.id, 40)
    # Left alone: young and unverified, old and verified, an old unverified staff account.
    young = await make_user(app, verified=False)
    await _backdate(app, young.id, 29)
    verified = await make_user(app, verified=True)
    await _backdate(app, verified.id, 400)
    staff = await make_user(app, "cashier", verified=False)
    await _backdate(app, staff.id, 400)

    report = await purge_unverified_accounts(app)
    assert (report.deleted, report.anonymised) == (1, 1)

    assert await user_row(app, idle.id) is None
    assert (
        await count(app, select(func.count()).select_from(Hold).where(Hold.user_id == idle.id)) == 0
    )
    kept = await user_row(app, buyer.id)
    assert kept is not None
    assert kept.email == f"erased-{buyer.id.hex}@invalid"
    assert kept.is_active is False
    assert kept.erased_at is not None
    async with app.state.db.session() as session:
        booking = await session.get(Booking, uuid.UUID(answer["booking"]["id"]))
        assert booking is not None
        assert booking.status == "cancelled"
        actions = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.entity_id, AuditEntry.actor_kind).where(
                    AuditEntry.action.in_(["user.purged", "user.erased"])
                )
            )
        ).all()
    assert sorted(actions) == sorted(
        [("user.purged", str(idle.id), "system"), ("user.erased", str(buyer.id), "system")]
    )
    seats = await seat_statuses(client, show.showtime_id)
    assert seats["A1"]["status"] == seats["B1"]["status"] == "available"
    for untouched in (young, verified, staff):
        row = await user_row(app, untouched.id)
        assert row is not None
        assert row.email == untouched.email
        assert row.is_active

    # The next run finds nothing more to do.
    again = await purge_unverified_accounts(app)
    assert (again.deleted, again.anonymised) == (0, 0)


# ---------------------------------------------------------------------------------------------
# logs


def test_the_redaction_processor_hides_sensitive_keys_and_values() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "login",
            "password": "hunter2-hunter2",
            "newPassword": "n3w-Passw0rd!",
            "headers": {"Authorization": "Bearer abc.def.ghi", "accept": "json"},
            "body": [{"refreshToken": "r-123456789", "otp": "123456", "card": "4242"}],
            "url": "https://x.example/reset-password?token=s3cr3t-t0ken&lang=de",
            "path": "/api/tickets/qr/v1.signed-ticket-token.png",
            "note": "paid with 4242 4242 4242 4242",
            "memo": "card 5555-5555-5555-4444 then",
            "via": "BEARER abcdefghijkl",
            "error": "boom\n[SQL: INSERT INTO users]\n[parameters: ('a@b.c', 'hash')]",
            "clientSecret": None,
            "route": "/api/tickets/qr/{qr_token}.png",
            "status": 200,
        },
    )
    rendered = json.dumps(event)
    for secret in (
        "hunter2",
        "n3w-Passw0rd",
        "abc.def.ghi",
        "r-123456789",
        "123456",
        "s3cr3t-t0ken",
        "signed-ticket-token",
        "4242 4242",
        "5555-5555",
        "abcdefghijkl",
        "a@b.c",
    ):
        assert secret not in rendered, secret
    assert event["headers"]["accept"] == "json"
    assert event["url"] == f"https://x.example/reset-password?token={REDACTED}&lang=de"
    assert event["path"] == f"/api/tickets/qr/{REDACTED}.png"
    assert event["route"] == "/api/tickets/qr/{qr_token}.png"
    assert event["status"] == 200
    assert scrub("GET /api/showtimes/42/seats") == "GET /api/showtimes/42/seats"
    seat_map = "/api/showtimes/820d11d2-eac8-4677-a05f-9ae22b26c446/seats"
    assert scrub(seat_map) == seat_map


def test_library_log_records_are_scrubbed_too() -> None:
    record = logging.LogRecord(
        "sqlalchemy.engine",
        logging.ERROR,
        __file__,
        1,
        "failed: %s",
        ("[SQL: UPDATE users SET password_hash=?]\n[parameters: ('$argon2id$secret-hash',)]",),
        None,
    )
    assert RedactingFilter().filter(record)
    assert "secret-hash" not in record.getMessage()
    assert "[SQL: UPDATE users" in record.getMessage()


def _mailed_token(outbox: Path, kind: str) -> str:
    for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
        message = message_from_bytes(path.read_bytes())
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                found = re.search(rf"{kind}\?token=([A-Za-z0-9_\-]+)", payload.decode())
                if found:
                    return found.group(1)
    raise AssertionError(f"no {kind} mail in {outbox}")


@pytest.mark.backends("sqlite")
async def test_no_password_or_token_reaches_the_logs(
    make_client: MakeClient, backend: Backend, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    client = await make_client(log_level="DEBUG", log_json=True)
    outbox = tmp_path / "var" / "outbox"
    secrets: list[str] = [DEFAULT_PASSWORD]
    try:
        capfd.readouterr()
        email = "logs@example.com"
        registered = await register(client, email)
        secrets += [registered["accessToken"], registered["refreshToken"]]
        verify_token = _mailed_token(outbox, "verify-email")
        secrets.append(verify_token)
        assert (
            await client.post("/api/auth/verify-email", json={"token": verify_token})
        ).status_code == 204
        headers = registered["headers"]
        setup = await client.post("/api/auth/mfa/setup", headers=headers)
        mfa_secret = setup.json()["secret"]
        secrets.append(mfa_secret)
        otp = pyotp.TOTP(mfa_secret).now()
        enabled = await client.post("/api/auth/mfa/enable", json={"otp": otp}, headers=headers)
        assert enabled.status_code == 200, enabled.text
        # A failing sign-in (no code), then one with a wrong password.
        no_otp = await client.post(
            "/api/auth/login", json={"email": email, "password": DEFAULT_PASSWORD}
        )
        assert no_otp.json()["code"] == "otp_required"
        wrong = "Wrong-Password-123456"
        secrets.append(wrong)
        assert (
            await client.post("/api/auth/login", json={"email": email, "password": wrong})
        ).status_code == 401
        refreshed = await client.post(
            "/api/auth/refresh", json={"refreshToken": registered["refreshToken"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        secrets += [refreshed.json()["accessToken"], refreshed.json()["refreshToken"]]
        # A spent refresh token presented again (401), and an unknown reset token (422).
        assert (
            await client.post(
                "/api/auth/refresh", json={"refreshToken": registered["refreshToken"]}
            )
        ).status_code == 401
        bogus = "not-a-real-reset-token-0123456789"
        secrets.append(bogus)
        bad_reset = await client.post(
            "/api/auth/password/reset", json={"token": bogus, "newPassword": wrong}
        )
        assert bad_reset.status_code == 422
        assert (
            await client.post("/api/auth/password/forgot", json={"email": email})
        ).status_code == 202
        reset_token = _mailed_token(outbox, "reset-password")
        new_password = "Brand-New-Password-42"
        secrets += [reset_token, new_password]
        reset = await client.post(
            "/api/auth/password/reset", json={"token": reset_token, "newPassword": new_password}
        )
        assert reset.status_code == 204, reset.text
        # A QR token in a path, and a query string carrying a token.
        qr = "v1.qr-ticket-credential-abcdef"
        secrets.append(qr)
        await client.get(f"/api/tickets/qr/{qr}.png")
        query_secret = "query-string-secret-987654"
        secrets.append(query_secret)
        await client.get(f"/api/movies?search=x&token={query_secret}")
        logs = capfd.readouterr()
    finally:
        configure_logging(make_settings(backend, tmp_path))
    output = logs.out + logs.err
    assert '"event": "request"' in output or '"event":"request"' in output, output[:2000]
    for secret in secrets:
        assert secret not in output, f"a secret reached the logs: {secret[:6]}..."
