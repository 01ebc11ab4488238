"""Ticket, QR and check-in request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import Field

from boxoffice.core.schema import CamelModel, InputModel

CheckInResultName = Literal["valid", "already_used", "invalid", "wrong_showtime", "not_yet_open"]
InvalidReason = Literal["bad_signature", "unknown_ticket", "void", "showtime_cancelled", "expired"]


class CheckInRequest(InputModel):
    qr_token: str = Field(min_length=1, max_length=1024, description="The scanned QR content")
    showtime_id: uuid.UUID | None = Field(
        default=None, description="The showtime this door admits; other tickets: wrong_showtime"
    )
    theater_id: uuid.UUID | None = Field(
        default=None, description="The theater of this door; other tickets: wrong_showtime"
    )


class DoorTicket(CamelModel):
    """A ticket as the door sees it."""

    id: uuid.UUID
    booking_id: uuid.UUID
    showtime_id: uuid.UUID
    seat_label: str
    status: str
    movie_title: str
    screen_name: str
    start_time: dt.datetime
    age_rating: str


class CheckInOut(CamelModel):
    result: CheckInResultName
    ticket: DoorTicket | None = None
    used_at: dt.datetime | None = Field(default=None, description="With already_used")
    reason: InvalidReason | None = Field(default=None, description="Why a ticket is invalid")


class PublicKeyOut(CamelModel):
    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="The raw 32-byte public key, base64url without padding")
    format: str = Field(description="The token layout, for scanners that verify offline")


class TicketOut(CamelModel):
    id: uuid.UUID
    seat_label: str
    qr_token: str
    qr_png_url: str
    qr_svg_url: str
    status: Literal["valid", "used", "void"]


class TicketList(CamelModel):
    tickets: list[TicketOut]
