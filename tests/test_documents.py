"""Invoices and ticket PDFs: gapless invoice numbers per theater and year (also under racing
confirmations, racing issuers of one invoice and rollbacks; a confirmation holds no number
while it is open), the PDFs parsed back (text and QR codes), stored once and
served from storage, and who may fetch them."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pypdf
import pytest
import zxingcpp
from fastapi import FastAPI
from sqlalchemy import select, update

from boxoffice.booking.models import Booking
from boxoffice.booking.service import BookingContext, booking_context
from boxoffice.catalog.models import Movie
from boxoffice.core.db import Database, create_engine
from boxoffice.documents.jobs import issue_missing_once
from boxoffice.documents.models import Invoice, InvoiceCounter
from boxoffice.documents.service import (
    DueInvoice,
    due_invoice,
    format_invoice_number,
    issue_invoice,
    issue_invoice_after_commit,
    issue_missing_invoices,
)
from boxoffice.storage import StoredFile
from boxoffice.tickets.signing import ticket_signer
from boxoffice.venues.models import Screen, Theater
from tests.booking_helpers import book, book_and_pay, book_hold, hold, pay, seed_showtime
from tests.conftest import Backend
from tests.factories import make_confirmed_booking, make_showtime, seed_venue
from tests.helpers import TestUser as AppUser  # aliased: pytest would collect "Test*"
from tests.helpers import make_user

# ---------------------------------------------------------------------------------------------
# Helpers


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def page_qr_codes(data: bytes) -> list[list[str]]:
    """Per page, the text of every QR code in the page's images. (Only QR codes are looked
    for: a search for every format once read a stray 1-D barcode into a QR code's modules.)"""
    pages = []
    for page in pypdf.PdfReader(io.BytesIO(data)).pages:
        found: list[str] = []
        for image in page.images:
            codes = zxingcpp.read_barcodes(image.image, formats=zxingcpp.BarcodeFormat.QRCode)
            found += [code.text for code in codes]
        pages.append(found)
    return pages


async def set_vat(app: FastAPI, theater_id: str, rate: str) -> None:
    async with app.state.db.session() as session:
        await session.execute(
            update(Theater).where(Theater.id == uuid.UUID(theater_id)).values(vat_rate=rate)
        )


async def fetch(client: httpx.AsyncClient, user: AppUser, booking_id: str, doc: str) -> Any:
    return await client.get(f"/api/bookings/{booking_id}/{doc}.pdf", headers=user.headers)


def pdf_of(response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.content.startswith(b"%PDF")
    return response.content


async def invoices_of(app: FastAPI, theater_id: str | uuid.UUID) -> list[Invoice]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(Invoice)
            .where(Invoice.theater_id == uuid.UUID(str(theater_id)))
            .order_by(Invoice.year, Invoice.number)
        )
        return list(rows)


async def context_of(app: FastAPI, booking_id: str) -> BookingContext:
    """The booking's showtime, movie, theater and screen."""
    async with app.state.db.session(write=False) as session:
        booking = await session.get(Booking, uuid.UUID(booking_id))
        assert booking is not None
        return await booking_context(session, booking.showtime_id)


async def confirmed_bookings(app: FastAPI, count: int) -> tuple[Any, list[uuid.UUID]]:
    """`count` confirmed bookings (made straight in the database, without invoices) of one
    seat each, in a theater of their own; the venue and the booking ids."""
    venue = await seed_venue(app, rows=2, seats_per_row=10)
    user = await make_user(app)
    ids = []
    async with app.state.db.session() as session:
        screen = await session.get(Screen, venue.screen_id)
        movie = await session.get(Movie, venue.movie_id)
        assert screen is not None
        assert movie is not None
        showtime = await make_showtime(session, screen, movie)
        for index in range(count):
            booking, _ = await make_confirmed_booking(
                session, user.id, showtime.id, [f"A{index + 1}"]
            )
            ids.append(booking.id)
    return venue, ids


async def due(db: Database, booking_id: uuid.UUID) -> DueInvoice:
    async with db.session(write=False) as session:
        booking = await session.get(Booking, booking_id)
        assert booking is not None
        invoice = await due_invoice(session, booking)
    assert invoice is not None
    return invoice


