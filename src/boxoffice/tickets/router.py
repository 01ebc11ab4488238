"""Tickets of a booking, their QR images, the door scanner's check-in and its public key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from boxoffice.accounts.deps import TokenClaims, has_permission, require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.accounts.service import signed_in_user
from boxoffice.core.clock import utcnow
from boxoffice.core.db import SessionDep, get_database
from boxoffice.core.routing import RetryingRoute
from boxoffice.tickets import service
from boxoffice.tickets.exceptions import TicketTokenNotFound
from boxoffice.tickets.models import Ticket
from boxoffice.tickets.qrcode import qr_png, qr_svg
from boxoffice.tickets.schemas import (
    CheckInOut,
    CheckInRequest,
    PublicKeyOut,
    TicketList,
    TicketOut,
)
from boxoffice.tickets.signing import TOKEN_FORMAT, TicketSigner, b64url, ticket_signer

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["tickets and check-in"])

# The QR image routes; a ticket list builds their URLs from these (Starlette's url_for looks
# through every route of the app on each call: a fifth of a ticket list's CPU).
QR_PNG_PATH = "/tickets/qr/{qr_token}.png"
QR_SVG_PATH = "/tickets/qr/{qr_token}.svg"

QR_CACHE_CONTROL = "private, max-age=86400"
_QR_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"description": "Not a valid ticket token"}
}


async def _signer(request: Request) -> TicketSigner:
    return ticket_signer(request.app.state.settings, request.app.state.signing_key)


Signer = Annotated[TicketSigner, Depends(_signer)]
Scanner = Annotated[User, Depends(require(Permission.CHECKIN_SCAN))]


@router.post("/checkin", response_model_exclude_none=True, summary="Scan a ticket at the door")
async def check_in(
    request: Request, session: SessionDep, scanner: Scanner, signer: Signer, body: CheckInRequest
) -> CheckInOut:
    """Every outcome answers 200 with a `result` for the scanner to show. A `valid` scan marks
    the ticket used, exactly once; a forged or altered token is `invalid` without any database
    read. Name the door's `showtimeId` or `theaterId` to refuse tickets for other ones.
    `invalid` carries a `reason`: `bad_signature`, `unknown_ticket`, `void` (refunded),
    `showtime_cancelled`, or `expired` (the showtime ended more than 4 hours ago)."""
    outcome = await service.check_in(
        session,
        request.app.state.settings,
        signer,
        scanner,
        body.qr_token,
        showtime_id=body.showtime_id,
        theater_id=body.theater_id,
        now=utcnow(),
    )
    return CheckInOut.model_validate(outcome)


@router.get("/checkin/public-key", summary="The key that signs ticket tokens")
async def public_key(signer: Signer, response: Response) -> PublicKeyOut:
    """For door scanners that verify tokens offline."""
    response.headers["Cache-Control"] = "public, max-age=3600"
    return PublicKeyOut(
        algorithm="Ed25519", public_key=b64url(signer.public_key_bytes), format=TOKEN_FORMAT
    )


@router.get("/bookings/{booking_id}/tickets", summary="The tickets of a paid booking")
async def booking_tickets(
    request: Request,
    claims: TokenClaims,
    signer: Signer,
    booking_id: uuid.UUID,
) -> TicketList:
    """For the booking's owner or staff (404 for anyone else); 409 `tickets_not_issued` while
    the booking is unpaid, cancelled or expired."""
    # The owner's list, read with the account check in one statement where the backend can
    # (no session); everyone else, and the other backends, the general way.
    database = get_database(request)
    tickets: Sequence[Ticket | service.ListedTicket] | None = await service.owner_tickets(
        database, booking_id, claims
    )
    if tickets is None:
        async with database.session(write=False) as session:
            user = await signed_in_user(session, claims)
            may_read_any = await has_permission(
                request, session, user, Permission.BOOKINGS_READ_ANY
            )
            tickets = await service.booking_tickets(
                session, booking_id, user, may_read_any=may_read_any
            )
    api = f"{str(request.base_url).rstrip('/')}{router.prefix}"
    items = []
    for ticket in tickets:
        token = service.ticket_token(signer, ticket)
        items.append(
            TicketOut.model_validate(
                {
                    "id": ticket.id,
                    "seat_label": ticket.seat_label,
                    "qr_token": token,
                    "qr_png_url": api + QR_PNG_PATH.format(qr_token=token),
                    "qr_svg_url": api + QR_SVG_PATH.format(qr_token=token),
                    "status": ticket.status,
                }
            )
        )
    return TicketList(tickets=items)


# The token is the credential: the images need no sign-in and no database read. Rendering is
# CPU work, so these are plain functions (run in the thread pool).


def _check(signer: TicketSigner, token: str) -> str:
    if signer.verify(token) is None:
        raise TicketTokenNotFound("No ticket has this token.")
    return token


@router.get(
    QR_PNG_PATH,
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **_QR_RESPONSES},
    summary="A ticket's QR code as PNG",
)
def ticket_qr_png(qr_token: str, signer: Signer) -> Response:
    return Response(
        qr_png(_check(signer, qr_token)),
        media_type="image/png",
        headers={"Cache-Control": QR_CACHE_CONTROL},
    )


@router.get(
    QR_SVG_PATH,
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **_QR_RESPONSES},
    summary="A ticket's QR code as SVG",
)
def ticket_qr_svg(qr_token: str, signer: Signer) -> Response:
    return Response(
        qr_svg(_check(signer, qr_token)),
        media_type="image/svg+xml",
        headers={"Cache-Control": QR_CACHE_CONTROL},
    )
