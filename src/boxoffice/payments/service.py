"""Payments: intents, the payment state machine, provider events and refunds.

State machine (`TRANSITIONS`): pending -> succeeded | failed | cancelled; succeeded ->
partially_refunded | refunded; partially_refunded -> partially_refunded | refunded. Every change
is one conditional UPDATE (`WHERE id = ? AND status IN (allowed sources)`), so of two racing
callers exactly one moves the payment; the other sees the new state (a repeat: no-op) or gets
409 `illegal_payment_transition`.

As with Stripe, a declined card fails the attempt, not the intent: the failure code is recorded
and the payment stays pending, to be confirmed again. `failed` is for providers whose failures
are final (e.g. a denied PayPal capture).

Provider events are stored by (provider, event id) before they are applied, so a redelivery is
a no-op. Out of order:
- success after cancel/failure: the money is refunded at once (payment ends `refunded`);
- a refund reported before the success: stored, and applied when the success arrives; if the
  whole amount was refunded the booking is not confirmed (nobody paid for it);
- a refund reported for a succeeded payment beyond what we refunded (a dashboard refund) is
  recorded as a Refund of money only; booking-side effects are not applied here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, Executable, bindparam, exists, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from boxoffice.accounts.models import User
from boxoffice.accounts.service import CALLER, signed_in, signed_in_user
from boxoffice.audit import service as audit
from boxoffice.audit.models import ActorKind, AuditEntry
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.config import Settings
from boxoffice.core.clock import utcnow
from boxoffice.core.db import RowInsert, RowLoad, constant
from boxoffice.core.errors import BoxofficeError
from boxoffice.core.pgdriver import SessionStatement
from boxoffice.core.security import AccessClaims
from boxoffice.notifications import service as notifications
from boxoffice.payments.exceptions import (
    BookingExpired,
    BookingNotFound,
    BookingNotPaid,
    BookingNotPayable,
    CardDeclined,
    IllegalPaymentTransition,
    InvalidRefundAmount,
    NothingToPay,
    PaymentFailed,
    PaymentNotApproved,
    PaymentNotFound,
    ProviderNotConfigured,
    RefundExceedsPayment,
    RefundFailed,
    UnknownProvider,
)
from boxoffice.payments.models import Payment, PaymentEvent, PaymentStatus, Refund
from boxoffice.payments.providers.base import (
    ConfirmResult,
    ConfirmStatus,
    EventType,
    PaymentProvider,
    ProviderEvent,
    RefundStatus,
)
from boxoffice.payments.providers.local import LOCAL, LocalProvider

log = structlog.get_logger(__name__)

# target state -> the states it may be reached from
TRANSITIONS: dict[str, frozenset[str]] = {
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.PENDING}),
    PaymentStatus.FAILED: frozenset({PaymentStatus.PENDING}),
    PaymentStatus.CANCELLED: frozenset({PaymentStatus.PENDING}),
    PaymentStatus.PARTIALLY_REFUNDED: frozenset(
        {PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED}
    ),
    PaymentStatus.REFUNDED: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED}),
}
MONEY_TAKEN = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}
)
REFUNDABLE = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED})
NOT_PAID = frozenset({PaymentStatus.CANCELLED, PaymentStatus.FAILED})


# ---------------------------------------------------------------------------------------------
# Providers and context


class ProviderRegistry:
    """The providers this app may use, by name, and the one new payments go to."""

    def __init__(self, providers: Mapping[str, PaymentProvider], default: str) -> None:
        self._providers = dict(providers)
        self.default_name = default

    def default(self) -> PaymentProvider:
        provider = self._providers.get(self.default_name)
        if provider is None:
            raise ProviderNotConfigured(
                f"The payment provider {self.default_name!r} (BOXOFFICE_PAYMENT_PROVIDER) is "
                "not configured on this server."
            )
        return provider

    def get(self, name: str) -> PaymentProvider:
        provider = self._providers.get(name)
        if provider is None:
            raise UnknownProvider(f"No payment provider {name[:32]!r} is configured here.")
        return provider

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def build_registry(settings: Settings, signing_key: str | None = None) -> ProviderRegistry:
    """Every provider whose keys are set, so webhooks and refunds of earlier payments still
    work after the cinema switches `BOXOFFICE_PAYMENT_PROVIDER`."""
    providers: dict[str, PaymentProvider] = {}
    # Only when chosen: the local provider's test cards pay for anything.
    if settings.payment_provider == LOCAL:
        providers[LOCAL] = LocalProvider(signing_key or settings.signing_key())
    if settings.stripe_secret_key is not None:
        from boxoffice.payments.providers.stripe import StripeProvider

        providers[StripeProvider.name] = StripeProvider(settings)
    if settings.paypal_client_id and settings.paypal_client_secret is not None:
        from boxoffice.payments.providers.paypal import PayPalProvider

        providers[PayPalProvider.name] = PayPalProvider(settings)
    return ProviderRegistry(providers, settings.payment_provider)


@dataclass(frozen=True)
class PaymentContext:
    """Settings and providers of one app; routers get it with `PaymentContext.of(app)`."""

    settings: Settings
    registry: ProviderRegistry = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.registry is None:
            object.__setattr__(self, "registry", build_registry(self.settings))

    @classmethod
    def of(cls, app: Any) -> PaymentContext:
        """The app's context, built once and kept on `app.state`."""
        ctx: PaymentContext | None = getattr(app.state, "payment_context", None)
        if ctx is None:
            settings: Settings = app.state.settings
            signing_key: str | None = getattr(app.state, "signing_key", None)
            ctx = cls(settings, build_registry(settings, signing_key))
            app.state.payment_context = ctx
        return ctx

    def provider(self, name: str | None = None) -> PaymentProvider:
        """The named provider (404 `unknown_provider`), or the default one for new payments
        (503 `payment_provider_not_configured`)."""
        return self.registry.default() if name is None else self.registry.get(name)


