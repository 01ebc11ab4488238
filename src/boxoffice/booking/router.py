"""`/api/bookings/*` and `/api/me/bookings`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from boxoffice.accounts.deps import CurrentUser, TokenClaims, has_permission
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.accounts.service import check_may_book, signed_in_user
from boxoffice.booking import holds, service
from boxoffice.booking.exceptions import BookingNotCancellable, BookingNotFound
from boxoffice.booking.models import BookingStatus, Hold
from boxoffice.booking.refunds import refund_booking
from boxoffice.booking.schemas import (
    BookingCreatedOut,
    BookingDetailOut,
    BookingIn,
    BookingOut,
    BookingPage,
    ExtendOut,
    HoldOut,
    LockBestIn,
    LockSeatsIn,
    LockTokenIn,
    MovieBrief,
    ScreenBrief,
    ShowtimeBrief,
    TheaterBrief,
)
from boxoffice.core import idempotency
from boxoffice.core.db import SessionDep, get_database
from boxoffice.core.ratelimit import limited
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page
from boxoffice.payments.service import PaymentContext

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["booking"])
# Holding seats over and over keeps them from other customers: per customer and per address.
# The till (staff) holds for many people and is exempt.
_holds_rate_limit = Depends(limited("holds", staff_exempt=True))


async def _customer_who_may_book(request: Request, user: CurrentUser) -> User:
    check_may_book(user, request.app.state.settings)
    return user


Booker = Annotated[User, Depends(_customer_who_may_book)]


def _hold_out(hold: Hold | holds.GrantedHold) -> HoldOut:
    return HoldOut(
        lock_token=hold.id,
        showtime_id=hold.showtime_id,
        expires_at=hold.expires_at,
        locked_seats=list(hold.seat_labels),
        extensions_left=holds.extensions_left(hold),
    )


def booking_out(view: service.BookingView) -> BookingOut:
    return BookingOut.of(view.booking, view.lines, view.snacks, view.status)


@router.post(
    "/bookings/lock-seats",
    status_code=status.HTTP_201_CREATED,
    response_model=HoldOut,
    summary="Hold seats, all or nothing",
    dependencies=[_holds_rate_limit],
    responses={409: {"description": "seats_unavailable, showtime_closed or hold_limit"}},
)
async def lock_seats(body: LockSeatsIn, request: Request, claims: TokenClaims) -> HoldOut:
    # The hottest write of an onsale: the service checks the account itself, in the same
    # statement as the hold on PostgreSQL (see booking.holds_postgres), and opens its own
    # unit of work (no session on PostgreSQL).
    hold = await holds.lock_seats(
        get_database(request),
        request.app.state.settings,
        claims,
        body.showtime_id,
        body.seat_numbers,
    )
    return _hold_out(hold)


@router.post(
    "/bookings/lock-best",
    status_code=status.HTTP_201_CREATED,
    response_model=HoldOut,
    summary="Hold the best available adjacent seats",
    dependencies=[_holds_rate_limit],
)
async def lock_best(
    body: LockBestIn, request: Request, user: Booker, session: SessionDep
) -> HoldOut:
    hold = await holds.lock_best(
        session,
        request.app.state.settings,
        user,
        body.showtime_id,
        body.quantity,
        body.seat_class,
    )
    return _hold_out(hold)


@router.post("/bookings/extend-lock", response_model=ExtendOut)
async def extend_lock(
    body: LockTokenIn, request: Request, user: CurrentUser, session: SessionDep
) -> ExtendOut:
    hold = await holds.extend(session, request.app.state.settings, user.id, body.lock_token)
    return ExtendOut(
        lock_token=hold.id,
        expires_at=hold.expires_at,
        extensions_left=holds.extensions_left(hold),
    )


@router.delete("/bookings/lock-seats/{lock_token}", status_code=status.HTTP_204_NO_CONTENT)
async def release_lock(lock_token: uuid.UUID, request: Request, claims: TokenClaims) -> Response:
    await holds.release(get_database(request), claims, lock_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/bookings",
    status_code=status.HTTP_201_CREATED,
    response_model=BookingCreatedOut,
    summary="Book the seats of the caller's live hold",
    responses={410: {"description": "hold_expired"}, 409: {"description": "hold_mismatch"}},
)
async def create_booking(
    body: BookingIn,
    request: Request,
    claims: TokenClaims,
    session: SessionDep,
    idempotency_key: idempotency.IdempotencyKey = None,
) -> Any:
    settings = request.app.state.settings
    if idempotency_key is not None:  # a kept answer goes to a current account only
        check_may_book(await signed_in_user(session, claims), settings)

    async def run() -> BookingCreatedOut:
        # The service judges the caller's account (read with the hold).
        view, payment = await service.create_booking(
            session, settings, PaymentContext.of(request.app), claims, body
        )
        return BookingCreatedOut(
            booking=booking_out(view),
            # None when discounts paid all of it: the booking is confirmed already.
            payment_client_secret=payment.client_secret if payment else None,
            payment_intent_id=payment.provider_ref if payment else None,
        )

    return await idempotency.run_once(
        session,
        user_id=claims.user_id,
        key=idempotency_key,
        scope="POST /api/bookings",
        body=body,
        run=run,
        status_code=status.HTTP_201_CREATED,
    )


@router.get("/bookings/{booking_id}", response_model=BookingDetailOut)
async def get_booking(
    booking_id: uuid.UUID, request: Request, user: CurrentUser, session: SessionDep
) -> BookingDetailOut:
    may_read_any = await has_permission(request, session, user, Permission.BOOKINGS_READ_ANY)
    view = await service.get_booking(session, booking_id, user=user, may_read_any=may_read_any)
    ctx = await service.booking_context(session, view.booking.showtime_id)
    return BookingDetailOut(
        booking=booking_out(view),
        showtime=ShowtimeBrief(
            id=ctx.showtime.id,
            start_time=ctx.showtime.start_time,
            end_time=ctx.showtime.end_time,
            hall_type=ctx.screen.hall_type,
            format=ctx.showtime.format,
            language=ctx.showtime.language,
            subtitles=ctx.showtime.subtitles,
        ),
        movie=MovieBrief(
            id=ctx.movie.id,
            title=ctx.movie.title,
            duration=ctx.movie.duration_minutes,
            rating=ctx.movie.rating,
            poster_url=ctx.movie.poster_url,
        ),
        theater=TheaterBrief.model_validate(ctx.theater),
        screen=ScreenBrief.model_validate(ctx.screen),
    )


@router.get("/me/bookings", response_model=BookingPage)
async def my_bookings(user: CurrentUser, session: SessionDep, page: Page) -> BookingPage:
    views, total = await service.list_user_bookings(
        session, user.id, offset=page.offset, limit=page.limit
    )
    return BookingPage(bookings=[booking_out(v) for v in views], pagination=page.pagination(total))


@router.post("/bookings/{booking_id}/cancel", response_model=BookingOut)
async def cancel_booking(
    booking_id: uuid.UUID, request: Request, user: CurrentUser, session: SessionDep
) -> BookingOut:
    """A pending booking is cancelled and its seats freed; a confirmed one is refunded per the
    refund policy (the whole booking)."""
    is_staff = await has_permission(request, session, user, Permission.REFUNDS_ISSUE)
    booking = await service.lock_booking(session, booking_id)
    if booking.user_id != user.id and not is_staff:
        raise BookingNotFound("No such booking.")
    ctx = PaymentContext.of(request.app)
    if booking.status == BookingStatus.PENDING:
        await service.cancel_pending(session, ctx, booking)
    elif booking.status in (BookingStatus.EXPIRED, BookingStatus.CANCELLED):
        raise BookingNotCancellable(f"The booking is already {booking.status}.")
    else:
        await refund_booking(
            session,
            request.app.state.settings,
            ctx,
            user,
            is_staff=is_staff,
            booking_id=booking.id,
            reason="cancelled by the customer" if booking.user_id == user.id else "cancelled",
            cancel_if_free=True,
        )
    return booking_out(await service.view_of(session, booking))
