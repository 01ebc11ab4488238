"""Movie routes: public catalog reads and admin CRUD."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from boxoffice.accounts.deps import require
from boxoffice.accounts.permissions import Permission
from boxoffice.catalog import service
from boxoffice.catalog.schemas import (
    MovieCreate,
    MovieList,
    MovieOut,
    MovieStatus,
    MovieUpdate,
    OneLine,
)
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["catalog"])
admin_router = APIRouter(prefix="/api/admin", route_class=RetryingRoute, tags=["admin: catalog"])

_manage = [Depends(require(Permission.CATALOG_MANAGE))]
Genre = Annotated[OneLine | None, Query(max_length=40, description="One genre, case-insensitive")]
Search = Annotated[
    OneLine | None,
    Query(max_length=100, description="Part of the title, director or a cast member's name"),
]


@router.get("/movies", summary="List and search movies")
async def list_movies(
    session: SessionDep,
    page: Page,
    status: MovieStatus | None = None,
    genre: Genre = None,
    search: Search = None,
) -> MovieList:
    movies, total = await service.list_movies(
        session,
        status=status,
        genre=genre,
        search=search,
        offset=page.offset,
        limit=page.limit,
    )
    return MovieList(movies=[MovieOut.of(m) for m in movies], pagination=page.pagination(total))


@router.get("/movies/{movie_id}", summary="One movie with its average rating")
async def get_movie(session: SessionDep, movie_id: uuid.UUID) -> MovieOut:
    return MovieOut.of(await service.get_movie(session, movie_id))


@admin_router.post("/movies", status_code=201, dependencies=_manage, summary="Add a movie")
async def create_movie(session: SessionDep, body: MovieCreate) -> MovieOut:
    return MovieOut.of(await service.create_movie(session, body))


@admin_router.get("/movies/{movie_id}", dependencies=_manage, summary="One movie")
async def admin_get_movie(session: SessionDep, movie_id: uuid.UUID) -> MovieOut:
    return MovieOut.of(await service.get_movie(session, movie_id))


@admin_router.patch("/movies/{movie_id}", dependencies=_manage, summary="Change a movie")
async def update_movie(session: SessionDep, movie_id: uuid.UUID, body: MovieUpdate) -> MovieOut:
    return MovieOut.of(await service.update_movie(session, movie_id, body))


@admin_router.delete(
    "/movies/{movie_id}",
    status_code=204,
    dependencies=_manage,
    summary="Delete a movie that has no showtimes (409 movie_in_use otherwise)",
)
async def delete_movie(session: SessionDep, movie_id: uuid.UUID) -> None:
    await service.delete_movie(session, movie_id)