SuccessHandler = Callable[[AsyncSession, "PaymentContext", uuid.UUID, Payment], Awaitable[bool]]
_success_handler: SuccessHandler | None = None


def set_success_handler(handler: SuccessHandler | None) -> None:
    """Booking registers what a successful payment does (confirm the booking) at start-up."""
    global _success_handler
    _success_handler = handler


def get_success_handler() -> SuccessHandler | None:
    return _success_handler


# ---------------------------------------------------------------------------------------------
# State machine

# The statements of every confirmation, built once with bound parameters (building each cost
# ~0.2 ms of CPU a call). A transition's UPDATE differs by the columns it sets: one per set.
_BY_REF = (
    Payment.provider == bindparam("the_provider"),
    Payment.provider_ref == bindparam("the_ref"),
)
_LOCK_BOOKING_BY_REF = (
    select(Booking)
    .where(Booking.id == select(Payment.booking_id).where(*_BY_REF).scalar_subquery())
    .with_for_update()
)
_LOCK_PAYMENT_BY_REF = (
    select(Payment).where(*_BY_REF).with_for_update().execution_options(populate_existing=True)
)
# Both in one round trip: PostgreSQL locks the rows of a join in the order of its FROM list,
# the booking's first (checked with a third transaction while the join waits for the payment).
# MariaDB locks them in the order it reads them (by the payment's reference): it runs the two
# statements above. Read past the ORM, their objects made by `RowLoad`s (see booking.service's
# hold read).
_LOCKED_BOOKING = RowLoad(Booking, "booking_")
_LOCKED_PAYMENT = RowLoad(Payment, "payment_")
_LOCK_BOOKING_AND_PAYMENT_BY_REF = SessionStatement(
    select(*_LOCKED_BOOKING.columns, *_LOCKED_PAYMENT.columns)
    .select_from(Booking)
    .join(Payment, Payment.booking_id == Booking.id)
    .where(*_BY_REF)
    .with_for_update()
)
# The same for a customer confirming their payment, with their account read along (judged by
# accounts.service.signed_in: a request session's read saved); only the booking and the
# payment locked, in that order as above.
_LOCK_BOOKING_AND_PAYMENT_BY_REF_FOR = SessionStatement(
    select(*_LOCKED_BOOKING.columns, *_LOCKED_PAYMENT.columns, *CALLER.columns)
    .select_from(Booking)
    .join(Payment, Payment.booking_id == Booking.id)
    .outerjoin(User, User.id == bindparam("the_user"))
    .where(*_BY_REF)
    .with_for_update(of=(Booking, Payment))
)
_LOCK_PAYMENT = (
    select(Payment)
    .where(Payment.id == bindparam("the_payment"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_REFUNDED_EVENTS = select(PaymentEvent.payload).where(
    PaymentEvent.payment_id == bindparam("the_payment"),
    PaymentEvent.event_type == EventType.REFUNDED,
)
_TRANSITIONS_BUILT: dict[tuple[tuple[str, ...], bool], Executable] = {}


def _transition_statement(columns: tuple[str, ...], returning: bool) -> Executable:
    """UPDATE payments SET status and `columns` WHERE the id matches and the status is one
    of `sources`; with `returning`, the changed row comes back."""
    key = (columns, returning)
    statement = _TRANSITIONS_BUILT.get(key)
    if statement is None:
        update_ = (
            update(Payment)
            .where(
                Payment.id == bindparam("the_payment"),
                Payment.status.in_(bindparam("sources", expanding=True)),
            )
            .values(
                status=bindparam("to"),
                **{column: bindparam(f"new_{column}") for column in columns},
            )
        )
        statement = update_.returning(Payment) if returning else update_
        _TRANSITIONS_BUILT[key] = statement
    return statement


async def _apply(
    session: AsyncSession,
    payment: Payment,
    to: str,
    sources: Collection[str],
    values: Mapping[str, Any],
) -> bool:
    """One conditional UPDATE; `payment` is reloaded either way. True if it moved."""
    returning = session.get_bind().dialect.update_returning
    statement = _transition_statement(tuple(sorted(values)), returning)
    params = _transition_params(payment, to, sources, values)
    if returning:
        # The changed row comes back with the UPDATE and refreshes `payment` (PostgreSQL,
        # SQLite): no second read on the way of every confirmation.
        moved = await session.scalar(
            statement,
            params,
            execution_options={"synchronize_session": False, "populate_existing": True},
        )
        if moved is not None:
            return True
    else:
        result = await session.execute(
            statement, params, execution_options={"synchronize_session": False}
        )
        if cast(CursorResult[Any], result).rowcount == 1:
            await session.refresh(payment)
            return True
    await session.refresh(payment)
    return False


def _transition_params(
    payment: Payment, to: str, sources: Collection[str], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The parameters of `_transition_statement` for moving `payment` to `to`."""
    return {
        "the_payment": payment.id,
        "sources": sorted(sources),
        "to": to,
        **{f"new_{column}": value for column, value in values.items()},
    }


def _succeed_reporting_refunds() -> tuple[SessionStatement, RowInsert]:
    """PostgreSQL: the success's transition and its audit entry (written only if the payment
    moved), answering with the payment whether the provider reported a refund of it before
    (an event stored under the payment's lock, which this transaction holds), so that the
    usual case reads no events and flushes no entry. Sent on the session's own connection
    (core.pgdriver.SessionStatement): the statuses it moves from are written into it and its
    update time is bound, where `_transition_statement` leaves both to SQLAlchemy."""
    sources = sorted(TRANSITIONS[PaymentStatus.SUCCEEDED])
    moved = (
        update(Payment)
        .where(
            Payment.id == bindparam("the_payment"),
            Payment.status.in_([constant(status) for status in sources]),
        )
        .values(
            status=bindparam("to"),
            failure_code=bindparam("new_failure_code"),
            succeeded_at=bindparam("new_succeeded_at"),
            updated_at=bindparam("new_succeeded_at"),
        )
        .returning(*Payment.__table__.columns)
        .cte("moved")
    )
    entry = RowInsert(AuditEntry, "audit", when=exists(select(moved.c.id)))
    refund_reported = exists().where(
        PaymentEvent.payment_id == moved.c.id,
        PaymentEvent.event_type == EventType.REFUNDED,
    )
    statement = select(moved, refund_reported.label("refund_reported")).add_cte(entry.cte)
    return SessionStatement(statement), entry


_SUCCEED_REPORTING_REFUNDS, _SUCCESS_AUDIT = _succeed_reporting_refunds()
# The payment's attributes and their columns, to load the row the success answers with.
_PAYMENT_COLUMNS = [(attr.key, attr.columns[0].name) for attr in inspect(Payment).column_attrs]


async def _succeed(session: AsyncSession, payment: Payment, entry: AuditEntry) -> tuple[bool, bool]:
    """Move the payment to succeeded, with its audit `entry` if it did: whether this call
    did, and whether a refund may have been reported for it before (always True but on
    PostgreSQL, which says in the same statement)."""
    values = {"succeeded_at": utcnow(), "failure_code": None}
    sources = TRANSITIONS[PaymentStatus.SUCCEEDED]
    if session.get_bind().dialect.name != "postgresql":
        applied = await _apply(session, payment, PaymentStatus.SUCCEEDED, sources, values)
        if applied:
            session.add(entry)
        return applied, True
    row = await _SUCCEED_REPORTING_REFUNDS.fetchrow(
        session,
        _transition_params(payment, PaymentStatus.SUCCEEDED, sources, values)
        | _SUCCESS_AUDIT.params(entry),
    )
    if row is None:
        await session.refresh(payment)
        return False, False
    for key, column in _PAYMENT_COLUMNS:  # the moved row, as the ORM would load it
        set_committed_value(payment, key, row[column])
    return True, bool(row.refund_reported)


async def transition(session: AsyncSession, payment: Payment, to: str, **values: Any) -> bool:
    """Move the payment to `to`: True if this call did; False if it already was there (a
    repeated event); 409 `illegal_payment_transition` otherwise."""
    if await _apply(session, payment, to, TRANSITIONS[to], values):
        return True
    if payment.status == to:
        return False
    raise IllegalPaymentTransition(
        f"A {payment.status} payment cannot become {to}.", fromStatus=payment.status, toStatus=to
    )


async def _lock(session: AsyncSession, payment_id: uuid.UUID) -> Payment:
    payment = await session.scalar(_LOCK_PAYMENT, {"the_payment": payment_id})
    assert payment is not None
    return payment


def _audit(
    session: AsyncSession,
    payment: Payment,
    action: str,
    actor_kind: str,
    actor_id: uuid.UUID | None = None,
    **data: Any,
) -> None:
    """Every money movement leaves an audit entry in the transaction that makes it."""
    session.add(_audit_entry(payment, action, actor_kind, actor_id, **data))


def _audit_entry(
    payment: Payment,
    action: str,
    actor_kind: str,
    actor_id: uuid.UUID | None = None,
    **data: Any,
) -> AuditEntry:
    return audit.new_entry(
        f"payment.{action}",
        entity_type="payment",
        entity_id=payment.id,
        actor_kind=actor_kind,
        actor_id=actor_id,
        data={
            "bookingId": str(payment.booking_id),
            "provider": payment.provider,
            "providerRef": payment.provider_ref,
            "currency": payment.currency,
            **{
                key: str(value) if isinstance(value, Decimal) else value
                for key, value in data.items()
            },
        },
    )


async def _record_failure(
    session: AsyncSession, payment: Payment, code: str, actor_kind: str = ActorKind.PROVIDER
) -> None:
    """A failed attempt: remembered on the payment, which stays pending; the customer is told."""
    _audit(session, payment, "attempt_failed", actor_kind, failureCode=code[:64])
    await session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status == PaymentStatus.PENDING)
        .values(failure_code=code[:64]),
        execution_options={"synchronize_session": False},
    )
    await session.refresh(payment)
    await _notify_failure(session, payment, code)


async def _notify_failure(session: AsyncSession, payment: Payment, code: str) -> None:
    booking = await session.get(Booking, payment.booking_id)  # loaded already when confirming
    if booking is not None:
        await notifications.notify(
            session,
            booking.user_id,
            "payment_failed",
            booking_id=booking.id,
            data={
                "reference": booking.reference,
                "amount": str(payment.amount),
                "currency": payment.currency,
                "reason": code[:64],
            },
        )


async def mark_succeeded(
    session: AsyncSession,
    ctx: PaymentContext,
    payment: Payment,
    *,
    actor_kind: str = ActorKind.PROVIDER,
    actor_id: uuid.UUID | None = None,
) -> bool:
    """The provider took the money. Exactly one caller moves pending -> succeeded and runs the
    success handler, however many webhooks and confirmations race; a success for a cancelled
    or failed payment is refunded. True if this call applied the success."""
    entry = _audit_entry(payment, "succeeded", actor_kind, actor_id, amount=payment.amount)
    applied, refund_reported = await _succeed(session, payment, entry)
    if not applied:
        if payment.status in NOT_PAID:
            await _refund_late_success(session, ctx, payment)
        return False
    refunded_early = await _refund_total_from_events(session, payment) if refund_reported else None
    if refunded_early is not None and refunded_early >= payment.amount:
        # Refunded in full at the provider before its success reached us: nothing to honour.
        await _record_provider_refund(session, payment, refunded_early)
        return True
    if _success_handler is None:
        raise RuntimeError("no payment success handler registered")
    await _success_handler(session, ctx, payment.booking_id, payment)
    if refunded_early is not None:
        await _record_provider_refund(session, payment, refunded_early)
    return True


async def _refund_late_success(
    session: AsyncSession, ctx: PaymentContext, payment: Payment
) -> None:
    """Money arrived for a payment we had cancelled (or given up on): give it back."""
    payment = await _lock(session, payment.id)
    if payment.status not in NOT_PAID:
        return
    already = min(await _refund_total_from_events(session, payment) or Decimal(0), payment.amount)
    if already > 0:
        session.add(_provider_refund_row(payment, already))
    if already < payment.amount:
        result = await ctx.provider(payment.provider).refund(
            payment.provider_ref,
            payment.amount - already,
            payment.currency,
            f"payment-{payment.id}-late-success",
        )
        session.add(
            Refund(
                payment_id=payment.id,
                booking_id=payment.booking_id,
                amount=payment.amount - already,
                reason=f"paid after the payment was {payment.status}",
                status=result.status,
                provider_ref=result.provider_ref,
                seat_labels=[],
            )
        )
    log.warning("late_payment_refunded", payment_id=str(payment.id), was=payment.status)
    _audit(
        session,
        payment,
        "refunded",
        ActorKind.SYSTEM,
        amount=payment.amount,
        reason=f"paid after the payment was {payment.status}",
    )
    await _apply(
        session,
        payment,
        PaymentStatus.REFUNDED,
        NOT_PAID,
        {"refunded_amount": payment.amount, "succeeded_at": utcnow()},
    )


def _provider_refund_row(payment: Payment, amount: Decimal) -> Refund:
    return Refund(
        payment_id=payment.id,
        booking_id=payment.booking_id,
        amount=amount,
        reason="refunded at the payment provider",
        status=RefundStatus.SUCCEEDED,
        seat_labels=[],
    )


async def _refund_total_from_events(session: AsyncSession, payment: Payment) -> Decimal | None:
    """The highest refunded total the provider reported for this payment, if any."""
    payloads = (await session.scalars(_REFUNDED_EVENTS, {"the_payment": payment.id})).all()
    totals = [
        Decimal(p["amount"]) if p.get("amount") is not None else payment.amount for p in payloads
    ]
    return max(totals) if totals else None


async def _record_provider_refund(session: AsyncSession, payment: Payment, total: Decimal) -> None:
    """The provider says `total` has been refunded so far: record what we did not know of
    (a refund made in the provider's dashboard). Our own refunds are already counted, so
    their echo changes nothing."""
    payment = await _lock(session, payment.id)
    if payment.status not in REFUNDABLE:
        return
    total = min(total, payment.amount)
    delta = total - payment.refunded_amount
    if delta <= 0:
        return
    session.add(_provider_refund_row(payment, delta))
    log.warning("refund_made_at_provider", payment_id=str(payment.id), amount=str(delta))
    _audit(
        session,
        payment,
        "refunded",
        ActorKind.PROVIDER,
        amount=delta,
        reason="refunded at the payment provider",
    )
    to = PaymentStatus.REFUNDED if total >= payment.amount else PaymentStatus.PARTIALLY_REFUNDED
    await transition(session, payment, to, refunded_amount=total)


# ---------------------------------------------------------------------------------------------
# Intents


async def create_intent(
    session: AsyncSession, ctx: PaymentContext, booking: Booking, *, new_booking: bool = False
) -> Payment:
    """The booking's pending payment with the configured provider, created when there is none.

    The booking row is locked so two concurrent calls cannot make two payable intents. A
    `new_booking` (inserted by this very transaction) is seen by nobody else and has no
    payment yet: neither lock nor lookup is needed.
    """
    provider = ctx.provider()
    payments: Sequence[Payment] = []
    if not new_booking:
        await session.execute(select(Booking.id).where(Booking.id == booking.id).with_for_update())
        payments = (
            await session.scalars(
                select(Payment)
                .where(Payment.booking_id == booking.id)
                .order_by(Payment.created_at)
                .execution_options(populate_existing=True)
            )
        ).all()
    if any(p.status in MONEY_TAKEN for p in payments):
        raise BookingNotPayable("The booking is already paid.", bookingStatus=booking.status)
    for payment in payments:
        if payment.status == PaymentStatus.PENDING:
            if payment.provider == provider.name:
                return payment
            await _cancel(session, ctx, payment)  # the provider was switched meanwhile
    payment, entry = await _new_intent(ctx, booking, attempt=len(payments) + 1)
    session.add_all((payment, entry))
    await session.flush()
    return payment


async def intent_of_new_booking(
    ctx: PaymentContext, booking: Booking
) -> tuple[Payment, AuditEntry]:
    """The first intent of a booking not yet written, and its audit entry, for a caller that
    writes all three rows in one statement (booking.service on PostgreSQL). What
    `create_intent(new_booking=True)` would add to the session."""
    return await _new_intent(ctx, booking, attempt=1)


async def _new_intent(
    ctx: PaymentContext, booking: Booking, *, attempt: int
) -> tuple[Payment, AuditEntry]:
    if booking.final_amount <= 0:
        raise NothingToPay("The booking's total is zero.")
    provider = ctx.provider()
    result = await provider.create_intent(
        booking.final_amount,
        booking.currency,
        booking.id,
        # Stable for a retried transaction: the provider returns the same intent.
        f"booking-{booking.id}-intent-{attempt}",
    )
    payment = Payment(
        id=uuid.uuid4(),
        booking_id=booking.id,
        provider=provider.name,
        provider_ref=result.provider_ref,
        client_secret=result.client_secret,
        approval_url=result.approval_url,
        status=PaymentStatus.PENDING,
        amount=booking.final_amount,
        refunded_amount=Decimal("0.00"),
        currency=booking.currency,
    )
    entry = _audit_entry(
        payment,
        "intent_created",
        ActorKind.CUSTOMER,
        booking.user_id,
        amount=payment.amount,
    )
    return payment, entry


async def create_intent_for_customer(
    session: AsyncSession, ctx: PaymentContext, *, user_id: uuid.UUID, booking_id: uuid.UUID
) -> Payment:
    """`POST /api/payments/create-intent`: the owner's pending booking, before its deadline."""
    booking = await session.scalar(
        select(Booking)
        .where(Booking.id == booking_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if booking is None or booking.user_id != user_id:
        raise BookingNotFound("No such booking.")
    if booking.status == BookingStatus.EXPIRED or (
        booking.status == BookingStatus.PENDING and booking.expires_at <= utcnow()
    ):
        raise BookingExpired("The booking's payment deadline has passed; book again.")
    if booking.status != BookingStatus.PENDING:
        raise BookingNotPayable(
            f"A {booking.status} booking cannot be paid.", bookingStatus=booking.status
        )
    return await create_intent(session, ctx, booking)


async def _cancel(session: AsyncSession, ctx: PaymentContext, payment: Payment) -> None:
    if not await _apply(session, payment, PaymentStatus.CANCELLED, {PaymentStatus.PENDING}, {}):
        return
    _audit(session, payment, "cancelled", ActorKind.SYSTEM)
    # Cancelled here regardless of the provider's answer: should the provider still take the
    # money, the success event finds a cancelled payment and refunds it.
    await cancel_at_provider(ctx, payment)


async def cancel_at_provider(ctx: PaymentContext, payment: Payment) -> None:
    """Cancel the payment's intent at its provider, best effort (also for an intent from
    `intent_of_new_booking` whose booking was refused before its rows were written)."""
    try:
        await ctx.provider(payment.provider).cancel(payment.provider_ref)
    except BoxofficeError as exc:  # best effort: an intent nobody pays lapses
        log.warning("intent_cancel_failed", payment_id=str(payment.id), error=exc.code)


async def cancel_payment(session: AsyncSession, payment: Payment, *, actor_kind: str) -> bool:
    """The provider reports the intent cancelled: record it (no call back to the provider)."""
    if not await _apply(session, payment, PaymentStatus.CANCELLED, {PaymentStatus.PENDING}, {}):
        return False
    _audit(session, payment, "cancelled", actor_kind)
    return True


async def cancel_intent(session: AsyncSession, ctx: PaymentContext, booking_id: uuid.UUID) -> None:
    """The booking was cancelled or expired: its pending payments can no longer be paid."""
    pending = (
        await session.scalars(
            select(Payment).where(
                Payment.booking_id == booking_id, Payment.status == PaymentStatus.PENDING
            )
        )
    ).all()
    for payment in pending:
        await _cancel(session, ctx, payment)


async def succeeded_payment(session: AsyncSession, booking_id: uuid.UUID) -> Payment | None:
    """The payment that took the booking's money (possibly refunded since), if any."""
    return await session.scalar(
        select(Payment)
        .where(Payment.booking_id == booking_id, Payment.status.in_(MONEY_TAKEN))
        .order_by(Payment.succeeded_at.desc())
        .limit(1)
    )


async def lock_by_ref(
    session: AsyncSession,
    provider_name: str,
    provider_ref: str,
    caller: AccessClaims | None = None,
) -> Payment | None:
    """The payment of a provider intent, locked after its booking row. Whatever changes a
    booking and its payment (refunds, cancellation, the expiry job) locks the booking first;
    locking the payment first, a payment arriving as its booking expires deadlocked with the
    expiry job. With `caller`, their account is judged first (401: accounts.service.signed_in),
    whether or not there is such a payment."""
    by_ref: dict[str, Any] = {"the_provider": provider_name, "the_ref": provider_ref}
    if session.get_bind().dialect.name == "mysql":
        if caller is not None:
            await signed_in_user(session, caller)
        # One statement finds and locks the booking (and loads it for the caller).
        booking = await session.scalar(_LOCK_BOOKING_BY_REF, by_ref)
        if booking is None:
            return None
        _pin(session, booking)
        return await session.scalar(_LOCK_PAYMENT_BY_REF, by_ref)
    if caller is None:
        row = await _LOCK_BOOKING_AND_PAYMENT_BY_REF.fetchrow(session, by_ref)
        if row is None:
            return None
        _pin(session, _LOCKED_BOOKING.load(session, row))
        return _LOCKED_PAYMENT.load(session, row)
    by_ref["the_user"] = caller.user_id
    read = await _LOCK_BOOKING_AND_PAYMENT_BY_REF_FOR.fetchrow(session, by_ref)
    if read is None:  # no such payment: the account still decides between 401 and 404
        await signed_in_user(session, caller)
        return None
    signed_in(CALLER.load(session, read), caller)
    _pin(session, _LOCKED_BOOKING.load(session, read))
    return _LOCKED_PAYMENT.load(session, read)


def _pin(session: AsyncSession, booking: Booking) -> None:
    # The identity map holds unchanged objects weakly: pinned for the unit of work, the
    # booking is still there when the caller and the success handler get it (else each
    # `session.get` read it again).
    session.info.setdefault("pinned", []).append(booking)


@dataclass(frozen=True)
class Confirmation:
    payment: Payment
    booking_status: str


async def capture(
    session: AsyncSession,
    ctx: PaymentContext,
    payment: Payment,
    *,
    card: str | None = None,
    actor_kind: str,
    actor_id: uuid.UUID | None = None,
) -> ConfirmResult:
    """Complete a pending payment at its provider (the local card form, a PayPal capture).
    A success confirms the booking through `mark_succeeded`; a decline is recorded and the
    payment stays pending. The caller holds the payment's lock (`lock_by_ref`)."""
    result = await ctx.provider(payment.provider).confirm(payment.provider_ref, card)
    if result.succeeded:
        await mark_succeeded(session, ctx, payment, actor_kind=actor_kind, actor_id=actor_id)
    elif result.status == ConfirmStatus.DECLINED:
        await _record_failure(session, payment, result.failure_code or "card_declined", actor_kind)
    elif result.status == ConfirmStatus.FAILED:
        code = (result.failure_code or "payment_failed")[:64]
        if await _apply(
            session, payment, PaymentStatus.FAILED, {PaymentStatus.PENDING}, {"failure_code": code}
        ):
            _audit(session, payment, "failed", actor_kind, actor_id, failureCode=code)
            await _notify_failure(session, payment, code)
    return result


async def confirm_payment(
    session: AsyncSession,
    ctx: PaymentContext,
    *,
    provider_name: str,
    caller: AccessClaims,
    provider_ref: str,
    card: str | None = None,
) -> Confirmation:
    """The customer completes their payment: the local provider's card form, or the return
    from PayPal's approval page. 402 on a decline (the intent stays pending), 409
    `payment_not_approved` before the customer approved it; on success the booking is
    confirmed through the same path a webhook takes. Confirming a payment that already
    succeeded answers its state again without charging. The caller's account is judged
    first (401), read with the payment."""
    user_id = caller.user_id
    provider = ctx.provider(provider_name)
    payment = await lock_by_ref(session, provider.name, provider_ref, caller)
    # Loaded (and locked) by lock_by_ref: no query here.
    booking = await session.get(Booking, payment.booking_id) if payment is not None else None
    if payment is None or booking is None or booking.user_id != user_id:
        raise PaymentNotFound("No such payment intent.")
    if payment.status == PaymentStatus.PENDING:
        result = await capture(
            session, ctx, payment, card=card, actor_kind=ActorKind.CUSTOMER, actor_id=user_id
        )
        if result.status == ConfirmStatus.DECLINED:
            code = result.failure_code or "card_declined"
            raise CardDeclined(
                result.message, code=code, paymentIntentId=provider_ref, bookingId=str(booking.id)
            )
        if result.status == ConfirmStatus.FAILED:
            raise PaymentFailed(
                result.message or "The payment can no longer be completed; pay again.",
                reason=result.failure_code,
                paymentIntentId=provider_ref,
                bookingId=str(booking.id),
            )
        if result.status == ConfirmStatus.REQUIRES_ACTION:
            # Not approved yet, or held for review at the provider (`capture_pending`): no
            # money taken so far; the provider's reason and message say which.
            raise PaymentNotApproved(
                result.message or "Approve the payment with the provider first.",
                reason=result.failure_code,
                paymentIntentId=provider_ref,
            )
    elif payment.status not in MONEY_TAKEN:
        raise IllegalPaymentTransition(
            f"The payment was {payment.status}; create a new intent.",
            fromStatus=payment.status,
            toStatus=PaymentStatus.SUCCEEDED,
        )
    # The booking row is locked by this transaction, and confirming changes it through the
    # session (booking.service.confirm_paid_booking): its loaded state is current.
    return Confirmation(payment, booking.status)


# ---------------------------------------------------------------------------------------------
# Webhooks


async def handle_webhook(
    session: AsyncSession,
    ctx: PaymentContext,
    provider_name: str,
    headers: Mapping[str, str],
    raw_body: bytes,
) -> bool:
    """Verify, store and apply one provider event. True when it was a redelivery (nothing
    done). Events about unknown payments are stored and otherwise ignored."""
    provider = ctx.provider(provider_name)
    event = await provider.verify_webhook(headers, raw_body)
    payment = None
    if event.provider_ref:
        # Locked first, so a redelivery racing this one waits and then finds the stored event.
        payment = await lock_by_ref(session, provider.name, event.provider_ref)
    try:
        async with session.begin_nested():
            session.add(
                PaymentEvent(
                    provider=provider.name,
                    event_id=event.event_id,
                    event_type=event.type,
                    payment_id=payment.id if payment is not None else None,
                    payload={
                        "providerRef": event.provider_ref,
                        "amount": str(event.amount) if event.amount is not None else None,
                        "failureCode": event.failure_code,
                        "event": dict(event.data),
                    },
                )
            )
            await session.flush()
    except IntegrityError:
        return True
    if payment is None:
        log.info("payment_event_unmatched", provider=provider.name, event_type=event.type)
        return False
    await _apply_event(session, ctx, payment, event)
    return False


async def _apply_event(
    session: AsyncSession, ctx: PaymentContext, payment: Payment, event: ProviderEvent
) -> None:
    # A webhook answers 200 even when its event no longer fits (e.g. canceled after success):
    # an error would only make the provider redeliver it for days. It stays stored and logged.
    if event.type == EventType.SUCCEEDED:
        await mark_succeeded(session, ctx, payment)
    elif event.type == EventType.PAYMENT_FAILED:
        await _record_failure(session, payment, event.failure_code or "payment_failed")
    elif event.type == EventType.CANCELED:
        try:
            if await transition(session, payment, PaymentStatus.CANCELLED):
                _audit(session, payment, "cancelled", ActorKind.PROVIDER)
        except IllegalPaymentTransition:
            log.warning("payment_event_out_of_place", payment_id=str(payment.id), type=event.type)
    elif event.type == EventType.APPROVED:
        if payment.status == PaymentStatus.PENDING:
            await capture(session, ctx, payment, actor_kind=ActorKind.PROVIDER)
    elif event.type == EventType.DISPUTE_CREATED:
        # The money is held by the provider until the dispute is decided; staff answer it in
        # the provider's dashboard. Recorded so reports and staff see it.
        log.warning("payment_disputed", payment_id=str(payment.id), amount=str(event.amount))
        _audit(session, payment, "disputed", ActorKind.PROVIDER, amount=event.amount)
    elif event.type == EventType.REFUNDED:
        # Before the success it stays stored until `mark_succeeded` applies it.
        total = event.amount if event.amount is not None else payment.amount
        await _record_provider_refund(session, payment, total)
    else:
        log.info("payment_event_stored_only", payment_id=str(payment.id), type=event.type)


# ---------------------------------------------------------------------------------------------
# Refunds


async def refund(
    session: AsyncSession,
    ctx: PaymentContext,
    booking: Booking,
    amount: Decimal,
    *,
    reason: str | None,
    seat_labels: list[str],
    requested_by: uuid.UUID | None,
    fee: Decimal = Decimal("0"),
) -> Refund:
    """Give `amount` of the booking's payment back (money only; `fee` is what was kept, for
    the record). The payment row is locked before the provider is called, so concurrent
    refunds run one after another and never return more than was paid: 409
    `refund_exceeds_payment`."""
    if amount <= 0:
        raise InvalidRefundAmount("A refund must be a positive amount.")
    payments = (
        await session.scalars(
            select(Payment)
            .where(Payment.booking_id == booking.id)
            .order_by(Payment.created_at, Payment.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    if not payments:
        raise BookingNotPaid("The booking has no payment.")
    payment = next((p for p in payments if p.status in MONEY_TAKEN), payments[-1])
    if payment.status not in MONEY_TAKEN:
        raise IllegalPaymentTransition(
            f"A {payment.status} payment cannot be refunded.",
            fromStatus=payment.status,
            toStatus=PaymentStatus.REFUNDED,
        )
    remaining = payment.amount - payment.refunded_amount
    if amount > remaining:
        raise RefundExceedsPayment(
            f"At most {remaining:.2f} {payment.currency} is left to refund.",
            refundable=f"{remaining:.2f}",
        )
    result = await ctx.provider(payment.provider).refund(
        payment.provider_ref,
        amount,
        payment.currency,
        # Stable for a retried transaction, distinct for each later refund.
        f"payment-{payment.id}-refund-{payment.refunded_amount}-{amount}",
    )
    if result.status == RefundStatus.FAILED:
        raise RefundFailed("The payment provider refused the refund.")
    record = Refund(
        payment_id=payment.id,
        booking_id=booking.id,
        amount=amount,
        fee=fee,
        reason=reason[:500] if reason else None,
        status=result.status,
        provider_ref=result.provider_ref,
        seat_labels=list(seat_labels),
        requested_by=requested_by,
    )
    session.add(record)
    _audit(
        session,
        payment,
        "refunded",
        ActorKind.SYSTEM
        if requested_by is None
        else ActorKind.CUSTOMER
        if requested_by == booking.user_id
        else ActorKind.STAFF,
        requested_by,
        amount=amount,
        fee=fee,
        reason=reason[:500] if reason else None,
    )
    total = payment.refunded_amount + amount
    to = PaymentStatus.REFUNDED if total >= payment.amount else PaymentStatus.PARTIALLY_REFUNDED
    await transition(session, payment, to, refunded_amount=total)
    await session.flush()
    return record
