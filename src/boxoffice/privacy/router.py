"""`GET /api/me/export` (the caller's data, GDPR access) and `DELETE /api/me` (erasure)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse

from boxoffice.accounts.deps import CurrentUser
from boxoffice.core.db import SessionDep
from boxoffice.core.ratelimit import rate_limit
from boxoffice.core.routing import RetryingRoute
from boxoffice.payments.service import PaymentContext
from boxoffice.privacy import service
from boxoffice.privacy.export import build_export
from boxoffice.privacy.schemas import PersonalDataExport

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["privacy"])

# An export reads every table about the user: a few per hour is plenty for a person.
_export_limit = rate_limit("me-export", "10/hour", per_ip="60/hour")


@router.get(
    "/me/export",
    response_model=PersonalDataExport,
    summary="Everything stored about you, as a JSON download (GDPR access)",
    dependencies=[Depends(_export_limit)],
    responses={429: {"description": "rate_limited"}},
)
async def export_me(user: CurrentUser, session: SessionDep) -> Response:
    export = await build_export(session, user)
    return JSONResponse(
        export.model_dump(mode="json", by_alias=True),
        headers={
            "Content-Disposition": (f'attachment; filename="boxoffice-export-{user.id}.json"'),
            "Cache-Control": "no-store",
        },
    )


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Erase your personal data (bookings and payments stay, anonymised, for accounting)",
    responses={409: {"description": "last_admin"}},
)
async def erase_me(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    await service.erase_user(session, PaymentContext.of(request.app), user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
