"""The notification jobs (email, SMS), the periodic show reminder, and the start-up wiring.

The jobs get the customer's id, the message and the event's small `data`; they read the rest
(the customer's address and language, the booking) when they run, render the templates and
send. A customer or booking gone meanwhile ends the job quietly; a refused recipient or a 4xx
from the SMS gateway is permanent (logged, not retried); anything else raises and the job is
retried with backoff (`BOXOFFICE_JOBS_*`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiosmtplib
import structlog
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from boxoffice.booking.models import Booking, BookingLine
from boxoffice.catalog.models import Movie
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database
from boxoffice.documents import service as documents
from boxoffice.documents.pdf import render_tickets
from boxoffice.jobs import JobContext, job
from boxoffice.loyalty import service as loyalty
from boxoffice.notifications import service
from boxoffice.notifications.channels import email as email_channel
from boxoffice.notifications.channels.email import Attachment
from boxoffice.notifications.channels.sms import (
    PermanentSmsError,
    SmsSender,
    normalize_number,
    sms_sender_from_settings,
)
from boxoffice.notifications.ics import CalendarEvent, calendar
from boxoffice.notifications.rendering import render_email, render_sms
from boxoffice.scheduling.models import Showtime
from boxoffice.tickets.signing import ticket_signer
from boxoffice.venues.models import Screen, Theater

log = structlog.get_logger(__name__)

PDF = "application/pdf"
ICS = "text/calendar; method=PUBLISH"


def install(app: FastAPI) -> None:
    """At start-up: this app's SMS sender, and tier upgrades told through `notify`."""
    app.state.sms = sms_sender_from_settings(app.state.settings)
    loyalty.set_tier_notifier(app.state.db, tier_upgraded)


async def tier_upgraded(
    session: AsyncSession, user_id: uuid.UUID, old_tier: str, new_tier: str
) -> None:
    """loyalty's TierNotifier: in the transaction that upgraded the tier."""
    await service.notify(
        session,
        user_id,
        "tier_upgrade",
        data={
            "oldTier": old_tier,
            "newTier": new_tier,
            "discountPercent": int(loyalty.tier_discount_rate(new_tier) * 100),
        },
    )


async def remind_once(app: FastAPI) -> None:
    """The periodic show reminder (`BOXOFFICE_REMINDER_INTERVAL_SECONDS`)."""
    settings: Settings = app.state.settings
    database: Database = app.state.db
    async with database.session() as session:
        sent = await service.send_due_reminders(
            session, hours_before=settings.reminder_hours_before
        )
    if sent:
        log.info("show_reminders_sent", count=sent)


# ---------------------------------------------------------------------------------------------
# Email


@job(service.EMAIL_JOB, max_attempts=8)
async def send_email(
    ctx: JobContext,
    user_id: str,
    kind: str,
    data: dict[str, Any],
    attachments: list[str] | None = None,
) -> None:
    async with ctx.db.session(write=False) as session:
        to = await service.recipient(session, uuid.UUID(user_id))
        if to is None:
            log.info("notification_skipped", kind=kind, reason="no active user")
            return
        context = _base_context(ctx.settings, to, data)
        files: list[Attachment] = []
        tickets = None
        booking_id = data.get("bookingId")
        if booking_id is not None:
            details = await _booking_details(session, ctx.settings, uuid.UUID(booking_id))
            if details is None:
                log.info("notification_skipped", kind=kind, reason="no such booking")
                return
            context["booking"] = details.view
            wanted = set(attachments or ())
            if service.TICKETS_PDF in wanted:
                signer = ticket_signer(ctx.settings, ctx.app.state.signing_key)
                tickets = await documents.tickets_document(
                    session, ctx.settings, signer, details.booking_id, details.show
                )
            if service.CALENDAR in wanted:
                files.append(Attachment("show.ics", ICS, details.calendar(ctx.settings)))
    if tickets is not None:  # rendered outside the session: CPU work, in a thread
        filename, document = tickets
        pdf = await asyncio.to_thread(render_tickets, document)
        files.insert(0, Attachment(filename, PDF, pdf))
    context["has_tickets"] = tickets is not None
    rendered = render_email(kind, to.preferences.locale, context)
    message = email_channel.compose(ctx.mailer, to.email, kind, rendered, files)
    try:
        await email_channel.send(ctx.mailer, message)
    except aiosmtplib.SMTPRecipientsRefused as exc:  # the server will not take this address
        log.error("notification_email_refused", kind=kind, error=str(exc))