async def issue(db: Database, booking_id: uuid.UUID) -> Invoice:
    """Issue the booking's invoice as a confirmation does: in its transaction it registers the
    invoice, which is issued once that commits."""
    async with db.session() as session:
        booking = await session.get(Booking, booking_id, with_for_update=True)
        assert booking is not None
        await issue_invoice_after_commit(session, booking)
    async with db.session(write=False) as session:
        invoice = await session.scalar(select(Invoice).where(Invoice.booking_id == booking_id))
    assert invoice is not None
    return invoice


async def confirmed_days_ago(app: FastAPI, booking_id: uuid.UUID, days: int) -> None:
    async with app.state.db.session() as session:
        await session.execute(
            update(Booking)
            .where(Booking.id == booking_id)
            .values(confirmed_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days))
        )


class Rollback(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The PDFs


async def test_the_invoice_shows_seller_customer_lines_vat_and_payment(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    await set_vat(app, show.theater_id, "0.07")
    snack = await client.post(
        "/api/admin/snacks",
        json={"name": "Salted Popcorn", "category": "popcorn", "price": "6.50"},
        headers=admin.headers,
    )
    assert snack.status_code == 201, snack.text
    ann = await make_user(app)
    held = await hold(client, ann.headers, show.showtime_id, "C3", "C4")
    answer = await book_hold(
        client,
        ann.headers,
        show.showtime_id,
        held.json()["lockToken"],
        "C3",
        "C4",
        snacks=[{"snackId": snack.json()["id"], "quantity": 2}],
    )
    assert answer.status_code == 201, answer.text
    booking = answer.json()["booking"]
    assert (await fetch(client, ann, booking["id"], "invoice")).status_code == 409
    paid = await pay(client, ann.headers, answer.json()["paymentIntentId"])
    assert paid.status_code == 200, paid.text

    text = pdf_text(pdf_of(await fetch(client, ann, booking["id"], "invoice")))
    (invoice,) = await invoices_of(app, show.theater_id)
    issued_local = invoice.issued_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert invoice.number == 1
    assert invoice.year == issued_local.year
    assert invoice.invoice_number == format_invoice_number(
        uuid.UUID(show.theater_id), invoice.year, 1
    )
    assert invoice.invoice_number.startswith(f"{show.theater_id.replace('-', '')[:8].upper()}-")
    assert invoice.vat_rate == Decimal("0.0700")
    ctx = await context_of(app, booking["id"])
    for expected in (
        "Invoice",
        invoice.invoice_number,
        booking["bookingReference"],
        ctx.movie.title,
        ctx.screen.name,
        app.state.settings.company_name,
        ctx.theater.name,
        ann.email,
        "Test Customer",
        "Ticket, seat C3 (standard)",
        "Ticket, seat C4 (standard)",
        "Salted Popcorn",
        "6.50 EUR",
        "13.00 EUR",  # the popcorn line
        "10.00 EUR",  # a seat
        "Subtotal",
        "33.00 EUR",  # 2 x 10.00 + 2 x 6.50, paid in full
        "VAT contained (7%)",
        "2.16 EUR",  # 33.00 x 0.07 / 1.07
        "Net amount",
        "30.84 EUR",
        f"via local (reference {answer.json()['paymentIntentId']})",
        issued_local.date().isoformat(),  # the invoice date
    ):
        assert expected in text, (expected, text)
    assert booking["breakdown"]["tax"] == "2.16"
    assert "Refunds so far" not in text


async def test_the_tickets_pdf_has_a_page_per_seat_with_a_qr_code_that_verifies(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "B2", "B1", "B3")
    data = pdf_of(await fetch(client, ann, booking["id"], "tickets"))

    listed = await client.get(f"/api/bookings/{booking['id']}/tickets", headers=ann.headers)
    assert listed.status_code == 200, listed.text
    tokens = {t["seatLabel"]: t["qrToken"] for t in listed.json()["tickets"]}
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 3
    signer = ticket_signer(app.state.settings, app.state.signing_key)
    ctx = await context_of(app, booking["id"])
    local = ctx.showtime.start_time.astimezone(ZoneInfo("Europe/Berlin"))
    for page, label, codes in zip(
        reader.pages, ["B1", "B2", "B3"], page_qr_codes(data), strict=True
    ):
        text = page.extract_text()
        for expected in (
            ctx.movie.title,
            ctx.theater.name,
            ctx.screen.name,
            f"Seat {label}",
            f"Booking {booking['bookingReference']}",
            "Europe/Berlin",
        ):
            assert expected in text, (expected, text)
        assert f"{local:%a %d %b %Y, %H:%M}" in text  # the local start time
        assert codes == [tokens[label]]
        claims = signer.verify(codes[0])
        assert claims is not None
        assert claims.is_for_showtime(ctx.showtime.id)


async def test_documents_are_rendered_once_and_then_served_from_storage(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "D1", "D2")
    real = app.state.storage
    puts: list[str] = []

    class Counting:
        async def put(self, key: str, data: bytes, content_type: str) -> None:
            puts.append(key)
            await real.put(key, data, content_type)

        async def get(self, key: str) -> StoredFile | None:
            return await real.get(key)

        async def exists(self, key: str) -> bool:
            return await real.exists(key)

        async def download_url(self, key: str, filename: str) -> str | None:
            return None

    monkeypatch.setitem(app.state._state, "storage", Counting())  # State: no setattr undo
    first = {
        doc: pdf_of(await fetch(client, ann, booking["id"], doc)) for doc in ("invoice", "tickets")
    }
    assert len(puts) == 2
    invoice_key, tickets_key = puts
    assert invoice_key.startswith("invoices/")
    assert tickets_key.startswith(f"tickets/{booking['id']}-")
    stored = real.root / invoice_key
    mtime = stored.stat().st_mtime_ns
    for _ in range(2):
        for doc in ("invoice", "tickets"):
            assert pdf_of(await fetch(client, ann, booking["id"], doc)) == first[doc]
    assert len(puts) == 2  # not rendered again
    assert stored.stat().st_mtime_ns == mtime
    assert (await real.get(invoice_key)).data == first["invoice"]

    # A refunded seat voids its ticket and shows on the invoice: both are new files.
    refund = await client.post(
        "/api/payments/refund",
        json={"bookingId": booking["id"], "seatNumbers": ["D2"]},
        headers=ann.headers,
    )
    assert refund.status_code in (200, 201), refund.text
    tickets = pdf_of(await fetch(client, ann, booking["id"], "tickets"))
    assert len(pypdf.PdfReader(io.BytesIO(tickets)).pages) == 1
    assert "Seat D1" in pdf_text(tickets)
    invoice_text = pdf_text(pdf_of(await fetch(client, ann, booking["id"], "invoice")))
    assert "Refunds so far" in invoice_text
    assert "seats D2" in invoice_text
    assert "Ticket, seat D2 (standard) - refunded" in invoice_text
    assert len(puts) == 4
    assert set(puts[2:]).isdisjoint(puts[:2])


async def test_with_download_urls_the_answer_is_a_redirect(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "E1")
    files: dict[str, bytes] = {}

    class Presigning:
        async def put(self, key: str, data: bytes, content_type: str) -> None:
            assert content_type == "application/pdf"
            files[key] = data

        async def get(self, key: str) -> StoredFile | None:
            raise AssertionError("a presigning storage is never read through the API")

        async def exists(self, key: str) -> bool:
            return key in files

        async def download_url(self, key: str, filename: str) -> str | None:
            return f"https://files.example.com/{key}?filename={filename}&signature=x"

    monkeypatch.setitem(app.state._state, "storage", Presigning())  # State: no setattr undo
    for doc in ("invoice", "tickets"):
        for _ in range(2):
            response = await fetch(client, ann, booking["id"], doc)
            assert response.status_code == 307, response.text
            location = response.headers["location"]
            key = location.removeprefix("https://files.example.com/").split("?")[0]
            assert files[key].startswith(b"%PDF")
    assert len(files) == 2


async def test_only_the_owner_and_staff_get_the_documents(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    show = await seed_showtime(app)
    ann, bob = await make_user(app), await make_user(app)
    cashier = await make_user(app, "cashier")
    booking = await book_and_pay(client, ann.headers, show.showtime_id, "A1")
    pending = (await book(client, ann.headers, show.showtime_id, "A2"))["booking"]
    for doc in ("invoice", "tickets"):
        assert (await fetch(client, cashier, booking["id"], doc)).status_code == 200
        for booking_id in (booking["id"], pending["id"], str(uuid.uuid4())):
            response = await fetch(client, bob, booking_id, doc)
            assert response.status_code == 404, response.text
            assert response.json()["code"] == "not_found"
        unauthenticated = await client.get(f"/api/bookings/{booking['id']}/{doc}.pdf")
        assert unauthenticated.status_code == 401

    invoice = await fetch(client, ann, pending["id"], "invoice")
    assert invoice.status_code == 409
    assert invoice.json()["code"] == "invoice_not_available"
    assert invoice.json()["bookingStatus"] == "pending"
    tickets = await fetch(client, ann, pending["id"], "tickets")
    assert tickets.status_code == 409
    assert tickets.json()["code"] == "tickets_not_issued"


async def test_a_booking_paid_by_its_discounts_gets_an_invoice_without_payment(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, "admin")
    show = await seed_showtime(app)
    promo = await client.post(
        "/api/admin/promocodes",
        json={"code": "FREE", "kind": "percentage", "value": "100"},
        headers=admin.headers,
    )
    assert promo.status_code == 201, promo.text
    ann = await make_user(app)
    held = await hold(client, ann.headers, show.showtime_id, "A5")
    assert held.status_code == 201, held.text
    answer = await book_hold(
        client, ann.headers, show.showtime_id, held.json()["lockToken"], "A5", promoCode="FREE"
    )
    assert answer.status_code == 201, answer.text
    booking = answer.json()["booking"]
    assert booking["status"] == "confirmed"
    text = pdf_text(pdf_of(await fetch(client, ann, booking["id"], "invoice")))
    assert "Promo code discount" in text
    assert "-10.00 EUR" in text
    assert "Nothing to pay" in text
    (invoice,) = await invoices_of(app, show.theater_id)
    assert invoice.number == 1


# ---------------------------------------------------------------------------------------------
# Invoice numbers


async def test_confirmations_number_invoices_per_theater_without_gaps(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first, second = await seed_showtime(app), await seed_showtime(app)
    ann = await make_user(app)
    pending = (await book(client, ann.headers, first.showtime_id, "A8"))["booking"]
    for label in ("A1", "A2", "A3"):
        await book_and_pay(client, ann.headers, first.showtime_id, label)
    await book_and_pay(client, ann.headers, second.showtime_id, "A1")
    # A cancelled booking takes no number.
    cancelled = await client.post(f"/api/bookings/{pending['id']}/cancel", headers=ann.headers)
    assert cancelled.status_code == 200, cancelled.text
    await book_and_pay(client, ann.headers, first.showtime_id, "A4")

    numbers = [(i.year, i.number) for i in await invoices_of(app, first.theater_id)]
    year = numbers[0][0]
    assert numbers == [(year, n) for n in (1, 2, 3, 4)]
    assert [i.number for i in await invoices_of(app, second.theater_id)] == [1]
    invoices = await invoices_of(app, first.theater_id)
    assert len({i.invoice_number for i in invoices}) == 4
    assert invoices[-1].invoice_number.endswith(f"-{year}-000004")


async def test_the_year_is_the_confirmation_year_in_the_theaters_timezone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    venue, ids = await confirmed_bookings(app, 4)
    # Berlin is UTC+1 in winter: 22:59:59 UTC on New Year's Eve is still 2026 there,
    # 23:00 UTC is already 2027.
    times = [
        dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 31, 22, 59, 59, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 31, 23, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2027, 1, 2, 9, 0, tzinfo=dt.UTC),
    ]
    async with app.state.db.session() as session:
        for booking_id, moment in zip(ids, times, strict=True):
            await session.execute(
                update(Booking).where(Booking.id == booking_id).values(confirmed_at=moment)
            )
    issued = [await issue(app.state.db, booking_id) for booking_id in ids]
    assert [(i.year, i.number) for i in issued] == [(2026, 1), (2026, 2), (2027, 1), (2027, 2)]
    assert issued[2].invoice_number == format_invoice_number(venue.theater_id, 2027, 1)

    # Issuing again returns the booking's invoice: no new number.
    again = await issue(app.state.db, ids[3])
    assert (again.id, again.number) == (issued[3].id, 2)
    async with app.state.db.session(write=False) as session:
        rows = await session.execute(
            select(InvoiceCounter.year, InvoiceCounter.last_number).where(
                InvoiceCounter.theater_id == venue.theater_id
            )
        )
        counters = dict(rows.all())
    assert counters == {2026: 2, 2027: 2}


async def test_an_open_confirmation_holds_no_number_and_a_rolled_back_one_takes_none(
    app: FastAPI, backend: Backend, client: httpx.AsyncClient
) -> None:
    """While a confirmation's transaction is open, another confirmation of the theater gets
    its invoice at once (it does not wait for the first to commit, as it did when numbers
    were taken inside the confirmation); the open one, rolled back, takes no number, and
    the next committed one counts on without a gap."""
    venue, ids = await confirmed_bookings(app, 3)
    db: Database = app.state.db
    holding, go = asyncio.Event(), asyncio.Event()

    async def rolled_back(booking_id: uuid.UUID) -> None:
        try:
            async with db.session() as session:
                booking = await session.get(Booking, booking_id, with_for_update=True)
                assert booking is not None
                await issue_invoice_after_commit(session, booking)
                holding.set()
                await go.wait()
                raise Rollback
        except Rollback:
            pass

    doomed = asyncio.create_task(rolled_back(ids[0]))
    await holding.wait()
    if backend.name == "sqlite":
        # One writer at a time: the open transaction holds the file's write lock, so the
        # other confirmation waits for it whatever holds the number.
        go.set()
        await doomed
        first = await issue(db, ids[1])
    else:
        first = await asyncio.wait_for(issue(db, ids[1]), timeout=5)
        go.set()
        await doomed
    assert first.number == 1
    assert (await issue(db, ids[2])).number == 2
    invoices = await invoices_of(app, venue.theater_id)
    assert [(i.booking_id, i.number) for i in invoices] == [(ids[1], 1), (ids[2], 2)]


async def test_concurrent_confirmations_take_the_numbers_one_to_n(
    app: FastAPI, backend: Backend, client: httpx.AsyncClient
) -> None:
    """N invoices issued at once (the first of them creates the year's counter): exactly
    1..N."""
    n = 8
    venue, ids = await confirmed_bookings(app, n)
    db = Database(create_engine(backend.url, pool_size=n + 2))
    try:
        dues = [await due(db, booking_id) for booking_id in ids]
        invoices = await asyncio.gather(*(issue_invoice(db, invoice) for invoice in dues))
    finally:
        await db.dispose()
    assert sorted(i.number for i in invoices) == list(range(1, n + 1))
    stored = await invoices_of(app, venue.theater_id)
    assert sorted(i.number for i in stored) == list(range(1, n + 1))
    assert {i.booking_id for i in stored} == set(ids)
    assert {i.invoice_number for i in stored} == {i.invoice_number for i in invoices}


async def test_racing_issuers_of_one_invoice_leave_one_invoice_and_no_gap(
    app: FastAPI, backend: Backend, client: httpx.AsyncClient
) -> None:
    """The confirmation's issuer and the repair job racing for one booking: one invoice, one
    number taken (the next booking's is 2), and every issuer answers with that invoice."""
    n = 6
    venue, ids = await confirmed_bookings(app, 2)
    db = Database(create_engine(backend.url, pool_size=n + 2))
    try:
        invoice = await due(db, ids[0])
        answers = await asyncio.gather(*(issue_invoice(db, invoice) for _ in range(n)))
        assert len({answer.id for answer in answers}) == 1
        assert {answer.number for answer in answers} == {1}
        assert (await issue_invoice(db, await due(db, ids[1]))).number == 2
    finally:
        await db.dispose()
    invoices = await invoices_of(app, venue.theater_id)
    assert [(i.booking_id, i.number) for i in invoices] == [(ids[0], 1), (ids[1], 2)]


async def test_the_seventh_digit_of_a_number_is_kept(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Numbers are padded to six digits, never cut to them."""
    venue, ids = await confirmed_bookings(app, 2)
    db: Database = app.state.db
    first = await issue(db, ids[0])
    async with db.session() as session:
        await session.execute(
            update(InvoiceCounter)
            .where(InvoiceCounter.theater_id == venue.theater_id)
            .values(last_number=999_999)
        )
    second = await issue(db, ids[1])
    assert first.invoice_number == format_invoice_number(venue.theater_id, first.year, 1)
    assert first.invoice_number.endswith("-000001")
    assert second.number == 1_000_000
    assert second.invoice_number == format_invoice_number(venue.theater_id, first.year, 1_000_000)
    assert second.invoice_number.endswith("-1000000")


async def test_the_repair_job_issues_the_invoices_of_the_last_week_only(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Confirmed bookings without an invoice (their process stopped after the commit) get one
    from the repair job; one confirmed before the window was confirmed before invoices were
    issued and keeps having none; one with an invoice keeps its own."""
    venue, ids = await confirmed_bookings(app, 3)
    db: Database = app.state.db
    already = await issue(db, ids[2])
    await confirmed_days_ago(app, ids[0], 8)
    assert await issue_missing_invoices(db, window=dt.timedelta(days=7)) == 1
    assert await issue_missing_invoices(db, window=dt.timedelta(days=7)) == 0
    invoices = await invoices_of(app, venue.theater_id)
    assert [(i.booking_id, i.number) for i in invoices] == [(ids[2], 1), (ids[1], 2)]
    assert invoices[0].id == already.id


async def test_racing_payments_over_http_get_consecutive_numbers(
    app: FastAPI, make_client: Any
) -> None:
    n = 6
    http: httpx.AsyncClient = await make_client(database_pool_size=n + 4)
    show = await seed_showtime(app)
    users = [await make_user(app) for _ in range(n)]
    answers = [
        await book(http, user.headers, show.showtime_id, f"B{index + 1}")
        for index, user in enumerate(users)
    ]
    paid = await asyncio.gather(
        *(
            pay(http, user.headers, answer["paymentIntentId"])
            for user, answer in zip(users, answers, strict=True)
        )
    )
    assert [response.status_code for response in paid] == [200] * n
    assert {response.json()["bookingStatus"] for response in paid} == {"confirmed"}
    invoices = await invoices_of(app, show.theater_id)
    assert [i.number for i in invoices] == list(range(1, n + 1))
    assert {str(i.booking_id) for i in invoices} == {a["booking"]["id"] for a in answers}


async def test_the_server_runs_the_repair_job_by_itself(make_client: Any, app: FastAPI) -> None:
    await make_client(invoice_repair_interval_seconds=1)
    venue, ids = await confirmed_bookings(app, 1)
    deadline = asyncio.get_running_loop().time() + 5
    while not await invoices_of(app, venue.theater_id):
        assert asyncio.get_running_loop().time() < deadline, "the repair job did not run"
        await asyncio.sleep(0.1)
    assert [i.booking_id for i in await invoices_of(app, venue.theater_id)] == ids


@pytest.mark.backends("sqlite", "postgres")
async def test_the_repair_command_looks_as_far_back_as_told(
    app: FastAPI, backend: Backend, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """After an outage longer than the job's week: `boxoffice invoices repair --days N`."""
    venue, ids = await confirmed_bookings(app, 2)
    await confirmed_days_ago(app, ids[0], 10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    env.update(
        BOXOFFICE_DATABASE_URL=backend.url,
        BOXOFFICE_VAR_DIR=str(tmp_path),
        BOXOFFICE_LOG_LEVEL="WARNING",
    )

    def repair(*args: str) -> str:
        command = [str(Path(sys.executable).parent / "boxoffice"), "invoices", "repair", *args]
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert await asyncio.to_thread(repair) == "issued=1"
    assert [i.booking_id for i in await invoices_of(app, venue.theater_id)] == [ids[1]]
    assert await asyncio.to_thread(repair, "--days", "11") == "issued=1"
    assert [i.booking_id for i in await invoices_of(app, venue.theater_id)] == [ids[1], ids[0]]


async def test_the_jobs_first_run_looks_a_week_back_and_later_runs_an_hour(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """After a start, the servers may all have been down for days; while they run, a process
    that died is repaired by the others within the hour's window."""
    app.state.invoice_repair_ran = False  # as in a process that just started
    venue, ids = await confirmed_bookings(app, 2)
    await confirmed_days_ago(app, ids[0], 3)
    await issue_missing_once(app)
    assert [i.booking_id for i in await invoices_of(app, venue.theater_id)] == [ids[0], ids[1]]

    other, later = await confirmed_bookings(app, 2)
    await confirmed_days_ago(app, later[0], 3)
    await issue_missing_once(app)
    invoiced = {i.booking_id for i in await invoices_of(app, other.theater_id)}
    assert invoiced == {later[1]}
