"""Payment intents, the local provider's card form, provider webhooks and refunds.

`Idempotency-Key` applies to the calls made by a signed-in user (create-intent, local/confirm,
refund). Webhooks are deduplicated by the provider's event id instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from boxoffice.accounts.deps import CurrentUser, TokenClaims, has_permission
from boxoffice.accounts.permissions import Permission
from boxoffice.accounts.service import signed_in_user
from boxoffice.booking.refunds import refund_booking
from boxoffice.core import idempotency
from boxoffice.core.db import SessionDep
from boxoffice.core.routing import RetryingRoute
from boxoffice.payments import service
from boxoffice.payments.providers.local import LOCAL, SIGNATURE_HEADER
from boxoffice.payments.schemas import (
    ConfirmationOut,
    CreateIntentIn,
    IntentOut,
    LocalConfirmIn,
    PayPalCaptureIn,
    RefundIn,
    RefundOut,
    WebhookOut,
)
from boxoffice.payments.service import PaymentContext

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["payments"])


async def _payment_context(request: Request) -> PaymentContext:
    # async: FastAPI runs a plain function dependency in a worker thread.
    return PaymentContext.of(request.app)


PaymentCtx = Annotated[PaymentContext, Depends(_payment_context)]


@router.post(
    "/payments/create-intent",
    response_model=IntentOut,
    summary="The booking's payment intent (created once, then returned again)",
    responses={404: {"description": "not_found"}, 409: {"description": "booking_not_payable"}},
)
async def create_intent(
    body: CreateIntentIn,
    user: CurrentUser,
    session: SessionDep,
    ctx: PaymentCtx,
    idempotency_key: idempotency.IdempotencyKey = None,
) -> Any:
    async def run() -> IntentOut:
        payment = await service.create_intent_for_customer(
            session, ctx, user_id=user.id, booking_id=body.booking_id
        )
        return IntentOut(
            client_secret=payment.client_secret,
            approval_url=payment.approval_url,
            payment_intent_id=payment.provider_ref,
            provider=payment.provider,
            amount=payment.amount,
            currency=payment.currency,
            status=payment.status,
        )

    return await idempotency.run_once(
        session,
        user_id=user.id,
        key=idempotency_key,
        scope="POST /api/payments/create-intent",
        body=body,
        run=run,
    )


@router.post(
    "/payments/local/confirm",
    response_model=ConfirmationOut,
    summary="The local provider's card form: pay an intent with a test card",
    responses={
        402: {"description": "card_declined / invalid_card: the intent stays pending"},
        404: {"description": "not_found"},
        409: {"description": "illegal_payment_transition: the intent was cancelled"},
    },
)
async def confirm_local(
    body: LocalConfirmIn,
    claims: TokenClaims,
    session: SessionDep,
    ctx: PaymentCtx,
    idempotency_key: idempotency.IdempotencyKey = None,
) -> Any:
    if idempotency_key is not None:  # a kept answer goes to a current account only
        await signed_in_user(session, claims)

    async def run() -> ConfirmationOut:
        done = await service.confirm_payment(  # judges the caller's account, read along
            session,
            ctx,
            provider_name=LOCAL,
            caller=claims,
            provider_ref=body.payment_intent_id,
            card=body.card,
        )
        return ConfirmationOut(
            status=done.payment.status,
            payment_intent_id=done.payment.provider_ref,
            booking_id=done.payment.booking_id,
            booking_status=done.booking_status,
        )

    return await idempotency.run_once(
        session,
        user_id=claims.user_id,
        key=idempotency_key,
        scope="POST /api/payments/local/confirm",
        body=body,
        run=run,
    )


@router.post(
    "/payments/paypal/capture",
    response_model=ConfirmationOut,
    summary="The customer is back from PayPal: capture the approved order",
    responses={
        402: {"description": "card_declined (or PayPal's code): the order stays payable"},
        404: {"description": "not_found"},
        409: {"description": "payment_not_approved / illegal_payment_transition"},
    },
)
async def capture_paypal(
    body: PayPalCaptureIn,
    claims: TokenClaims,
    session: SessionDep,
    ctx: PaymentCtx,
    idempotency_key: idempotency.IdempotencyKey = None,
) -> Any:
    if idempotency_key is not None:  # a kept answer goes to a current account only
        await signed_in_user(session, claims)

    async def run() -> ConfirmationOut:
        done = await service.confirm_payment(  # judges the caller's account, read along
            session,
            ctx,
            provider_name="paypal",
            caller=claims,
            provider_ref=body.payment_intent_id,
        )
        return ConfirmationOut(
            status=done.payment.status,
            payment_intent_id=done.payment.provider_ref,
            booking_id=done.payment.booking_id,
            booking_status=done.booking_status,
        )

    return await idempotency.run_once(
        session,
        user_id=claims.user_id,
        key=idempotency_key,
        scope="POST /api/payments/paypal/capture",
        body=body,
        run=run,
    )


@router.post(
    "/payments/webhook/{provider}",
    response_model=WebhookOut,
    summary="Provider events, signature verified and applied once",
    description=(
        f"`local` events are signed with the `{SIGNATURE_HEADER}` header "
        "(`t=<unix time>,v1=<hex HMAC-SHA256>` over `<t>.<body>`, five minutes' tolerance)."
    ),
    responses={
        400: {"description": "invalid_signature / invalid_webhook_payload"},
        404: {"description": "unknown_provider"},
    },
)
async def webhook(
    request: Request,
    session: SessionDep,
    ctx: PaymentCtx,
    provider: Annotated[str, Path(max_length=32)],
) -> WebhookOut:
    duplicate = await service.handle_webhook(
        session, ctx, provider, request.headers, await request.body()
    )
    return WebhookOut(received=True, duplicate=duplicate)


@router.post(
    "/payments/refund",
    response_model=RefundOut,
    summary="Refund a booking, whole or by seat (staff any time, the owner until the cut-off)",
    responses={
        403: {"description": "only staff may refund an amount"},
        404: {"description": "not_found"},
        409: {"description": "refund_not_allowed / refund_exceeds_payment"},
    },
)
async def refund(
    body: RefundIn,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    ctx: PaymentCtx,
    idempotency_key: idempotency.IdempotencyKey = None,
) -> Any:
    is_staff = await has_permission(request, session, user, Permission.REFUNDS_ISSUE)

    async def run() -> RefundOut:
        result = await refund_booking(
            session,
            request.app.state.settings,
            ctx,
            user,
            is_staff=is_staff,
            booking_id=body.booking_id,
            amount=body.amount,
            reason=body.reason,
            seat_numbers=body.seat_numbers,
        )
        assert result.refund is not None  # only a cancellation ends without a refund
        return RefundOut(
            refund_id=result.refund.id,
            booking_id=result.booking.id,
            amount=result.refund.amount,
            fee=result.refund.fee,
            currency=result.booking.currency,
            status=result.refund.status,
            seat_numbers=result.seat_labels,
            booking_status=result.booking.status,
        )

    return await idempotency.run_once(
        session,
        user_id=user.id,
        key=idempotency_key,
        scope="POST /api/payments/refund",
        body=body,
        run=run,
    )