def _base_context(
    settings: Settings, to: service.Recipient, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        **data,
        "name": to.name,
        "company": settings.company_name,
        "base_url": settings.public_base_url,
    }


class BookingDetails:
    """What the booking mails show, and the calendar entry of the show."""

    def __init__(
        self,
        booking: Booking,
        showtime: Showtime,
        movie: Movie,
        theater: Theater,
        screen: Screen,
        seats: list[str],
        url: str,
    ) -> None:
        self.booking_id = booking.id
        self.show = documents.ShowContext(showtime, movie, theater, screen)
        self.showtime = showtime
        self.movie = movie
        self.theater = theater
        self.screen = screen
        self.seats = seats
        self.view: dict[str, Any] = {
            "id": str(booking.id),
            "reference": booking.reference,
            "status": booking.status,
            "movie": movie.title,
            "start": showtime.start_time.isoformat(),
            "end": showtime.end_time.isoformat(),
            "timezone": theater.timezone,
            "theater": theater.name,
            "location": theater.location,
            "screen": screen.name,
            "seats": seats,
            "pickupCode": booking.pickup_code,
            "total": str(booking.final_amount),
            "currency": booking.currency,
            "expiresAt": booking.expires_at.isoformat(),
            "url": url,
        }

    def calendar(self, settings: Settings) -> bytes:
        where = ", ".join(part for part in (self.theater.name, self.screen.name) if part)
        if self.theater.location:
            where = f"{where} ({self.theater.location})"
        seats = ", ".join(self.seats)
        return calendar(
            CalendarEvent(
                uid=f"booking-{self.booking_id}@boxoffice",
                start=self.showtime.start_time,
                end=self.showtime.end_time,
                summary=self.movie.title,
                location=where,
                description=(
                    f"Booking {self.view['reference']}" + (f", seats {seats}" if seats else "")
                ),
                url=self.view["url"],
            ),
            stamp=utcnow(),
            product=settings.company_name,
        )


async def _booking_details(
    session: AsyncSession, settings: Settings, booking_id: uuid.UUID
) -> BookingDetails | None:
    row = (
        await session.execute(
            select(Booking, Showtime, Movie, Theater, Screen)
            .join(Showtime, Showtime.id == Booking.showtime_id)
            .join(Movie, Movie.id == Showtime.movie_id)
            .join(Theater, Theater.id == Showtime.theater_id)
            .join(Screen, Screen.id == Showtime.screen_id)
            .where(Booking.id == booking_id)
            .options(raiseload(Movie.genres))  # mails show none: no second query for them
        )
    ).first()
    if row is None:
        return None
    booking, showtime, movie, theater, screen = row
    seats = list(
        (
            await session.scalars(
                select(BookingLine.seat_label)
                .where(BookingLine.booking_id == booking_id)
                .order_by(BookingLine.seat_label)
            )
        ).all()
    )
    url = f"{settings.public_base_url.rstrip('/')}/bookings/{booking.id}"
    return BookingDetails(booking, showtime, movie, theater, screen, seats, url)


# ---------------------------------------------------------------------------------------------
# SMS


@job(service.SMS_JOB, max_attempts=6)
async def send_sms(ctx: JobContext, user_id: str, kind: str, data: dict[str, Any]) -> None:
    async with ctx.db.session(write=False) as session:
        to = await service.recipient(session, uuid.UUID(user_id))
    if to is None or not to.phone:
        log.info("notification_skipped", kind=kind, reason="no active user with a phone")
        return
    text = render_sms(kind, to.preferences.locale, {**data, "name": to.name})
    try:
        await _sms_sender(ctx).send(normalize_number(to.phone), text)
    except PermanentSmsError as exc:  # e.g. an invalid number: sending again cannot help
        log.error("notification_sms_refused", kind=kind, error=str(exc))


def _sms_sender(ctx: JobContext) -> SmsSender:
    sender: SmsSender | None = getattr(ctx.app.state, "sms", None)
    if sender is None:  # an app used without its lifespan (e.g. a command)
        sender = ctx.app.state.sms = sms_sender_from_settings(ctx.settings)
    return sender
