"""Analytics and reports: exact figures over a small data set in a theater west of UTC (a show
near local midnight lands on its local date), filters, 422s, permissions, the three report
formats parsed back, and the job path for large reports."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pypdf
from fastapi import FastAPI
from sqlalchemy import update

from boxoffice.scheduling.models import Showtime
from tests.booking_helpers import book_and_pay, book_hold, hold, pay
from tests.factories import (
    make_city,
    make_movie,
    make_screen,
    make_showtime,
    make_theater,
    set_seat_state,
)
from tests.helpers import TestUser as AppUser  # aliased: pytest would collect "Test*"
from tests.helpers import make_user

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]
NEW_YORK = ZoneInfo("America/New_York")
ANALYTICS = "/api/admin/analytics"
REPORTS = "/api/admin/reports"


def _local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK).astimezone(dt.UTC)


async def _snack(client: httpx.AsyncClient, admin: AppUser, name: str, price: str) -> str:
    body = {"name": name, "category": "popcorn", "price": price}
    response = await client.post("/api/admin/snacks", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    snack_id: str = response.json()["id"]
    return snack_id


async def _book_with_snacks(
    client: httpx.AsyncClient,
    user: AppUser,
    showtime_id: str,
    labels: list[str],
    snacks: list[dict[str, Any]],
) -> dict[str, Any]:
    held = await hold(client, user.headers, showtime_id, *labels)
    assert held.status_code == 201, held.text
    booked = await book_hold(
        client, user.headers, showtime_id, held.json()["lockToken"], *labels, snacks=snacks
    )
    assert booked.status_code == 201, booked.text
    paid = await pay(client, user.headers, booked.json()["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    booking: dict[str, Any] = booked.json()["booking"]
    return booking


async def seed(app: FastAPI, client: httpx.AsyncClient) -> SimpleNamespace:
    """A New York theater (UTC-5 in winter), one 10-seat screen, two movies and five shows:

    S0  Nocturne   day0 20:00 local (day1 01:00 UTC: outside a range starting on day1)
    S1  Aurora     day1 19:00   B1: A1, A2 + 2 popcorn      33.00
    S2  Nocturne   day1 23:30   B3: A1-A3, A3 refunded       30.00 - 10.00 (day2 04:30 UTC)
    S3  Aurora     day2 14:00   B4: B1 + 1 cola             13.00; B5 blocked; a pending one
    S4  Aurora     in 5 days    B6: A1                       10.00 (has not started)

    plus B5 on S0 (A1, 10.00). Seats cost 10.00.
    """
    today = dt.datetime.now(NEW_YORK).date()
    day1 = today - dt.timedelta(days=10)
    day0, day2 = day1 - dt.timedelta(days=1), day1 + dt.timedelta(days=1)
    async with app.state.db.session() as session:
        city = await make_city(session, timezone="America/New_York")
        theater = await make_theater(session, city, currency="USD", name="Hudson Cinema")
        screen = await make_screen(session, theater, rows=2, seats_per_row=5)
        aurora = await make_movie(session, title="Aurora")
        nocturne = await make_movie(session, title="Nocturne")
        soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=5)
        shows = [
            await make_showtime(session, screen, movie, start_time=soon + dt.timedelta(hours=4 * n))
            for n, movie in enumerate([nocturne, aurora, nocturne, aurora, aurora])
        ]
        ids = [str(show.id) for show in shows]
        theater_id, aurora_id, nocturne_id = str(theater.id), str(aurora.id), str(nocturne.id)
    admin = await make_user(app, "admin")
    operator = await make_user(app, "operator")
    ann = await make_user(app, "customer")
    bob = await make_user(app, "customer")
    popcorn = await _snack(client, admin, "Popcorn", "6.50")
    cola = await _snack(client, admin, "Cola", "3.00")

    s0, s1, s2, s3, s4 = ids
    b1 = await _book_with_snacks(
        client, ann, s1, ["A1", "A2"], [{"snackId": popcorn, "quantity": 2}]
    )
    assert b1["totalAmount"] == "33.00", b1
    b3 = await book_and_pay(client, bob.headers, s2, "A1", "A2", "A3")
    assert b3["totalAmount"] == "30.00"
    refund = await client.post(
        "/api/payments/refund",
        json={"bookingId": b3["id"], "seatNumbers": ["A3"]},
        headers=operator.headers,
    )
    assert refund.status_code in (200, 201), refund.text
    assert refund.json()["amount"] == "10.00"
    b4 = await _book_with_snacks(client, ann, s3, ["B1"], [{"snackId": cola, "quantity": 1}])
    assert b4["totalAmount"] == "13.00"
    pending = await hold(client, bob.headers, s3, "B4")  # booked but never paid
    assert (
        await book_hold(client, bob.headers, s3, pending.json()["lockToken"], "B4")
    ).status_code == 201
    await set_seat_state(app, s3, "B5", "blocked")
    await book_and_pay(client, bob.headers, s0, "A1")
    await book_and_pay(client, ann.headers, s4, "A1")

    # The past shows move to their dates (bookings are made before a show, not after).
    starts = {s0: _local(day0, 20), s1: _local(day1, 19), s2: _local(day1, 23, 30)}
    starts[s3] = _local(day2, 14)
    async with app.state.db.session() as session:
        for showtime_id, start in starts.items():
            await session.execute(
                update(Showtime)
                .where(Showtime.id == uuid.UUID(showtime_id))
                .values(start_time=start, end_time=start + dt.timedelta(hours=2, minutes=30))
            )
    assert starts[s2].date() == day2  # in UTC the late show is on the next day
    s4_date = (soon + dt.timedelta(hours=16)).astimezone(NEW_YORK).date()  # S4's start
    return SimpleNamespace(
        day0=day0,
        day1=day1,
        day2=day2,
        s4_date=s4_date,
        theater_id=theater_id,
        aurora_id=aurora_id,
        nocturne_id=nocturne_id,
        admin=admin,
        operator=operator,
        customer=ann,
    )


async def _analytics(client: httpx.AsyncClient, user: AppUser, **params: Any) -> dict[str, Any]:
    response = await client.get(ANALYTICS, params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_analytics_exact_figures(app: FastAPI, client: httpx.AsyncClient) -> None:
    data = await seed(app, client)
    body = await _analytics(
        client, data.operator, **{"from": data.day1.isoformat(), "to": data.day2.isoformat()}
    )
    assert body["currency"] == "USD"
    assert body["totalBookings"] == 3  # B1, B3 (part refunded), B4; not the pending one
    assert body["totalRevenue"] == "66.00"  # 33 + (30 - 10) + 13
    assert body["ticketsSold"] == 5
    # sold 2 + 2 + 1 of 10 + 10 + 9 sellable seats (B5 blocked) of the three past shows
    assert (body["soldSeats"], body["sellableSeats"]) == (5, 29)
    assert body["occupancyRate"] == 0.1724
    assert body["popularMovies"] == [
        {"movieId": data.aurora_id, "title": "Aurora", "ticketsSold": 3, "revenue": "46.00"},
        {"movieId": data.nocturne_id, "title": "Nocturne", "ticketsSold": 2, "revenue": "20.00"},
    ]
    # The 23:30 show is on day1 locally although it started on day2 in UTC.
    assert body["revenueByDate"] == [
        {"date": data.day1.isoformat(), "revenue": "53.00", "tickets": 4, "bookings": 2},
        {"date": data.day2.isoformat(), "revenue": "13.00", "tickets": 1, "bookings": 1},
    ]
    sales = {s["name"]: (s["quantity"], s["revenue"]) for s in body["concessionSales"]}
    assert sales == {"Popcorn": (2, "13.00"), "Cola": (1, "3.00")}
    assert body["concessionRevenue"] == "16.00"

    # day0 alone: the 20:00 show, which started on day1 in UTC.
    only_day0 = await _analytics(
        client, data.operator, **{"from": data.day0.isoformat(), "to": data.day0.isoformat()}
    )
    assert (only_day0["totalBookings"], only_day0["totalRevenue"]) == (1, "10.00")
    assert only_day0["revenueByDate"] == [
        {"date": data.day0.isoformat(), "revenue": "10.00", "tickets": 1, "bookings": 1}
    ]

    # Up to the future show: its booking counts, its seats not (it has not started).
    wide = await _analytics(
        client, data.operator, **{"from": data.day1.isoformat(), "to": data.s4_date.isoformat()}
    )
    assert (wide["totalBookings"], wide["totalRevenue"], wide["ticketsSold"]) == (4, "76.00", 6)
    assert (wide["soldSeats"], wide["sellableSeats"]) == (5, 29)
    assert len(wide["revenueByDate"]) == (data.s4_date - data.day1).days + 1
    assert wide["revenueByDate"][2]["revenue"] == "0.00"  # days without shows are zeros

    # The theater filter; a second theater in another currency needs it.
    async with app.state.db.session() as session:
        paris = await make_theater(
            session, await make_city(session, timezone="Europe/Paris"), currency="EUR"
        )
        paris_id = str(paris.id)
    params = {"from": data.day1.isoformat(), "to": data.day2.isoformat()}
    mixed = await client.get(ANALYTICS, params=params, headers=data.operator.headers)
    assert mixed.status_code == 422, mixed.text
    assert mixed.json()["code"] == "theater_required"
    ours = await _analytics(client, data.operator, **params, theaterId=data.theater_id)
    assert (ours["totalBookings"], ours["totalRevenue"]) == (3, "66.00")
    theirs = await _analytics(client, data.operator, **params, theaterId=paris_id)
    assert (theirs["currency"], theirs["totalBookings"], theirs["totalRevenue"]) == (
        "EUR",
        0,
        "0.00",
    )
    assert theirs["occupancyRate"] == 0.0
    assert theirs["popularMovies"] == []


async def test_analytics_refuses_bad_ranges_and_customers(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    operator = await make_user(app, "operator")
    customer = await make_user(app, "customer")
    cashier = await make_user(app, "cashier")
    for params in (
        {"from": "2026-03-10", "to": "2026-03-09"},  # to before from
        {"from": "2024-01-01", "to": "2026-01-05"},  # over two years
        {"from": "2026-02-30", "to": "2026-03-01"},  # not a date
        {"to": "0001-01-05"},  # no arithmetic overflow (a 500)
        {"from": "9999-12-31"},
    ):
        response = await client.get(ANALYTICS, params=params, headers=operator.headers)
        assert response.status_code == 422, (params, response.text)
    unknown = await client.get(
        ANALYTICS, params={"theaterId": str(uuid.uuid4())}, headers=operator.headers
    )
    assert unknown.status_code == 422
    default = await client.get(ANALYTICS, headers=operator.headers)
    assert default.status_code == 200
    assert len(default.json()["revenueByDate"]) == 30
    assert (await client.get(ANALYTICS)).status_code == 401
    for user in (customer, cashier):
        assert (await client.get(ANALYTICS, headers=user.headers)).status_code == 403
        report = await client.get(f"{REPORTS}/revenue", headers=user.headers)
        assert report.status_code == 403
    bad = await client.get(f"{REPORTS}/revenue?format=docx", headers=operator.headers)
    assert bad.status_code == 422
    assert (await client.get(f"{REPORTS}/payroll", headers=operator.headers)).status_code == 422
    missing = await client.get(f"{REPORTS}/jobs/{uuid.uuid4()}", headers=operator.headers)
    assert missing.status_code == 404
    backwards = await client.get(
        f"{REPORTS}/films",
        params={"from": "2026-03-10", "to": "2026-03-01"},
        headers=operator.headers,
    )
    assert backwards.status_code == 422


def _range(data: SimpleNamespace) -> dict[str, str]:
    return {"from": data.day1.isoformat(), "to": data.day2.isoformat()}


async def _report(
    client: httpx.AsyncClient, user: AppUser, kind: str, fmt: str, params: dict[str, str]
) -> httpx.Response:
    response = await client.get(
        f"{REPORTS}/{kind}", params={**params, "format": fmt}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return response


def _pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


async def test_reports_in_three_formats(app: FastAPI, client: httpx.AsyncClient) -> None:
    data = await seed(app, client)
    params = _range(data)

    # CSV: a header row and plain values.
    response = await _report(client, data.operator, "revenue", "csv", params)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    assert rows == [
        {
            "date": data.day1.isoformat(),
            "theater": "Hudson Cinema",
            "bookings": "2",
            "tickets": "4",
            "revenue": "53.00",
        },
        {
            "date": data.day2.isoformat(),
            "theater": "Hudson Cinema",
            "bookings": "1",
            "tickets": "1",
            "revenue": "13.00",
        },
    ]
    films_csv = await _report(client, data.operator, "films", "csv", params)
    films = list(csv.DictReader(io.StringIO(films_csv.content.decode("utf-8"))))
    assert [(f["movie"], f["tickets"], f["occupancy"], f["revenue"]) for f in films] == [
        ("Aurora", "3", "0.1579", "46.00"),  # 3 of 19 seats
        ("Nocturne", "2", "0.2000", "20.00"),  # 2 of 10
    ]
    snacks_csv = await _report(client, data.operator, "concessions", "csv", params)
    snacks = list(csv.DictReader(io.StringIO(snacks_csv.content.decode("utf-8"))))
    assert snacks == [
        {"snack": "Popcorn", "quantity": "2", "revenue": "13.00"},
        {"snack": "Cola", "quantity": "1", "revenue": "3.00"},
    ]

    # XLSX: typed cells and a bold totals row.
    response = await _report(client, data.operator, "revenue", "xlsx", params)
    assert response.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    table = [list(row) for row in sheet.iter_rows(min_row=4, values_only=True)]
    assert table[0] == ["Date", "Theater", "Bookings", "Tickets", "Revenue"]
    first = table[1]
    assert first[0] == dt.datetime.combine(data.day1, dt.time())  # a date cell, not text
    assert first[1:] == ["Hudson Cinema", 2, 4, 53]
    assert table[-1] == ["Total", None, 3, 5, 66]
    assert sheet.cell(row=5, column=5).number_format == "#,##0.00"
    assert sheet.cell(row=sheet.max_row, column=5).font.bold
    films_book = openpyxl.load_workbook(
        io.BytesIO((await _report(client, data.operator, "films", "xlsx", params)).content)
    ).active
    assert films_book is not None
    totals = [cell.value for cell in films_book[films_book.max_row]]
    assert totals[0] == "Total"
    assert totals[2:] == [5, 5, 29, 0.1724, 66]
    assert films_book.cell(row=5, column=6).number_format == "0.0%"

    # PDF: title, range, rows and totals as text (and a chart drawn above them).
    response = await _report(client, data.operator, "revenue", "pdf", params)
    assert response.headers["content-type"] == "application/pdf"
    text = _pdf_text(response.content)
    assert "Revenue by date and theater" in text
    assert f"{data.day1.isoformat()} to {data.day2.isoformat()}" in text
    assert "Hudson Cinema" in text
    assert "53.00" in text
    assert "66.00" in text
    films_pdf = _pdf_text((await _report(client, data.operator, "films", "pdf", params)).content)
    assert "Aurora" in films_pdf
    assert "Top films by revenue" in films_pdf
    assert "15.8%" in films_pdf
    snacks_pdf = _pdf_text(
        (await _report(client, data.operator, "concessions", "pdf", params)).content
    )
    assert "Popcorn" in snacks_pdf
    assert "16.00" in snacks_pdf

    # An empty range still gives a file.
    empty = {"from": "2020-01-01", "to": "2020-01-31"}
    blank = await _report(client, data.operator, "films", "pdf", empty)
    assert "No sales in this range." in _pdf_text(blank.content)


async def test_distributors_report_empty_range(app: FastAPI, client: httpx.AsyncClient) -> None:
    operator = await make_user(app, "operator")
    empty = {"from": "2020-01-01", "to": "2020-01-31"}
    response = await _report(client, operator, "distributors", "csv", empty)
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert rows[0][:3] == ["distributor", "movie", "format"]
    assert rows[1:] == []
    book = openpyxl.load_workbook(
        io.BytesIO((await _report(client, operator, "distributors", "xlsx", empty)).content)
    ).active
    assert book is not None
    assert book.cell(row=4, column=1).value == "Distributor"
    pdf = await _report(client, operator, "distributors", "pdf", empty)
    assert "Distributor settlements" in _pdf_text(pdf.content)


async def _wait_ready(client: httpx.AsyncClient, user: AppUser, report_id: str) -> dict[str, Any]:
    for _ in range(300):
        response = await client.get(f"{REPORTS}/jobs/{report_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "pending":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("the report job did not finish")


async def test_large_reports_are_generated_by_a_job(app: FastAPI, make_client: MakeClient) -> None:
    http = await make_client(report_inline_max_rows=0)
    data = await seed(app, http)
    params = {**_range(data), "format": "xlsx"}
    response = await http.get(f"{REPORTS}/revenue", params=params, headers=data.operator.headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert response.headers["location"] == f"{REPORTS}/jobs/{body['reportId']}"
    early = await http.get(f"{REPORTS}/jobs/{body['reportId']}/file", headers=data.operator.headers)
    assert early.status_code in (200, 409)  # the job may already have finished
    done = await _wait_ready(http, data.operator, body["reportId"])
    assert done["status"] == "ready", done
    assert done["downloadUrl"] == f"{REPORTS}/jobs/{body['reportId']}/file"
    file = await http.get(done["downloadUrl"], headers=data.operator.headers)
    assert file.status_code == 200, file.text
    assert file.headers["content-disposition"] == (
        f'attachment; filename="revenue-{data.day1}-{data.day2}.xlsx"'
    )
    sheet = openpyxl.load_workbook(io.BytesIO(file.content)).active
    assert sheet is not None
    assert [c.value for c in sheet[sheet.max_row]] == ["Total", None, 3, 5, 66]
    customer = await http.get(done["downloadUrl"], headers=data.customer.headers)
    assert customer.status_code == 403

    # Too long a range goes to a job whatever its rows; bad input is refused at once.
    long_range = {"from": "2020-01-01", "to": "2021-06-30", "format": "csv"}
    deferred = await http.get(f"{REPORTS}/films", params=long_range, headers=data.admin.headers)
    assert deferred.status_code == 202, deferred.text
    done = await _wait_ready(http, data.admin, deferred.json()["reportId"])
    assert done["status"] == "ready"
    refused = await http.get(
        f"{REPORTS}/films",
        params={**long_range, "theaterId": str(uuid.uuid4())},
        headers=data.admin.headers,
    )
    assert refused.status_code == 422


async def test_distributors_report_matches_the_settlements(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    data = await seed(app, client)
    made = await client.post(
        "/api/admin/distributors", json={"name": "Aurora Pictures"}, headers=data.admin.headers
    )
    assert made.status_code == 201, made.text
    thursday = data.day1 - dt.timedelta(days=(data.day1.weekday() - 3) % 7 + 7)
    period = {"from": thursday.isoformat(), "to": (thursday + dt.timedelta(days=20)).isoformat()}
    contract = await client.post(
        "/api/admin/contracts",
        json={
            "distributorId": made.json()["id"],
            "movieId": data.aurora_id,
            "startDate": period["from"],
            "endDate": period["to"],
            "weekStartWeekday": 3,
            "terms": ["50"],
            "currency": "USD",
        },
        headers=data.admin.headers,
    )
    assert contract.status_code == 201, contract.text
    settled = await client.get(
        f"/api/admin/contracts/{contract.json()['id']}/settlements",
        params=period,
        headers=data.admin.headers,
    )
    assert settled.status_code == 200, settled.text
    weeks = settled.json()["items"]
    assert weeks

    response = await _report(client, data.operator, "distributors", "csv", period)
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    assert [(r["distributor"], r["movie"], r["currency"]) for r in rows] == [
        ("Aurora Pictures", "Aurora", "USD")
    ] * len(weeks)
    assert [(r["week_start"], r["gross"], r["amount_due"]) for r in rows] == [
        (w["weekStart"], w["gross"], w["amountDue"]) for w in weeks
    ]
    assert sum(Decimal(r["gross"]) for r in rows) > 0  # the Aurora shows were sold

    book = openpyxl.load_workbook(
        io.BytesIO((await _report(client, data.operator, "distributors", "xlsx", period)).content)
    ).active
    assert book is not None
    totals = [cell.value for cell in book[book.max_row]]
    assert totals[0] == "Total"
    assert Decimal(str(totals[11])).quantize(Decimal("0.01")) == Decimal(settled.json()["totalDue"])
    pdf = _pdf_text((await _report(client, data.operator, "distributors", "pdf", period)).content)
    assert "Aurora Pictures" in pdf
    assert "Amount due by distributor" in pdf


async def test_a_name_with_a_control_character_does_not_break_the_xlsx_report(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Found by the OpenAPI fuzz: openpyxl refuses such a cell, and the report was a 500."""
    data = await seed(app, client)
    made = await client.post(
        "/api/admin/distributors",
        json={"name": "Aurora\x0bPictures\x01"},
        headers=data.admin.headers,
    )
    assert made.status_code == 201, made.text
    thursday = data.day1 - dt.timedelta(days=(data.day1.weekday() - 3) % 7 + 7)
    period = {"from": thursday.isoformat(), "to": (thursday + dt.timedelta(days=20)).isoformat()}
    contract = await client.post(
        "/api/admin/contracts",
        json={
            "distributorId": made.json()["id"],
            "movieId": data.aurora_id,
            "startDate": period["from"],
            "endDate": period["to"],
            "weekStartWeekday": 3,
            "terms": ["50"],
            "currency": "USD",
        },
        headers=data.admin.headers,
    )
    assert contract.status_code == 201, contract.text

    book = openpyxl.load_workbook(
        io.BytesIO((await _report(client, data.operator, "distributors", "xlsx", period)).content)
    ).active
    assert book is not None
    assert book.cell(row=5, column=1).value == "AuroraPictures"
    # The other formats keep the name as stored.
    csv_report = await _report(client, data.operator, "distributors", "csv", period)
    assert "Aurora\x0bPictures" in csv_report.content.decode("utf-8")
