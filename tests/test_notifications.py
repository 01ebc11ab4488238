"""Notifications: the in-app API, channel and language preferences in `/api/me`, the mails of
each event through a real SMTP server (aiosmtpd on loopback), SMS through the outbox and
through a fake Twilio API on loopback, and nothing sent from a rolled-back transaction.

Jobs run in the app's process; tests wait for them with `settle_jobs` (which times out)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email
import email.policy
import io
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pypdf
import pytest
from aiosmtpd.controller import Controller
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select, update

from boxoffice.app import create_app
from boxoffice.booking.expiry import expire_once
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.loyalty import service as loyalty
from boxoffice.notifications import jobs as notification_jobs
from boxoffice.notifications import service
from boxoffice.notifications.channels.sms import (
    PermanentSmsError,
    TransientSmsError,
    TwilioSms,
    normalize_number,
)
from boxoffice.notifications.ics import CalendarEvent, calendar, escape_text
from boxoffice.notifications.models import Notification, ShowReminder
from boxoffice.notifications.rendering import LOCALES, has_template, render_email
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import Screen, Theater
from tests.booking_helpers import DECLINE_CARD, book, book_and_pay, pay, seed_showtime
from tests.conftest import Backend, make_settings, reset_database, settle_jobs
from tests.factories import make_pending_booking
from tests.fakes.http_server import free_port
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, serve_twilio
from tests.helpers import TestUser, make_user

Outbox = Callable[[], list[Path]]
PHONE = "+1 (555) 010-9999"
E164_PHONE = "+15550109999"


# ---------------------------------------------------------------------------------------------
# Helpers


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def kind(self) -> str | None:
        kind = self.message["X-Boxoffice-Notification"]
        return str(kind) if kind is not None else None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        return str(body.get_content())

    def attachment(self, content_type: str) -> tuple[str, bytes]:
        found = [
            part
            for part in self.message.iter_attachments()
            if part.get_content_type() == content_type
        ]
        assert len(found) == 1, [p.get_content_type() for p in self.message.iter_attachments()]
        data = found[0].get_payload(decode=True)
        assert isinstance(data, bytes)
        return str(found[0].get_filename()), data


@dataclass
class Inbox:
    """What the SMTP server received."""

    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def of(self, kind: str) -> list[Mail]:
        return [mail for mail in self.mails if mail.kind == kind]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@dataclass
class Mailing:
    """An app that sends its mail to the loopback SMTP server."""

    app: FastAPI
    http: httpx.AsyncClient
    inbox: Inbox

    async def mails(self, kind: str) -> list[Mail]:
        await settle_jobs(self.app)
        return self.inbox.of(kind)


async def _running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app):
        await reset_database(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http:
            yield http
            await settle_jobs(app)  # no job left for a server that is about to stop


@pytest.fixture
async def mailing(
    backend: Backend, tmp_path: Path, smtp: tuple[Inbox, int]
) -> AsyncIterator[Mailing]:
    inbox, port = smtp
    app = create_app(
        make_settings(
            backend,
            tmp_path / "var",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            mail_from="Kino <tickets@kino.example>",
        )
    )
    async for http in _running(app):
        yield Mailing(app, http, inbox)


async def rows_of(app: FastAPI, user_id: uuid.UUID) -> list[Notification]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(Notification)
            .where(Notification.user_id == user_id)
            .order_by(Notification.created_at)
        )
        return list(rows)


async def patch_me(http: httpx.AsyncClient, user: TestUser, **body: Any) -> dict[str, Any]:
    response = await http.patch("/api/me", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def notify_tier(app: FastAPI, user_id: uuid.UUID, new_tier: str = "silver") -> None:
    async with app.state.db.session() as session:
        await service.notify(
            session,
            user_id,
            "tier_upgrade",
            data={"oldTier": "bronze", "newTier": new_tier, "discountPercent": 5},
        )


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def sms_files(outbox_dir: Path) -> list[str]:
    return [p.read_text() for p in sorted(outbox_dir.glob("sms-*.txt"))]


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


async def showtime_times(app: FastAPI, showtime_id: str) -> tuple[dt.datetime, dt.datetime]:
    async with app.state.db.session(write=False) as session:
        showtime = await session.get(Showtime, uuid.UUID(showtime_id))
        assert showtime is not None
        return showtime.start_time, showtime.end_time


# ---------------------------------------------------------------------------------------------
# In-app notifications


async def test_in_app_notifications_list_read_and_read_all(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ann, bob = await make_user(app), await make_user(app)
    for index in range(5):
        await notify_tier(app, ann.id, f"t{index}")
    await notify_tier(app, bob.id)

    listed = await client.get("/api/me/notifications", headers=ann.headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [n["title"] for n in body["notifications"]] == [
        f"Welcome to T{i}" for i in (4, 3, 2, 1, 0)
    ]
    assert body["unreadCount"] == 5
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 5, "totalPages": 1}
    newest = body["notifications"][0]
    assert newest["type"] == "tier_upgrade"
    assert newest["read"] is False
    assert newest["readAt"] is None
    assert newest["data"] == {"oldTier": "bronze", "newTier": "t4", "discountPercent": 5}
    assert "T4" in newest["body"]
    assert dt.datetime.fromisoformat(newest["createdAt"]).tzinfo is not None

    # Paging: ?page=&limit=, and pageSize as another name for limit.
    for size in ("limit", "pageSize"):
        page = await client.get(f"/api/me/notifications?page=2&{size}=2", headers=ann.headers)
        assert page.status_code == 200, page.text
        assert [n["title"] for n in page.json()["notifications"]] == [
            "Welcome to T2",
            "Welcome to T1",
        ]
        assert page.json()["pagination"] == {"page": 2, "limit": 2, "total": 5, "totalPages": 3}
        assert page.json()["unreadCount"] == 5

    # Reading one: idempotent.
    read = await client.post(f"/api/me/notifications/{newest['id']}/read", headers=ann.headers)
    assert read.status_code == 200, read.text
    assert read.json()["read"] is True
    read_at = read.json()["readAt"]
    assert read_at is not None
    again = await client.post(f"/api/me/notifications/{newest['id']}/read", headers=ann.headers)
    assert again.status_code == 200
    assert again.json()["readAt"] == read_at

    unread = (await client.get("/api/me/notifications?unread=true", headers=ann.headers)).json()
    assert [n["title"] for n in unread["notifications"]] == [
        f"Welcome to T{i}" for i in (3, 2, 1, 0)
    ]
    assert unread["unreadCount"] == 4
    assert unread["pagination"]["total"] == 4
    everything = (await client.get("/api/me/notifications", headers=ann.headers)).json()
    assert everything["pagination"]["total"] == 5
    assert [n["read"] for n in everything["notifications"]] == [True, False, False, False, False]

    # Another user's notification, or none at all: 404, and nothing changes.
    bobs = (await client.get("/api/me/notifications", headers=bob.headers)).json()
    [bob_note] = bobs["notifications"]
    for user, target in (
        (bob, newest["id"]),
        (bob, everything["notifications"][1]["id"]),
        (ann, bob_note["id"]),
        (ann, str(uuid.uuid4())),
    ):
        refused = await client.post(f"/api/me/notifications/{target}/read", headers=user.headers)
        assert refused.status_code == 404, refused.text
        assert refused.json()["code"] == "notification_not_found"
    assert (await client.get("/api/me/notifications", headers=ann.headers)).json()[
        "unreadCount"
    ] == 4
    assert (await client.get("/api/me/notifications", headers=bob.headers)).json()[
        "unreadCount"
    ] == 1

    done = await client.post("/api/me/notifications/read-all", headers=ann.headers)
    assert done.status_code == 200, done.text
    assert done.json() == {"marked": 4, "unreadCount": 0}
    assert (await client.post("/api/me/notifications/read-all", headers=ann.headers)).json() == {
        "marked": 0,
        "unreadCount": 0,
    }
    after = (await client.get("/api/me/notifications?unread=true", headers=ann.headers)).json()
    assert after["notifications"] == []
    assert after["unreadCount"] == 0
    assert (await client.get("/api/me/notifications", headers=bob.headers)).json()[
        "unreadCount"
    ] == 1  # bob's are his own

    assert (await client.get("/api/me/notifications")).status_code == 401
    assert (await client.post("/api/me/notifications/read-all")).status_code == 401
    bad = await client.get("/api/me/notifications?limit=101", headers=ann.headers)
    assert bad.status_code == 422


# ---------------------------------------------------------------------------------------------
# Preferences in /api/me


async def test_me_shows_and_changes_channels_and_locale(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ann = await make_user(app)
    me = (await client.get("/api/me", headers=ann.headers)).json()
    assert me["notificationChannels"] == {"email": True, "sms": False, "inApp": True}
    assert me["locale"] == "en"
    assert me["tier"] == "bronze"  # the profile is still all there

    changed = await patch_me(client, ann, notificationChannels={"sms": True}, locale="de")
    assert changed["notificationChannels"] == {"email": True, "sms": True, "inApp": True}
    assert changed["locale"] == "de"
    changed = await patch_me(client, ann, notificationChannels={"email": False, "inApp": False})
    assert changed["notificationChannels"] == {"email": False, "sms": True, "inApp": False}
    assert changed["locale"] == "de"

    for body in (
        {"locale": "fr"},
        {"locale": ""},
        {"locale": 7},
        {"notificationChannels": {"sms": "yes"}},
        {"notificationChannels": {"push": True}},
        {"notificationChannels": True},
    ):
        refused = await client.patch("/api/me", json=body, headers=ann.headers)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["code"] == "validation_error"
    me = (await client.get("/api/me", headers=ann.headers)).json()
    assert me["notificationChannels"] == {"email": False, "sms": True, "inApp": False}
    assert me["locale"] == "de"
    # Other answers that show an account (here the admin's list) are as they were.
    admin = await make_user(app, "admin")
    users = (await client.get("/api/admin/users", headers=admin.headers)).json()["users"]
    assert users
    assert not any("notificationChannels" in user for user in users)


async def test_the_channels_decide_what_a_booking_sends(
    app: FastAPI, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    show = await seed_showtime(app)
    ann = await make_user(app)
    await patch_me(client, ann, phone=PHONE)
    outbox_dir: Path = app.state.settings.outbox_dir

    async def confirm(*seats: str) -> str:
        booking = await book_and_pay(client, ann.headers, show.showtime_id, *seats)
        await settle_jobs(app)
        return str(booking["bookingReference"])

    def confirmation_mails() -> list[str]:
        mails = [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in outbox()
        ]
        return [
            str(m["Subject"]) for m in mails if m["X-Boxoffice-Notification"] == "booking_confirmed"
        ]

    # The defaults: email and in-app, no SMS.
    first = await confirm("A1")
    assert confirmation_mails() == [f"Your booking {first} is confirmed"]
    assert [(n.type, n.data["reference"]) for n in await rows_of(app, ann.id)] == [
        ("booking", first)
    ]
    assert sms_files(outbox_dir) == []

    # Email off, SMS on (the phone is known): an SMS and the in-app row, no mail.
    await patch_me(client, ann, notificationChannels={"email": False, "sms": True})
    second = await confirm("A2")
    assert len(confirmation_mails()) == 1
    [sms] = sms_files(outbox_dir)
    assert sms.startswith(f"To: {E164_PHONE}\n")
    assert f"Your booking {second} is confirmed" in sms
    assert [n.data["reference"] for n in await rows_of(app, ann.id)] == [first, second]

    # In-app off, email back on, no phone: a mail only.
    await patch_me(client, ann, phone="", notificationChannels={"email": True, "inApp": False})
    third = await confirm("A3")
    assert confirmation_mails()[-1] == f"Your booking {third} is confirmed"
    assert len(confirmation_mails()) == 2
    assert len(sms_files(outbox_dir)) == 1  # SMS on, but no phone to send to
    assert len(await rows_of(app, ann.id)) == 2


async def test_a_rolled_back_transaction_sends_nothing(
    app: FastAPI, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    ann = await make_user(app)
    await patch_me(client, ann, phone=PHONE, notificationChannels={"sms": True})
    show = await seed_showtime(app)
    answer = await book(client, ann.headers, show.showtime_id, "B1")
    booking_id = uuid.UUID(answer["booking"]["id"])

    async def notify_then_fail() -> None:
        async with app.state.db.session() as session:
            tier = {"oldTier": "bronze", "newTier": "silver", "discountPercent": 5}
            assert await service.notify(session, ann.id, "tier_upgrade", data=tier) is not None
            booking = await session.get(Booking, booking_id)
            assert booking is not None
            await service.notify(
                session,
                ann.id,
                "booking_expired",
                booking_id=booking_id,
                data={"reference": booking.reference},
            )
            raise RuntimeError("the event failed after notifying")

    with pytest.raises(RuntimeError, match="failed after notifying"):
        await notify_then_fail()
    await settle_jobs(app)
    assert outbox() == []
    assert sms_files(app.state.settings.outbox_dir) == []
    assert await rows_of(app, ann.id) == []

    # The same, committed: sent.
    await notify_tier(app, ann.id)
    await settle_jobs(app)
    assert len(outbox()) == 1
    assert len(sms_files(app.state.settings.outbox_dir)) == 1
    assert len(await rows_of(app, ann.id)) == 1


# ---------------------------------------------------------------------------------------------
# Mails through a real SMTP server


async def test_booking_confirmation_mail_with_tickets_pdf_and_calendar_entry(
    mailing: Mailing,
) -> None:
    app, http = mailing.app, mailing.http
    show = await seed_showtime(app)
    async with app.state.db.session() as session:
        await session.execute(
            update(Movie)
            .where(Movie.id == uuid.UUID(show.movie_id))
            .values(title="Dune, Part Two; Director's Cut")
        )
    ann = await make_user(app)
    booking = await book_and_pay(http, ann.headers, show.showtime_id, "A1", "A2")
    reference = booking["bookingReference"]

    [mail] = await mailing.mails("booking_confirmed")
    assert mail.sender == "tickets@kino.example"
    assert mail.recipients == [ann.email]
    assert mail.message["To"] == ann.email
    assert mail.subject == f"Your booking {reference} is confirmed"
    assert reference in mail.text
    assert "Dune, Part Two; Director's Cut" in mail.text
    assert "A1, A2" in mail.text
    assert "20.00 EUR" in mail.text
    assert f"/bookings/{booking['id']}" in mail.text
    assert "Dune, Part Two; Director&#39;s Cut" in mail.html  # escaped in HTML

    filename, pdf = mail.attachment("application/pdf")
    assert filename == f"tickets-{reference}.pdf"
    text = pdf_text(pdf)
    assert "Seat A1" in text
    assert "Seat A2" in text
    assert len(pypdf.PdfReader(io.BytesIO(pdf)).pages) == 2

    filename, ics = mail.attachment("text/calendar")
    assert filename.endswith(".ics")
    assert ics.endswith(b"\r\n")
    assert b"\n" not in ics.replace(b"\r\n", b"")  # CRLF line ends only
    unfolded = ics.decode().replace("\r\n ", "")
    lines = unfolded.split("\r\n")
    start, end = await showtime_times(app, show.showtime_id)
    assert f"DTSTART:{stamp(start)}" in lines
    assert f"DTEND:{stamp(end)}" in lines
    assert "SUMMARY:Dune\\, Part Two\\; Director's Cut" in lines
    async with app.state.db.session(write=False) as session:
        theater = await session.get(Theater, uuid.UUID(show.theater_id))
        screen = await session.get(Screen, uuid.UUID(show.screen_id))
        assert theater is not None
        assert screen is not None
    where = f"{theater.name}, {screen.name}" + (
        f" ({theater.location})" if theater.location else ""
    )
    assert f"LOCATION:{escape_text(where)}" in lines
    assert lines[:2] == ["BEGIN:VCALENDAR", "VERSION:2.0"]
    assert "BEGIN:VEVENT" in lines
    assert all(len(line.encode()) <= 75 for line in ics.decode().split("\r\n"))

    # The in-app row came with it, and nothing else was mailed.
    [row] = await rows_of(app, ann.id)
    assert (row.type, row.data["bookingId"], row.data["reference"]) == (
        "booking",
        booking["id"],
        reference,
    )
    assert len(mailing.inbox.mails) == 1


async def test_payment_failed_refund_done_and_booking_expired_mails(mailing: Mailing) -> None:
    app, http = mailing.app, mailing.http
    show = await seed_showtime(app)
    ann = await make_user(app)

    # A declined card.
    answer = await book(http, ann.headers, show.showtime_id, "C1")
    declined = await pay(http, ann.headers, answer["paymentIntentId"], DECLINE_CARD)
    assert declined.status_code == 402, declined.text
    reference = answer["booking"]["bookingReference"]
    [failed] = await mailing.mails("payment_failed")
    assert failed.recipients == [ann.email]
    assert failed.subject == f"Payment for booking {reference} failed"
    assert "10.00 EUR" in failed.text
    assert "try again" in failed.text.lower() or "Please try again" in failed.text

    # Paid after all, then one of two seats refunded.
    paid = await book_and_pay(http, ann.headers, show.showtime_id, "C2", "C3")
    refund = await http.post(
        "/api/payments/refund",
        json={"bookingId": paid["id"], "seatNumbers": ["C3"]},
        headers=ann.headers,
    )
    assert refund.status_code in (200, 201), refund.text
    amount = refund.json()["amount"]
    [refunded] = await mailing.mails("refund_done")
    assert refunded.subject == f"Refund of {amount} EUR for booking {paid['bookingReference']}"
    assert "C3" in refunded.text
    assert f"{amount} EUR" in refunded.text

    # A booking left unpaid past its deadline, recorded by the expiry job.
    async with app.state.db.session() as session:
        lapsed = await make_pending_booking(
            session,
            ann.id,
            uuid.UUID(show.showtime_id),
            ["C4"],
            Decimal("10.00"),
            expires_in=-dt.timedelta(minutes=1),
        )
        lapsed_reference = lapsed.reference
    await expire_once(app)
    [expired] = await mailing.mails("booking_expired")
    assert expired.subject == f"Booking {lapsed_reference} expired"
    assert "Nothing was charged" in expired.text

    types = [(row.type, row.data["reference"]) for row in await rows_of(app, ann.id)]
    assert ("payment", reference) in types
    assert ("payment", paid["bookingReference"]) in types  # the refund
    assert ("booking", lapsed_reference) in types


async def test_show_reminder_is_sent_once_for_shows_within_the_window(mailing: Mailing) -> None:
    app, http = mailing.app, mailing.http
    soon = await seed_showtime(app, starts_in=dt.timedelta(hours=2))
    later = await seed_showtime(app, starts_in=dt.timedelta(days=3))
    ann = await make_user(app)
    near = await book_and_pay(http, ann.headers, soon.showtime_id, "D1")
    await book_and_pay(http, ann.headers, later.showtime_id, "D1")
    await book(http, ann.headers, soon.showtime_id, "D2")  # pending: no reminder
    assert len(await mailing.mails("booking_confirmed")) == 2

    for _ in range(2):
        await notification_jobs.remind_once(app)
    [reminder] = await mailing.mails("show_reminder")
    async with app.state.db.session(write=False) as session:
        title = await session.scalar(
            select(Movie.title).where(Movie.id == uuid.UUID(soon.movie_id))
        )
        reminded = (await session.scalars(select(ShowReminder.booking_id))).all()
    assert reminder.subject.startswith(f"Reminder: {title}, ")
    assert reminder.recipients == [ann.email]
    assert "D1" in reminder.text
    assert reminded == [uuid.UUID(near["id"])]
    rows = [row for row in await rows_of(app, ann.id) if row.title.startswith("Reminder")]
    assert [row.data["bookingId"] for row in rows] == [near["id"]]

    # A second process running the job at the same time still reminds once.
    async with app.state.db.session() as session:
        await session.execute(
            update(Showtime)
            .where(Showtime.id == uuid.UUID(later.showtime_id))
            .values(start_time=utcnow() + dt.timedelta(hours=5))
        )
    await asyncio.gather(*(notification_jobs.remind_once(app) for _ in range(2)))
    assert len(await mailing.mails("show_reminder")) == 2
    async with app.state.db.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(ShowReminder)) == 2


async def test_tier_upgrade_is_notified_in_app_and_by_mail(mailing: Mailing) -> None:
    app = mailing.app
    show = await seed_showtime(app)
    ann = await make_user(app)
    async with app.state.db.session() as session:
        booking = await make_pending_booking(
            session, ann.id, uuid.UUID(show.showtime_id), ["E1"], Decimal("250.00")
        )
        booking.status = BookingStatus.CONFIRMED
        booking_id = booking.id
    async with app.state.db.session() as session:
        assert await loyalty.earn_for_booking(session, booking_id) == 2500

    [mail] = await mailing.mails("tier_upgrade")
    assert mail.subject == "Welcome to Silver"
    assert "5% off" in mail.text
    [row] = await rows_of(app, ann.id)
    assert (row.type, row.title) == ("tier_upgrade", "Welcome to Silver")
    assert row.data == {"oldTier": "bronze", "newTier": "silver", "discountPercent": 5}


async def test_account_mails_keep_their_links_and_come_in_the_customers_language(
    mailing: Mailing,
) -> None:
    app, http = mailing.app, mailing.http
    registered = await http.post(
        "/api/auth/register",
        json={"email": "mia@example.com", "password": "Correct-Horse-Battery-9", "fullName": "Mia"},
    )
    assert registered.status_code == 201, registered.text
    # Sent right after the commit, before the answer: no job to wait for.
    [verification] = mailing.inbox.of("email_verification")
    assert verification.recipients == ["mia@example.com"]
    assert verification.subject == "Confirm your email address"
    assert "http://127.0.0.1:8000/verify-email?token=" in verification.text
    token = verification.text.split("verify-email?token=")[1].split()[0]
    assert f'href="http://127.0.0.1:8000/verify-email?token={token}"' in verification.html
    assert (await http.post("/api/auth/verify-email", json={"token": token})).status_code == 204

    mia = TestUser(
        id=uuid.UUID(registered.json()["user"]["id"]),
        email="mia@example.com",
        password="",
        role="customer",
        token=registered.json()["accessToken"],
    )
    # Account mails go by email whatever the channels say, and leave no in-app row.
    await patch_me(http, mia, locale="de", notificationChannels={"email": False, "inApp": True})
    assert (
        await http.post("/api/auth/password/forgot", json={"email": "mia@example.com"})
    ).status_code == 202
    [reset] = mailing.inbox.of("password_reset")
    assert reset.subject == "Passwort zurücksetzen"
    assert reset.text.startswith("Hallo Mia,")
    assert "http://127.0.0.1:8000/reset-password?token=" in reset.text
    reset_token = reset.text.split("reset-password?token=")[1].split()[0]
    changed = await http.post(
        "/api/auth/password/reset",
        json={"token": reset_token, "newPassword": "Another-Horse-Battery-7"},
    )
    assert changed.status_code == 204, changed.text
    assert await rows_of(app, mia.id) == []


async def test_german_customers_get_german_messages(mailing: Mailing) -> None:
    app, http = mailing.app, mailing.http
    show = await seed_showtime(app)
    ann = await make_user(app)
    await patch_me(http, ann, locale="de")
    booking = await book_and_pay(http, ann.headers, show.showtime_id, "E8")
    reference = booking["bookingReference"]
    [mail] = await mailing.mails("booking_confirmed")
    assert mail.subject == f"Ihre Buchung {reference} ist bestätigt"
    assert "Plätze:   E8" in mail.text
    assert "10,00 EUR" in mail.text
    assert '<html lang="de">' in mail.html
    [row] = await rows_of(app, ann.id)
    assert row.title == f"Ihre Buchung {reference} ist bestätigt"
    assert "10,00 EUR" in row.body


# ---------------------------------------------------------------------------------------------
# SMS through Twilio's API (a fake on loopback)


async def test_twilio_adapter_speaks_the_messages_api() -> None:
    with serve_twilio() as (fake, base_url):
        sender = TwilioSms(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            from_number=FROM_NUMBER,
            api_base=base_url,
        )
        sid = await sender.send(E164_PHONE, "Hello from the cinema")
        assert sid.startswith("SM")
        [request] = fake.requests
        assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        assert request.authorization == f"Basic {expected}"
        assert (request.content_type or "").startswith("application/x-www-form-urlencoded")
        assert request.form == {
            "To": E164_PHONE,
            "From": FROM_NUMBER,
            "Body": "Hello from the cinema",
        }

        fake.fail_next(1, 503)
        with pytest.raises(TransientSmsError):
            await sender.send(E164_PHONE, "again")
        fake.fail_next(1, 429)
        with pytest.raises(TransientSmsError):
            await sender.send(E164_PHONE, "again")
        with pytest.raises(PermanentSmsError, match="21211"):
            await sender.send("5550109999", "no plus")
        wrong = TwilioSms(
            account_sid=ACCOUNT_SID, auth_token="wrong", from_number=FROM_NUMBER, api_base=base_url
        )
        with pytest.raises(PermanentSmsError, match="20003"):
            await wrong.send(E164_PHONE, "who am I")
    closed = TwilioSms(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        from_number=FROM_NUMBER,
        api_base=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(TransientSmsError):
        await closed.send(E164_PHONE, "nobody listens")
    assert normalize_number(PHONE) == E164_PHONE


@pytest.fixture
async def texting(
    backend: Backend, tmp_path: Path
) -> AsyncIterator[tuple[Any, FastAPI, httpx.AsyncClient]]:
    with serve_twilio() as (fake, base_url):
        app = create_app(
            make_settings(
                backend,
                tmp_path / "var",
                sms_provider="twilio",
                twilio_account_sid=ACCOUNT_SID,
                twilio_auth_token=AUTH_TOKEN,
                twilio_from=FROM_NUMBER,
                twilio_api_base=base_url,
                jobs_retry_base_seconds=0.02,
                jobs_retry_cap_seconds=0.1,
            )
        )
        async for http in _running(app):
            yield fake, app, http


async def _texting_customer(app: FastAPI, http: httpx.AsyncClient) -> TestUser:
    ann = await make_user(app)
    await patch_me(http, ann, phone=PHONE, notificationChannels={"sms": True, "email": False})
    return ann


async def test_sms_job_retries_gateway_errors_and_then_sends(
    texting: tuple[Any, FastAPI, httpx.AsyncClient],
) -> None:
    fake, app, http = texting
    ann = await _texting_customer(app, http)
    fake.fail_next(2, 500)
    await notify_tier(app, ann.id)
    await settle_jobs(app)
    assert [r.status for r in fake.requests] == [500, 500, 201]
    [sent] = fake.sent()
    assert sent.form["To"] == E164_PHONE
    assert sent.form["From"] == FROM_NUMBER
    assert sent.form["Body"].startswith("Welcome to Silver\n")
    assert "5% off" in sent.form["Body"]


async def test_sms_job_gives_up_on_a_client_error(
    texting: tuple[Any, FastAPI, httpx.AsyncClient],
) -> None:
    fake, app, http = texting
    ann = await _texting_customer(app, http)
    fake.fail_next(1, 400)
    await notify_tier(app, ann.id)
    await settle_jobs(app)  # a job waiting for its retry counts as not done
    assert [r.status for r in fake.requests] == [400]  # not retried
    assert len(await rows_of(app, ann.id)) == 1  # the in-app row stays


# ---------------------------------------------------------------------------------------------
# Templates and the calendar file


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(service.MESSAGES))
def test_every_message_has_text_and_html_in_every_locale(kind: str, locale: str) -> None:
    assert has_template(kind, locale, "txt")
    assert has_template(kind, locale, "html")
    booking = {
        "id": "b1",
        "reference": "ABC23456",
        "movie": "<Film> & Co",
        "start": "2026-11-21T18:30:00+00:00",
        "end": "2026-11-21T21:00:00+00:00",
        "timezone": "Europe/Berlin",
        "theater": "Kino",
        "location": "Hauptstr. 1",
        "screen": "Saal 1",
        "seats": ["A1"],
        "pickupCode": None,
        "total": "10.00",
        "currency": "EUR",
        "expiresAt": "2026-11-20T10:00:00+00:00",
        "url": "http://x/b/1",
        "status": "confirmed",
    }
    context = {
        "name": "Ann",
        "company": "Kino",
        "base_url": "http://x",
        "reference": "ABC23456",
        "amount": "10.00",
        "currency": "EUR",
        "reason": "card_declined",
        "seats": ["A1"],
        "movie": "<Film> & Co",
        "start": booking["start"],
        "timezone": "Europe/Berlin",
        "theater": "Kino",
        "screen": "Saal 1",
        "oldTier": "bronze",
        "newTier": "gold",
        "discountPercent": 10,
        "link": "http://x/?token=t",
        "token": "t",
        "hours": 24,
        "minutes": 60,
        "booking": booking,
        "has_tickets": True,
    }
    rendered = render_email(kind, locale, context)
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert rendered.text.startswith("Hallo Ann," if locale == "de" else "Hello Ann,")
    assert f'<html lang="{locale}">' in rendered.html
    assert "<Film>" not in rendered.html  # autoescaped
    assert "<Film> & Co" in rendered.text or kind not in {"booking_confirmed", "show_reminder"}


def test_calendar_lines_are_escaped_crlf_terminated_and_folded() -> None:
    title = "Ünïcødé: a film, with; commas\\and a very long title that goes on and on past 75"
    data = calendar(
        CalendarEvent(
            uid="booking-1@boxoffice",
            start=dt.datetime(2026, 11, 21, 18, 30, tzinfo=dt.UTC),
            end=dt.datetime(2026, 11, 21, 21, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            summary=title,
            location="Kino, Saal 1",
            description="line one\nline two",
        ),
        stamp=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    )
    physical = data.split(b"\r\n")
    assert physical[-1] == b""
    assert all(len(line) <= 75 for line in physical)
    assert any(line.startswith(b" ") for line in physical)  # folded
    lines = data.decode().replace("\r\n ", "").split("\r\n")
    assert f"SUMMARY:{escape_text(title)}" in lines
    summary = (
        "Ünïcødé: a film\\, with\\; commas\\\\and a very long title that goes on and on past 75"
    )
    assert f"SUMMARY:{summary}" in lines
    assert "LOCATION:Kino\\, Saal 1" in lines
    assert "DESCRIPTION:line one\\nline two" in lines
    assert "DTSTART:20261121T183000Z" in lines
    assert "DTEND:20261121T200000Z" in lines  # 21:00 at +01:00, in UTC
    assert lines[-2:] == ["END:VCALENDAR", ""]
