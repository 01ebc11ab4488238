"""Reconciliation: ask the provider about payments still pending, and apply what it says.

The answer to "paid but no ticket": a webhook lost on the way (an outage, a wrong URL, a
deployment) leaves a payment pending although the provider took the money. Run by
`boxoffice payments reconcile` and periodically in every server process.

The provider is asked outside any transaction (no row lock waits on the network); its
answer is then applied under the booking and payment locks through the same service paths a
webhook takes, so a webhook arriving meanwhile and this job confirm the booking once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from fastapi import FastAPI
from sqlalchemy import select

from boxoffice.audit.models import ActorKind
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database
from boxoffice.core.errors import BoxofficeError
from boxoffice.payments import service
from boxoffice.payments.models import Payment, PaymentStatus
from boxoffice.payments.providers.base import ConfirmStatus, IntentStatus
from boxoffice.payments.providers.local import LOCAL

log = structlog.get_logger(__name__)


@dataclass
class ReconcileReport:
    checked: int = 0
    confirmed: int = 0  # the provider had the money: the booking is confirmed (or refunded)
    cancelled: int = 0
    still_pending: int = 0
    errors: int = 0  # the provider could not be asked; the next run tries again

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


async def reconcile_pending(
    database: Database,
    ctx: service.PaymentContext,
    *,
    older_than: dt.timedelta,
    since: dt.datetime | None = None,
    limit: int = 500,
) -> ReconcileReport:
    """Check every payment pending for longer than `older_than` (created after `since`, if
    given) with its provider. The local provider keeps no state of its own and is skipped."""
    cutoff = utcnow() - older_than
    query = (
        select(Payment.id, Payment.provider, Payment.provider_ref)
        .where(
            Payment.status == PaymentStatus.PENDING,
            Payment.provider != LOCAL,
            Payment.created_at <= cutoff,
        )
        .order_by(Payment.created_at)
        .limit(limit)
    )
    if since is not None:
        query = query.where(Payment.created_at >= since)
    async with database.session(write=False) as session:
        candidates = (await session.execute(query)).all()

    report = ReconcileReport()
    for payment_id, provider_name, provider_ref in candidates:
        report.checked += 1
        try:
            state = await ctx.provider(provider_name).retrieve(provider_ref)
            outcome = await _apply(database, ctx, provider_name, provider_ref, state.status)
        except BoxofficeError as exc:
            report.errors += 1
            log.warning(
                "reconcile_failed",
                payment_id=str(payment_id),
                provider=provider_name,
                error=exc.code,
            )
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
        if outcome != "still_pending":
            log.info("payment_reconciled", payment_id=str(payment_id), outcome=outcome)
    return report


async def _apply(
    database: Database,
    ctx: service.PaymentContext,
    provider_name: str,
    provider_ref: str,
    status: str,
) -> str:
    """Apply the provider's state to one payment; the name of the report's counter."""
    if status not in {IntentStatus.SUCCEEDED, IntentStatus.APPROVED, IntentStatus.CANCELLED}:
        return "still_pending"
    async with database.session() as session:
        payment = await service.lock_by_ref(session, provider_name, provider_ref)
        if payment is None or payment.status != PaymentStatus.PENDING:
            return "still_pending"  # changed meanwhile (a webhook won): nothing to do
        if status == IntentStatus.SUCCEEDED:
            await service.mark_succeeded(session, ctx, payment, actor_kind=ActorKind.SYSTEM)
            return "confirmed"
        if status == IntentStatus.APPROVED:
            # Approved by the customer, never captured (they closed the tab on the way back).
            result = await service.capture(session, ctx, payment, actor_kind=ActorKind.SYSTEM)
            if result.succeeded:
                return "confirmed"
            return "cancelled" if result.status == ConfirmStatus.FAILED else "still_pending"
        await service.cancel_payment(session, payment, actor_kind=ActorKind.PROVIDER)
        return "cancelled"


async def reconcile_once(app: FastAPI) -> None:
    """The periodic job's run."""
    settings = app.state.settings
    report = await reconcile_pending(
        app.state.db,
        service.PaymentContext.of(app),
        older_than=dt.timedelta(minutes=settings.reconcile_after_minutes),
    )
    if report.checked:
        log.info("payments_reconciled", **report.as_dict())
