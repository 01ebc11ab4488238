"""Review routes: a movie's reviews, one's own review, helpful votes and staff moderation."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from boxoffice.accounts.deps import CurrentUser, OptionalUser, has_permission, require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.core.db import SessionDep
from boxoffice.core.errors import Forbidden
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page
from boxoffice.reviews import service
from boxoffice.reviews.schemas import (
    HelpfulOut,
    ModerationIn,
    ReviewCreate,
    ReviewList,
    ReviewOut,
    ReviewSort,
    ReviewUpdate,
)

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["reviews"])
admin_router = APIRouter(prefix="/api/admin", route_class=RetryingRoute, tags=["admin: reviews"])

Moderator = Annotated[User, Depends(require(Permission.REVIEWS_MODERATE))]


@router.get(
    "/movies/{movie_id}/reviews",
    summary="A movie's reviews, newest or most helpful first (hidden ones only for staff)",
)
async def list_reviews(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    movie_id: uuid.UUID,
    page: Page,
    sort: ReviewSort = ReviewSort.NEWEST,
    include_hidden: Annotated[
        bool,
        Query(alias="includeHidden", description="Also hidden reviews (reviews.moderate)"),
    ] = False,
) -> ReviewList:
    if include_hidden and not await has_permission(
        request, session, user, Permission.REVIEWS_MODERATE
    ):
        raise Forbidden("Only staff who moderate reviews may see hidden ones.")
    rows, total = await service.list_reviews(
        session,
        movie_id,
        sort=sort,
        include_hidden=include_hidden,
        offset=page.offset,
        limit=page.limit,
    )
    viewer = user.id if user else None
    return ReviewList(
        reviews=[ReviewOut.of(review, name, viewer) for review, name in rows],
        pagination=page.pagination(total),
    )


@router.post(
    "/movies/{movie_id}/reviews",
    status_code=201,
    summary="Review a movie you saw (a checked-in ticket), once",
    responses={
        403: {"description": "review_not_allowed: no checked-in ticket for this movie"},
        409: {"description": "already_reviewed: edit your review instead"},
    },
)
async def post_review(
    session: SessionDep, user: CurrentUser, movie_id: uuid.UUID, body: ReviewCreate
) -> ReviewOut:
    review = await service.post_review(session, movie_id, user, body)
    return ReviewOut.of(review, user.full_name, user.id)


@router.get("/movies/{movie_id}/reviews/mine", summary="Your review of a movie (even if hidden)")
async def my_review(session: SessionDep, user: CurrentUser, movie_id: uuid.UUID) -> ReviewOut:
    review = await service.my_review(session, movie_id, user)
    return ReviewOut.of(review, user.full_name, user.id)


@router.patch(
    "/movies/{movie_id}/reviews/{review_id}",
    summary="Edit your review (rating and/or text); 404 for anyone else's",
)
async def edit_review(
    session: SessionDep,
    user: CurrentUser,
    movie_id: uuid.UUID,
    review_id: uuid.UUID,
    body: ReviewUpdate,
) -> ReviewOut:
    review = await service.edit_review(session, movie_id, review_id, user, body)
    return ReviewOut.of(review, user.full_name, user.id)


@router.post(
    "/movies/{movie_id}/reviews/{review_id}/helpful",
    summary="Mark a review helpful: one vote per customer, not on your own; idempotent",
)
async def vote_helpful(
    session: SessionDep, user: CurrentUser, movie_id: uuid.UUID, review_id: uuid.UUID
) -> HelpfulOut:
    review = await service.vote_helpful(session, movie_id, review_id, user, helpful=True)
    return HelpfulOut(review_id=review.id, helpful_count=review.helpful_count, voted=True)


@router.delete(
    "/movies/{movie_id}/reviews/{review_id}/helpful",
    summary="Take back your helpful vote; idempotent",
)
async def unvote_helpful(
    session: SessionDep, user: CurrentUser, movie_id: uuid.UUID, review_id: uuid.UUID
) -> HelpfulOut:
    review = await service.vote_helpful(session, movie_id, review_id, user, helpful=False)
    return HelpfulOut(review_id=review.id, helpful_count=review.helpful_count, voted=False)


@admin_router.get("/reviews", summary="Reviews of every movie for moderation, newest first")
async def moderation_list(
    session: SessionDep,
    staff: Moderator,
    page: Page,
    hidden: bool | None = None,
    movie_id: Annotated[uuid.UUID | None, Query(alias="movieId")] = None,
) -> ReviewList:
    rows, total = await service.list_for_moderation(
        session, hidden=hidden, movie_id=movie_id, offset=page.offset, limit=page.limit
    )
    return ReviewList(
        reviews=[ReviewOut.of(review, name, staff.id) for review, name in rows],
        pagination=page.pagination(total),
    )


@admin_router.patch(
    "/reviews/{review_id}",
    summary="Hide or show a review (reviews.moderate: operators, admins); audited",
)
async def moderate(
    session: SessionDep, staff: Moderator, review_id: uuid.UUID, body: ModerationIn
) -> ReviewOut:
    review = await service.moderate(session, review_id, staff, body)
    return ReviewOut.of(review, await service.author_of(session, review), staff.id)
