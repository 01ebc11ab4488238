"""Showtimes and seat maps (public), showtime administration and seat blocking (staff)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from boxoffice.accounts.deps import OptionalClaims, require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.core.db import SessionDep, get_database
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page, reject_empty_patch
from boxoffice.scheduling import service
from boxoffice.scheduling.schemas import (
    BlockSeats,
    QueryDatetime,
    SeatMapOut,
    SeatStateChange,
    ShowtimeCreate,
    ShowtimeList,
    ShowtimeOut,
    ShowtimePage,
    ShowtimeStatus,
    ShowtimeUpdate,
    UnblockSeats,
)
from boxoffice.scheduling.seat_map import SeatMapRenderer

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["showtimes"])
admin_router = APIRouter(prefix="/api/admin", route_class=RetryingRoute, tags=["admin: showtimes"])

ManageSchedule = Depends(require(Permission.SCHEDULE_MANAGE))
Scheduler = Annotated[User, ManageSchedule]
BlockSeatsPermission = Depends(require(Permission.SEATS_BLOCK))


@router.get("/movies/{movie_id}/showtimes", response_model=ShowtimeList)
async def movie_showtimes(
    session: SessionDep,
    movie_id: uuid.UUID,
    date: Annotated[
        dt.date | None,
        Query(description="YYYY-MM-DD, a calendar day in each theater's own timezone"),
    ] = None,
    theater_id: Annotated[uuid.UUID | None, Query(alias="theaterId")] = None,
    city_id: Annotated[uuid.UUID | None, Query(alias="cityId")] = None,
) -> ShowtimeList:
    """Scheduled showtimes of a movie by start time; without `date`, those not yet started."""
    infos = await service.list_movie_showtimes(
        session, movie_id, day=date, theater_id=theater_id, city_id=city_id
    )
    return ShowtimeList(showtimes=[ShowtimeOut.of(info) for info in infos])


@router.get("/showtimes/{showtime_id}", response_model=ShowtimeOut)
async def get_showtime(session: SessionDep, showtime_id: uuid.UUID) -> ShowtimeOut:
    return ShowtimeOut.of(await service.showtime_info(session, showtime_id))


@router.get("/showtimes/{showtime_id}/seats", response_model=SeatMapOut)
async def get_seat_map(
    request: Request,
    showtime_id: uuid.UUID,
    claims: OptionalClaims,
) -> Response:
    """The seat map: every sellable seat by row with its state and price (pricing rules
    applied); with a token, the caller's own held seats say `heldByYou`."""
    # The hottest read of an onsale, signed in or not: no session (the renderer checks a
    # caller's account with the states, in one statement on the hot pool on PostgreSQL).
    renderer: SeatMapRenderer = request.app.state.seat_maps
    body = await renderer.render(
        get_database(request),
        showtime_id,
        claims,
        price_cache_seconds=request.app.state.settings.price_cache_seconds,
    )
    return Response(body, media_type="application/json")


# ---------------------------------------------------------------------------------------------
# Admin


@admin_router.post(
    "/showtimes",
    status_code=status.HTTP_201_CREATED,
    response_model=ShowtimeOut,
)
async def create_showtime(
    request: Request, session: SessionDep, body: ShowtimeCreate, staff: Scheduler
) -> ShowtimeOut:
    """Schedule a showtime; `endTime` = start + duration + ads + cleaning of the theater."""
    showtime = await service.create_showtime(
        session,
        **body.model_dump(by_alias=False),
        require_contract=request.app.state.settings.require_film_contracts,
        actor_id=staff.id,
    )
    return ShowtimeOut.of(await service.showtime_info(session, showtime.id))


@admin_router.get("/showtimes", response_model=ShowtimePage, dependencies=[ManageSchedule])
async def list_showtimes(
    session: SessionDep,
    page: Page,
    theater_id: Annotated[uuid.UUID | None, Query(alias="theaterId")] = None,
    screen_id: Annotated[uuid.UUID | None, Query(alias="screenId")] = None,
    movie_id: Annotated[uuid.UUID | None, Query(alias="movieId")] = None,
    status_: Annotated[ShowtimeStatus | None, Query(alias="status")] = None,
    start_from: Annotated[
        QueryDatetime | None, Query(alias="from", description="start time at or after")
    ] = None,
    start_to: Annotated[
        QueryDatetime | None, Query(alias="to", description="start time before")
    ] = None,
) -> ShowtimePage:
    infos, total = await service.list_showtimes(
        session,
        offset=page.offset,
        limit=page.limit,
        theater_id=theater_id,
        screen_id=screen_id,
        movie_id=movie_id,
        status=status_,
        start_from=start_from,
        start_to=start_to,
    )
    return ShowtimePage(
        showtimes=[ShowtimeOut.of(info) for info in infos], pagination=page.pagination(total)
    )


@admin_router.get(
    "/showtimes/{showtime_id}", response_model=ShowtimeOut, dependencies=[ManageSchedule]
)
async def admin_get_showtime(session: SessionDep, showtime_id: uuid.UUID) -> ShowtimeOut:
    return ShowtimeOut.of(await service.showtime_info(session, showtime_id))


@admin_router.patch("/showtimes/{showtime_id}", response_model=ShowtimeOut)
async def update_showtime(
    request: Request,
    session: SessionDep,
    showtime_id: uuid.UUID,
    body: ShowtimeUpdate,
    staff: Scheduler,
) -> ShowtimeOut:
    """Change price, format, languages, `status` or move `startTime` (same screen only)."""
    await service.update_showtime(
        session,
        showtime_id,
        reject_empty_patch(body.changes()),
        require_contract=request.app.state.settings.require_film_contracts,
        actor_id=staff.id,
    )
    return ShowtimeOut.of(await service.showtime_info(session, showtime_id))


@admin_router.delete(
    "/showtimes/{showtime_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def delete_showtime(session: SessionDep, showtime_id: uuid.UUID, staff: Scheduler) -> None:
    """Delete a showtime that has no held or sold seats."""
    await service.delete_showtime(session, showtime_id, actor_id=staff.id)


@admin_router.post(
    "/showtimes/{showtime_id}/block-seats",
    response_model=SeatStateChange,
    dependencies=[BlockSeatsPermission],
)
async def block_seats(
    session: SessionDep, showtime_id: uuid.UUID, body: BlockSeats
) -> SeatStateChange:
    """Take seats out of sale (all or nothing); held or sold seats are refused."""
    result = await service.block_seats(session, showtime_id, body.seat_numbers, body.reason)
    return SeatStateChange.model_validate(result)


@admin_router.post(
    "/showtimes/{showtime_id}/unblock-seats",
    response_model=SeatStateChange,
    dependencies=[BlockSeatsPermission],
)
async def unblock_seats(
    session: SessionDep, showtime_id: uuid.UUID, body: UnblockSeats
) -> SeatStateChange:
    """Put blocked seats back on sale (all or nothing)."""
    result = await service.unblock_seats(session, showtime_id, body.seat_numbers)
    return SeatStateChange.model_validate(result)
