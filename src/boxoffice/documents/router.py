"""A booking's invoice and tickets as PDF files."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import RedirectResponse

from boxoffice.accounts.deps import CurrentUser, has_permission
from boxoffice.accounts.permissions import Permission
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute
from boxoffice.documents import service
from boxoffice.tickets.signing import ticket_signer

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["documents"])

_PDF_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/pdf": {}}, "description": "The PDF file"},
    307: {"description": "Redirect to a time-limited download URL (S3 storage)"},
    404: {"description": "No such booking (or not the caller's)"},
}


def _answer(document: service.DocumentFile) -> Response:
    if document.url is not None:
        return RedirectResponse(document.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    assert document.data is not None
    return Response(
        document.data,
        media_type=service.PDF,
        headers={
            "Content-Disposition": f'attachment; filename="{document.filename}"',
            "Cache-Control": "private, no-cache",
        },
    )


@router.get(
    "/bookings/{booking_id}/invoice.pdf",
    response_class=Response,
    responses={**_PDF_RESPONSES, 409: {"description": "invoice_not_available"}},
    summary="The invoice of a confirmed booking",
)
async def invoice_pdf(
    booking_id: uuid.UUID, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    """For the booking's owner or staff (404 for anyone else); 409 `invoice_not_available`
    for a booking that was never confirmed. Lists refunds made so far."""
    may_read_any = await has_permission(request, session, user, Permission.BOOKINGS_READ_ANY)
    document = await service.invoice_pdf(
        session,
        request.app.state.storage,
        request.app.state.settings,
        booking_id,
        user,
        may_read_any=may_read_any,
    )
    return _answer(document)


@router.get(
    "/bookings/{booking_id}/tickets.pdf",
    response_class=Response,
    responses={**_PDF_RESPONSES, 409: {"description": "tickets_not_issued"}},
    summary="The tickets of a paid booking, a page each",
)
async def tickets_pdf(
    booking_id: uuid.UUID, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    """For the booking's owner or staff (404 for anyone else); 409 `tickets_not_issued` while
    the booking is unpaid, or when all its tickets were refunded. Each page carries the
    ticket's QR code (the same token as `GET /api/bookings/{id}/tickets`)."""
    may_read_any = await has_permission(request, session, user, Permission.BOOKINGS_READ_ANY)
    document = await service.tickets_pdf(
        session,
        request.app.state.storage,
        request.app.state.settings,
        ticket_signer(request.app.state.settings, request.app.state.signing_key),
        booking_id,
        user,
        may_read_any=may_read_any,
    )
    return _answer(document)
