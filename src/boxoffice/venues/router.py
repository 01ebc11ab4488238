"""Venue routes: public reads of cities, theaters and screens; admin CRUD."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from boxoffice.accounts.deps import require
from boxoffice.accounts.permissions import Permission
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page
from boxoffice.venues import service
from boxoffice.venues.models import City, Screen, Seat
from boxoffice.venues.schemas import (
    CityCreate,
    CityList,
    CityOut,
    CityUpdate,
    RowOut,
    ScreenCreate,
    ScreenDetail,
    ScreenList,
    ScreenSummary,
    ScreenUpdate,
    SeatOut,
    TheaterCreate,
    TheaterDetail,
    TheaterList,
    TheaterOut,
    TheaterUpdate,
)

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["venues"])
admin_router = APIRouter(prefix="/api/admin", route_class=RetryingRoute, tags=["admin: venues"])

_manage = [Depends(require(Permission.VENUES_MANAGE))]
CityFilter = Annotated[uuid.UUID | None, Query(alias="cityId", description="Only this city's")]
TheaterFilter = Annotated[
    uuid.UUID | None, Query(alias="theaterId", description="Only this theater's")
]


def _city(city: City) -> CityOut:
    return CityOut.model_validate(city)


def _theater(view: service.TheaterView) -> TheaterOut:
    t = view.theater
    return TheaterOut(
        id=t.id,
        name=t.name,
        location=t.location,
        city_id=t.city_id,
        timezone=t.timezone,
        currency=t.currency,
        ads_minutes=t.ads_minutes,
        cleaning_minutes=t.cleaning_minutes,
        vat_rate=t.vat_rate,
        total_screens=view.total_screens,
    )


def _theater_detail(view: service.TheaterView) -> TheaterDetail:
    return TheaterDetail(
        **_theater(view).model_dump(),
        screens=[ScreenSummary.model_validate(s) for s in view.screens],
    )


def _rows(seats: Sequence[Seat]) -> list[RowOut]:
    rows: list[RowOut] = []
    for seat in seats:
        if not rows or rows[-1].row != seat.row_label:
            rows.append(RowOut(row=seat.row_label, seats=[]))
        rows[-1].seats.append(
            SeatOut(
                seat_id=seat.id,
                label=seat.label,
                number=seat.number,
                seat_class=seat.seat_class,
                position=seat.position,
                active=seat.active,
            )
        )
    return rows


def _screen_detail(view: service.ScreenView) -> ScreenDetail:
    s = view.screen
    return ScreenDetail(
        id=s.id,
        theater_id=s.theater_id,
        screen_number=s.screen_number,
        name=s.name,
        hall_type=s.hall_type,
        capacity=s.capacity,
        layout=s.layout,
        rows=_rows(view.seats),
    )


def _screens(screens: Sequence[Screen]) -> list[ScreenSummary]:
    return [ScreenSummary.model_validate(s) for s in screens]


# ---------------------------------------------------------------------------------------------
# Public reads


@router.get("/cities", summary="Cities, by name")
async def list_cities(session: SessionDep, page: Page) -> CityList:
    cities, total = await service.list_cities(session, offset=page.offset, limit=page.limit)
    return CityList(cities=[_city(c) for c in cities], pagination=page.pagination(total))


@router.get("/cities/{city_id}", summary="One city")
async def get_city(session: SessionDep, city_id: uuid.UUID) -> CityOut:
    return _city(await service.get_city(session, city_id))


@router.get("/theaters", summary="Theaters, by name, with their number of screens")
async def list_theaters(session: SessionDep, page: Page, city_id: CityFilter = None) -> TheaterList:
    views, total = await service.list_theaters(
        session, city_id=city_id, offset=page.offset, limit=page.limit
    )
    return TheaterList(theaters=[_theater(v) for v in views], pagination=page.pagination(total))


@router.get("/theaters/{theater_id}", summary="One theater with its screens")
async def get_theater(session: SessionDep, theater_id: uuid.UUID) -> TheaterDetail:
    return _theater_detail(await service.theater_details(session, theater_id))


@router.get("/screens/{screen_id}", summary="One screen with its seats, row by row")
async def get_screen(session: SessionDep, screen_id: uuid.UUID) -> ScreenDetail:
    return _screen_detail(await service.screen_details(session, screen_id))


# ---------------------------------------------------------------------------------------------
# Admin: cities


@admin_router.post("/cities", status_code=201, dependencies=_manage, summary="Add a city")
async def create_city(session: SessionDep, body: CityCreate) -> CityOut:
    return _city(await service.create_city(session, name=body.name, timezone=body.timezone))


@admin_router.get("/cities", dependencies=_manage, summary="Cities, by name")
async def admin_list_cities(session: SessionDep, page: Page) -> CityList:
    return await list_cities(session, page)


@admin_router.get("/cities/{city_id}", dependencies=_manage, summary="One city")
async def admin_get_city(session: SessionDep, city_id: uuid.UUID) -> CityOut:
    return _city(await service.get_city(session, city_id))


@admin_router.patch("/cities/{city_id}", dependencies=_manage, summary="Change a city")
async def update_city(session: SessionDep, city_id: uuid.UUID, body: CityUpdate) -> CityOut:
    return _city(await service.update_city(session, city_id, body))


@admin_router.delete(
    "/cities/{city_id}",
    status_code=204,
    dependencies=_manage,
    summary="Delete a city without theaters (409 city_in_use otherwise)",
)
async def delete_city(session: SessionDep, city_id: uuid.UUID) -> Response:
    await service.delete_city(session, city_id)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------
# Admin: theaters


@admin_router.post("/theaters", status_code=201, dependencies=_manage, summary="Add a theater")
async def create_theater(session: SessionDep, body: TheaterCreate) -> TheaterDetail:
    theater = await service.create_theater(
        session,
        city_id=body.city_id,
        name=body.name,
        location=body.location,
        timezone=body.timezone,
        currency=body.currency,
        ads_minutes=body.ads_minutes,
        cleaning_minutes=body.cleaning_minutes,
        vat_rate=body.vat_rate,
    )
    return _theater_detail(service.TheaterView(theater, 0))


@admin_router.get("/theaters", dependencies=_manage, summary="Theaters, by name")
async def admin_list_theaters(
    session: SessionDep, page: Page, city_id: CityFilter = None
) -> TheaterList:
    return await list_theaters(session, page, city_id)


@admin_router.get("/theaters/{theater_id}", dependencies=_manage, summary="One theater")
async def admin_get_theater(session: SessionDep, theater_id: uuid.UUID) -> TheaterDetail:
    return _theater_detail(await service.theater_details(session, theater_id))


@admin_router.patch("/theaters/{theater_id}", dependencies=_manage, summary="Change a theater")
async def update_theater(
    session: SessionDep, theater_id: uuid.UUID, body: TheaterUpdate
) -> TheaterDetail:
    return _theater_detail(await service.update_theater(session, theater_id, body))


@admin_router.delete(
    "/theaters/{theater_id}",
    status_code=204,
    dependencies=_manage,
    summary="Delete a theater without screens (409 theater_in_use otherwise)",
)
async def delete_theater(session: SessionDep, theater_id: uuid.UUID) -> Response:
    await service.delete_theater(session, theater_id)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------
# Admin: screens


@admin_router.post(
    "/screens",
    status_code=201,
    dependencies=_manage,
    summary="Add a screen; its seats come from the layout (422 invalid_layout)",
)
async def create_screen(session: SessionDep, body: ScreenCreate) -> ScreenDetail:
    screen = await service.create_screen(
        session,
        theater_id=body.theater_id,
        screen_number=body.screen_number,
        name=body.name,
        hall_type=body.hall_type,
        layout=body.layout,
    )
    return _screen_detail(await service.screen_details(session, screen.id))


@admin_router.get("/screens", dependencies=_manage, summary="Screens, by theater and number")
async def admin_list_screens(
    session: SessionDep, page: Page, theater_id: TheaterFilter = None
) -> ScreenList:
    screens, total = await service.list_screens(
        session, theater_id=theater_id, offset=page.offset, limit=page.limit
    )
    return ScreenList(screens=_screens(screens), pagination=page.pagination(total))


@admin_router.get("/screens/{screen_id}", dependencies=_manage, summary="One screen")
async def admin_get_screen(session: SessionDep, screen_id: uuid.UUID) -> ScreenDetail:
    return _screen_detail(await service.screen_details(session, screen_id))


@admin_router.patch(
    "/screens/{screen_id}",
    dependencies=_manage,
    summary="Change a screen; a new layout is refused (409 layout_locked) once seats are sold",
)
async def update_screen(
    session: SessionDep, screen_id: uuid.UUID, body: ScreenUpdate
) -> ScreenDetail:
    return _screen_detail(await service.update_screen(session, screen_id, body))


@admin_router.delete(
    "/screens/{screen_id}",
    status_code=204,
    dependencies=_manage,
    summary="Delete a screen without showtimes (409 screen_in_use otherwise)",
)
async def delete_screen(session: SessionDep, screen_id: uuid.UUID) -> Response:
    await service.delete_screen(session, screen_id)
    return Response(status_code=204)
