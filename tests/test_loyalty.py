"""Loyalty points: earning once, tiers over a 12-month window, the tier_upgrade mail, spending
under concurrency, restoring, reversing on refunds, the periodic job and `GET /api/me/points`.

After every scenario the account's balance must equal the sum of the user's ledger entries.
Races run in separate transactions on a database with enough connections; on PostgreSQL and
MariaDB every racer has begun its transaction (and read) before any of them writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.app import create_app
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database
from boxoffice.loyalty import jobs, service
from boxoffice.loyalty.exceptions import (
    BookingNotFound,
    InsufficientPoints,
    InvalidPoints,
    PointsAlreadyRedeemed,
)
from boxoffice.loyalty.models import EntryKind, LoyaltyAccount, PointsEntry
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import Screen
from tests.conftest import Backend, make_settings, settle_jobs
from tests.factories import make_pending_booking, make_showtime, seed_venue
from tests.helpers import TestUser, make_user

T = TypeVar("T")
Outbox = Callable[[], list[Path]]
MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]

CONFIRMED = BookingStatus.CONFIRMED


# ---------------------------------------------------------------------------------------------
# Helpers


@dataclass
class Show:
    """A showtime and its seats, handed out one per booking."""

    app: FastAPI
    showtime_id: uuid.UUID
    labels: list[str] = field(
        default_factory=lambda: [f"{row}{n}" for row in "ABCDE" for n in range(1, 9)]
    )

    async def booking(
        self,
        user: TestUser,
        amount: str,
        *,
        status: str = CONFIRMED,
        refunded: str = "0.00",
    ) -> uuid.UUID:
        async with self.app.state.db.session() as session:
            booking = await make_pending_booking(
                session, user.id, self.showtime_id, [self.labels.pop(0)], Decimal(amount)
            )
            booking.status = status
            booking.refunded_amount = Decimal(refunded)
            return booking.id

    async def move_to_past(self) -> None:
        """The show started four hours ago and ended one hour ago."""
        now = utcnow()
        async with self.app.state.db.session() as session:
            await session.execute(
                update(Showtime)
                .where(Showtime.id == self.showtime_id)
                .values(
                    start_time=now - dt.timedelta(hours=4), end_time=now - dt.timedelta(hours=1)
                )
            )


async def new_show(app: FastAPI) -> Show:
    venue = await seed_venue(app)
    async with app.state.db.session() as session:
        screen = await session.get(Screen, venue.screen_id)
        movie = await session.get(Movie, venue.movie_id)
        assert screen is not None
        assert movie is not None
        showtime = await make_showtime(session, screen, movie)
        return Show(app, showtime.id)


@pytest.fixture
async def show(client: httpx.AsyncClient, app: FastAPI) -> Show:
    """A fresh database (through `client`) with one showtime three days ahead."""
    return await new_show(app)


async def call(app: FastAPI, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run one service function in its own committed transaction."""
    async with app.state.db.session() as session:
        return await fn(session, *args, **kwargs)


async def assert_ledger(app: FastAPI, user_id: uuid.UUID) -> int:
    """The balance equals the sum of the user's entries and is never negative."""
    async with app.state.db.session(write=False) as session:
        balance = await session.scalar(
            select(LoyaltyAccount.balance).where(LoyaltyAccount.user_id == user_id)
        )
        total = await session.scalar(
            select(func.coalesce(func.sum(PointsEntry.points), 0)).where(
                PointsEntry.user_id == user_id
            )
        )
    assert (balance or 0) == int(total or 0)
    assert (balance or 0) >= 0
    return balance or 0


async def entries_of(app: FastAPI, user_id: uuid.UUID) -> list[PointsEntry]:
    async with app.state.db.session(write=False) as session:
        rows = await session.scalars(
            select(PointsEntry)
            .where(PointsEntry.user_id == user_id)
            .order_by(PointsEntry.created_at, PointsEntry.id)
        )
        return list(rows)


async def stored_tier(app: FastAPI, user_id: uuid.UUID) -> str | None:
    async with app.state.db.session(write=False) as session:
        tier: str | None = await session.scalar(
            select(LoyaltyAccount.tier).where(LoyaltyAccount.user_id == user_id)
        )
        return tier


async def age_entries(app: FastAPI, booking_id: uuid.UUID, age: dt.timedelta) -> None:
    async with app.state.db.session() as session:
        await session.execute(
            update(PointsEntry)
            .where(PointsEntry.booking_id == booking_id)
            .values(created_at=utcnow() - age)
        )


async def tier_mails(outbox: Outbox, *apps: FastAPI) -> list[email.message.Message]:
    """The tier_upgrade mails in the outbox, once the apps' jobs (which send them) are done."""
    for application in apps:
        await settle_jobs(application)
    messages = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in outbox()
    ]
    return [m for m in messages if m["X-Boxoffice-Notification"] == "tier_upgrade"]


def text_of(message: email.message.Message) -> str:
    assert isinstance(message, email.message.EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


@pytest.fixture
async def racing_app(backend: Backend, app: FastAPI) -> AsyncIterator[FastAPI]:
    """A second app on the test database with a connection for every racer; its tier
    upgrades are notified as the shared app's are, and its mails go to the same outbox."""
    application = create_app(
        make_settings(backend, app.state.settings.var_dir, database_pool_size=12)
    )
    async with LifespanManager(application):
        yield application


@pytest.fixture
def racing_db(racing_app: FastAPI) -> Database:
    database: Database = racing_app.state.db
    return database


async def race(
    database: Database, work: Sequence[Callable[[AsyncSession], Awaitable[T]]]
) -> list[T | BaseException]:
    """Run each piece of work in its own transaction, all at once. On the servers every
    transaction has begun and read before any of them writes; SQLite runs one writer at a
    time by design (the write turn), so there they simply queue."""
    barrier = asyncio.Barrier(len(work)) if database.backend != "sqlite" else None

    async def one(job: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with database.session() as session:
            if barrier is not None:
                await session.execute(select(func.count()).select_from(LoyaltyAccount))
                await barrier.wait()
            return await job(session)

    return await asyncio.gather(*(one(job) for job in work), return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# Arithmetic


def test_points_arithmetic_and_tier_rules() -> None:
    assert service.points_for_payment(Decimal("25.37")) == 253  # 10%, rounded down
    assert service.points_for_payment(Decimal("0.10")) == 1
    assert service.points_for_payment(Decimal("0.09")) == 0
    assert service.points_for_payment(Decimal("0.00")) == 0
    assert service.points_value(300) == Decimal("3.00")
    assert service.points_value(1) == Decimal("0.01")
    assert [service.tier_for(n) for n in (0, 1999, 2000, 4999, 5000, 90000)] == [
        "bronze",
        "bronze",
        "silver",
        "silver",
        "gold",
        "gold",
    ]
    assert service.tier_discount_rate("bronze") == Decimal("0")
    assert service.tier_discount_rate("silver") == Decimal("0.05")
    assert service.tier_discount_rate("gold") == Decimal("0.10")
    assert service.year_before(dt.datetime(2028, 2, 29, 12, tzinfo=dt.UTC)) == dt.datetime(
        2027, 2, 28, 12, tzinfo=dt.UTC
    )


# ---------------------------------------------------------------------------------------------
# Earning


async def test_a_paid_booking_earns_ten_percent_rounded_down_once(app: FastAPI, show: Show) -> None:
    ann = await make_user(app)
    booking_id = await show.booking(ann, "25.37")

    assert await call(app, service.earn_for_booking, booking_id) == 253
    assert await call(app, service.earn_for_booking, booking_id) == 0  # once per booking
    view = await call(app, service.account, ann.id)
    assert (view.balance, view.tier, view.earned_last_12_months) == (253, "bronze", 253)
    assert (view.next_tier, view.points_to_next_tier) == ("silver", 1747)
    [entry] = await entries_of(app, ann.id)
    assert (entry.kind, entry.points, entry.booking_id) == ("earn", 253, booking_id)
    assert "25.37 EUR" in (entry.note or "")
    assert await assert_ledger(app, ann.id) == 253


async def test_only_paid_bookings_earn_and_on_what_they_kept(app: FastAPI, show: Show) -> None:
    ann = await make_user(app)
    for status in ("pending", "expired", "cancelled", "refunded"):
        unpaid = await show.booking(ann, "40.00", status=status)
        assert await call(app, service.earn_for_booking, unpaid) == 0
    assert await call(app, service.earn_for_booking, uuid.uuid4()) == 0  # unknown booking
    assert await entries_of(app, ann.id) == []
    assert (await call(app, service.account, ann.id)).balance == 0

    used = await show.booking(ann, "30.00", status=BookingStatus.USED, refunded="10.00")
    assert await call(app, service.earn_for_booking, used) == 200  # 10% of 30 - 10
    tiny = await show.booking(ann, "0.09")
    assert await call(app, service.earn_for_booking, tiny) == 0  # not worth a point
    assert [e.points for e in await entries_of(app, ann.id)] == [200]
    assert await assert_ledger(app, ann.id) == 200


async def test_concurrent_earns_of_one_booking_credit_it_once(
    app: FastAPI, show: Show, racing_db: Database
) -> None:
    ann = await make_user(app)
    booking_id = await show.booking(ann, "25.37")

    async def earn(session: AsyncSession) -> int:
        return await service.earn_for_booking(session, booking_id)

    results = await race(racing_db, [earn] * 4)
    assert sorted(results, key=str) == [0, 0, 0, 253], results
    assert [e.points for e in await entries_of(app, ann.id)] == [253]
    assert await assert_ledger(app, ann.id) == 253


# ---------------------------------------------------------------------------------------------
# Tiers and the tier_upgrade mail


async def test_tiers_cross_their_thresholds_and_each_upgrade_is_mailed_once(
    app: FastAPI, show: Show, outbox: Outbox
) -> None:
    ann = await make_user(app)

    async def earn(amount: str) -> service.AccountView:
        await call(app, service.earn_for_booking, await show.booking(ann, amount))
        return await call(app, service.account, ann.id)

    view = await earn("199.90")
    assert (view.tier, view.earned_last_12_months, view.points_to_next_tier) == ("bronze", 1999, 1)
    assert await tier_mails(outbox, app) == []

    view = await earn("0.10")
    assert (view.tier, view.next_tier, view.points_to_next_tier) == ("silver", "gold", 3000)
    assert await stored_tier(app, ann.id) == "silver"
    [silver] = await tier_mails(outbox, app)
    assert silver["To"] == ann.email
    assert "Silver" in silver["Subject"]
    assert "5% off" in text_of(silver)

    view = await earn("299.90")
    assert (view.tier, view.points_to_next_tier) == ("silver", 1)
    assert len(await tier_mails(outbox, app)) == 1  # still silver: no second mail

    view = await earn("0.10")
    assert (view.tier, view.next_tier, view.points_to_next_tier) == ("gold", None, None)
    assert view.earned_last_12_months == 5000
    mails = await tier_mails(outbox, app)
    assert [("Gold" in m["Subject"]) for m in mails] == [False, True]
    assert "10% off" in text_of(mails[1])

    await earn("100.00")
    assert len(await tier_mails(outbox, app)) == 2
    assert await assert_ledger(app, ann.id) == 6000


async def test_only_the_last_twelve_months_count_towards_the_tier(
    app: FastAPI, show: Show, outbox: Outbox
) -> None:
    ann = await make_user(app)
    old = await show.booking(ann, "400.00")
    assert await call(app, service.earn_for_booking, old) == 4000
    assert (await call(app, service.account, ann.id)).tier == "silver"

    await age_entries(app, old, dt.timedelta(days=396))  # 13 months ago: no longer counts
    view = await call(app, service.account, ann.id)
    assert (view.balance, view.earned_last_12_months, view.tier) == (4000, 0, "bronze")
    assert await call(app, service.summary, ann.id) == ("bronze", 4000)

    recent = await show.booking(ann, "150.00")
    assert await call(app, service.earn_for_booking, recent) == 1500
    assert await stored_tier(app, ann.id) == "bronze"  # recomputed on earning: down again
    await age_entries(app, recent, dt.timedelta(days=334))  # 11 months ago: still counts

    assert await call(app, service.earn_for_booking, await show.booking(ann, "60.00")) == 600
    view = await call(app, service.account, ann.id)
    assert (view.earned_last_12_months, view.tier) == (2100, "silver")
    assert len(await tier_mails(outbox, app)) == 2  # silver, and silver again after the drop
    assert await assert_ledger(app, ann.id) == 6100


async def test_no_tier_mail_when_the_transaction_rolls_back(
    app: FastAPI, show: Show, outbox: Outbox
) -> None:
    ann = await make_user(app)
    booking_id = await show.booking(ann, "250.00")

    async def earn_then_fail() -> None:
        async with app.state.db.session() as session:
            assert await service.earn_for_booking(session, booking_id) == 2500
            raise RuntimeError("checkout failed later")

    with pytest.raises(RuntimeError):
        await earn_then_fail()
    assert await tier_mails(outbox, app) == []
    assert await entries_of(app, ann.id) == []

    assert await call(app, service.earn_for_booking, booking_id) == 2500
    assert len(await tier_mails(outbox, app)) == 1
    assert await assert_ledger(app, ann.id) == 2500


async def test_racing_earns_that_cross_a_threshold_send_one_mail(
    app: FastAPI, show: Show, outbox: Outbox, racing_app: FastAPI, racing_db: Database
) -> None:
    ann = await make_user(app)
    await call(app, service.earn_for_booking, await show.booking(ann, "190.00"))  # 1900
    bookings = [await show.booking(ann, "10.00") for _ in range(4)]  # 100 points each

    def earn(booking_id: uuid.UUID) -> Callable[[AsyncSession], Awaitable[int]]:
        async def work(session: AsyncSession) -> int:
            return await service.earn_for_booking(session, booking_id)

        return work

    assert await race(racing_db, [earn(b) for b in bookings]) == [100] * 4
    assert (await call(app, service.account, ann.id)).tier == "silver"
    assert len(await tier_mails(outbox, app, racing_app)) == 1
    assert await assert_ledger(app, ann.id) == 2300


# ---------------------------------------------------------------------------------------------
# Redeeming and restoring


async def test_redeem_spends_points_or_refuses_when_short(app: FastAPI, show: Show) -> None:
    ann = await make_user(app)
    bob = await make_user(app)
    checkout = await show.booking(ann, "20.00", status="pending")

    with pytest.raises(InsufficientPoints) as no_account:
        await call(app, service.redeem, ann.id, checkout, 1)
    assert no_account.value.extra["balance"] == 0

    await call(app, service.earn_for_booking, await show.booking(ann, "100.00"))  # 1000
    assert await call(app, service.redeem, ann.id, checkout, 300) == Decimal("3.00")
    assert (await call(app, service.account, ann.id)).balance == 700
    redeemed = [e for e in await entries_of(app, ann.id) if e.kind == EntryKind.REDEEM]
    assert [(e.points, e.booking_id) for e in redeemed] == [(-300, checkout)]

    another = await show.booking(ann, "20.00", status="pending")
    with pytest.raises(InsufficientPoints) as short:
        await call(app, service.redeem, ann.id, another, 701)
    assert (short.value.status, short.value.code) == (422, "points_insufficient")
    assert short.value.extra == {"balance": 700, "requested": 701}
    assert await call(app, service.redeem, ann.id, another, 700) == Decimal("7.00")

    with pytest.raises(PointsAlreadyRedeemed):
        await call(app, service.redeem, ann.id, checkout, 1)
    with pytest.raises(InvalidPoints):
        await call(
            app, service.redeem, ann.id, await show.booking(ann, "5.00", status="pending"), 0
        )
    bobs = await show.booking(bob, "20.00", status="pending")
    with pytest.raises(BookingNotFound):  # not the user's booking
        await call(app, service.redeem, ann.id, bobs, 1)

    assert await assert_ledger(app, ann.id) == 0
    assert await assert_ledger(app, bob.id) == 0


async def test_concurrent_redemptions_never_overdraw_the_balance(
    app: FastAPI, show: Show, racing_db: Database
) -> None:
    ann = await make_user(app)
    await call(app, service.earn_for_booking, await show.booking(ann, "100.00"))  # 1000
    checkouts = [await show.booking(ann, "20.00", status="pending") for _ in range(10)]

    def spend(booking_id: uuid.UUID) -> Callable[[AsyncSession], Awaitable[Decimal]]:
        async def work(session: AsyncSession) -> Decimal:
            return await service.redeem(session, ann.id, booking_id, 300)

        return work

    results = await race(racing_db, [spend(b) for b in checkouts])
    spent = [r for r in results if r == Decimal("3.00")]
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert (len(spent), len(refused)) == (3, 7), results
    assert await assert_ledger(app, ann.id) == 100
    redeemed = [e for e in await entries_of(app, ann.id) if e.kind == EntryKind.REDEEM]
    assert len(redeemed) == 3


async def test_restore_gives_redeemed_points_back_once(
    app: FastAPI, show: Show, racing_db: Database
) -> None:
    ann = await make_user(app)
    await call(app, service.earn_for_booking, await show.booking(ann, "100.00"))  # 1000
    expired = await show.booking(ann, "20.00", status="pending")
    cancelled = await show.booking(ann, "20.00", status="pending")
    paid = await show.booking(ann, "20.00", status="pending")
    for booking_id in (expired, cancelled, paid):
        await call(app, service.redeem, ann.id, booking_id, 200)
    assert await assert_ledger(app, ann.id) == 400

    async with app.state.db.session() as session:
        for booking_id, status in (
            (expired, "expired"),
            (cancelled, "cancelled"),
            (paid, CONFIRMED),
        ):
            await session.execute(
                update(Booking).where(Booking.id == booking_id).values(status=status)
            )

    assert await call(app, service.restore, expired) == 200
    assert await call(app, service.restore, expired) == 0  # once
    assert await call(app, service.restore, paid) == 0  # a paid booking keeps its discount
    assert await call(app, service.restore, await show.booking(ann, "9.00", status="expired")) == 0

    async def restore(session: AsyncSession) -> int:
        return await service.restore(session, cancelled)

    assert sorted(await race(racing_db, [restore] * 3), key=str) == [0, 0, 200]
    restores = [e for e in await entries_of(app, ann.id) if e.kind == EntryKind.RESTORE]
    assert sorted((e.booking_id, e.points) for e in restores) == sorted(
        [(expired, 200), (cancelled, 200)]
    )
    assert await assert_ledger(app, ann.id) == 800


# ---------------------------------------------------------------------------------------------
# Refunds


async def test_a_refund_takes_back_its_share_of_earned_points_once(
    app: FastAPI, show: Show
) -> None:
    ann = await make_user(app)
    booking_id = await show.booking(ann, "100.00")
    await call(app, service.earn_for_booking, booking_id)  # 1000

    assert await call(app, service.reverse_for_refund, booking_id, "r1", Decimal("30.00")) == 300
    assert await call(app, service.reverse_for_refund, booking_id, "r1", Decimal("30.00")) == 0
    assert await assert_ledger(app, ann.id) == 700
    reverse = [e for e in await entries_of(app, ann.id) if e.kind == EntryKind.REVERSE]
    assert [(e.points, e.ref) for e in reverse] == [(-300, "r1")]

    # The customer spends most of the rest; a later refund takes what is left, never more.
    await call(app, service.redeem, ann.id, await show.booking(ann, "9.00", status="pending"), 600)
    assert await call(app, service.reverse_for_refund, booking_id, "r2", Decimal("50.00")) == 100
    assert await assert_ledger(app, ann.id) == 0
    assert await call(app, service.reverse_for_refund, booking_id, "r3", Decimal("10.00")) == 0
    assert await assert_ledger(app, ann.id) == 0
    reverse = [e for e in await entries_of(app, ann.id) if e.kind == EntryKind.REVERSE]
    assert [(e.ref, e.points) for e in reverse] == [("r1", -300), ("r2", -100), ("r3", 0)]
    assert "500 points due, only 100 left" in (reverse[1].note or "")
    assert "100 points due, only 0 left" in (reverse[2].note or "")


async def test_refunds_never_take_back_more_than_was_earned(app: FastAPI, show: Show) -> None:
    ann = await make_user(app)
    booking_id = await show.booking(ann, "100.00")
    await call(app, service.earn_for_booking, booking_id)
    await call(app, service.earn_for_booking, await show.booking(ann, "100.00"))  # 2000 in all
    assert await call(app, service.reverse_for_refund, booking_id, "a", Decimal("60.00")) == 600
    assert await call(app, service.reverse_for_refund, booking_id, "b", Decimal("60.00")) == 400
    assert await call(app, service.reverse_for_refund, booking_id, "c", Decimal("1.00")) == 0
    assert await assert_ledger(app, ann.id) == 1000


async def test_a_refund_before_earning_lowers_the_earning_instead(app: FastAPI, show: Show) -> None:
    ann = await make_user(app)
    booking_id = await show.booking(ann, "50.00", refunded="20.00")
    assert await call(app, service.reverse_for_refund, booking_id, "early", Decimal("20.00")) == 0
    assert await call(app, service.earn_for_booking, booking_id) == 300
    assert await assert_ledger(app, ann.id) == 300


async def test_a_reversal_recomputes_the_tier(app: FastAPI, show: Show, outbox: Outbox) -> None:
    ann = await make_user(app)
    booking_id = await show.booking(ann, "250.00")
    await call(app, service.earn_for_booking, booking_id)
    assert await stored_tier(app, ann.id) == "silver"
    assert await call(app, service.reverse_for_refund, booking_id, "r", Decimal("100.00")) == 1000
    assert await stored_tier(app, ann.id) == "bronze"
    view = await call(app, service.account, ann.id)
    assert (view.tier, view.earned_last_12_months) == ("bronze", 1500)
    assert len(await tier_mails(outbox, app)) == 1  # the upgrade only
    assert await assert_ledger(app, ann.id) == 1500


# ---------------------------------------------------------------------------------------------
# The periodic job


async def test_the_job_earns_for_shows_that_are_over_once(
    app: FastAPI, show: Show, outbox: Outbox
) -> None:
    ann = await make_user(app)
    bob = await make_user(app)
    await show.move_to_past()
    confirmed = await show.booking(ann, "250.00")
    used = await show.booking(bob, "12.34", status=BookingStatus.USED)
    await show.booking(ann, "30.00", status="pending")
    await show.booking(ann, "30.00", status="refunded")
    await show.booking(bob, "0.05")  # not worth a point
    upcoming = await new_show(app)
    await upcoming.booking(ann, "40.00")
    cancelled_show = await new_show(app)
    await cancelled_show.move_to_past()
    await cancelled_show.booking(bob, "40.00")
    async with app.state.db.session() as session:
        await session.execute(
            update(Showtime)
            .where(Showtime.id == cancelled_show.showtime_id)
            .values(status="cancelled")
        )

    await jobs.earn_once(app)
    assert [(e.booking_id, e.points) for e in await entries_of(app, ann.id)] == [(confirmed, 2500)]
    assert [(e.booking_id, e.points) for e in await entries_of(app, bob.id)] == [(used, 123)]
    assert len(await tier_mails(outbox, app)) == 1

    await jobs.earn_once(app)
    assert await call(app, service.earn_for_past_shows) == 0
    assert len(await entries_of(app, ann.id)) == 1
    assert len(await tier_mails(outbox, app)) == 1
    assert await assert_ledger(app, ann.id) == 2500
    assert await assert_ledger(app, bob.id) == 123


async def test_racing_job_runs_earn_each_booking_once(
    app: FastAPI, show: Show, racing_db: Database
) -> None:
    users = [await make_user(app) for _ in range(3)]
    await show.move_to_past()
    for index in range(9):
        await show.booking(users[index % 3], "10.00")

    async def run(session: AsyncSession) -> int:
        return await service.earn_for_past_shows(session, limit=6)

    first = await race(racing_db, [run] * 3)
    assert all(isinstance(count, int) for count in first), first
    rest = await call(app, service.earn_for_past_shows)
    assert sum(c for c in first if isinstance(c, int)) + rest == 9
    for user in users:
        assert [e.points for e in await entries_of(app, user.id)] == [100, 100, 100]
        assert await assert_ledger(app, user.id) == 300


async def test_the_server_runs_the_job_by_itself(make_client: MakeClient, app: FastAPI) -> None:
    await make_client(loyalty_interval_seconds=1)  # a server process with the job on
    ann = await make_user(app)
    past = await new_show(app)
    await past.move_to_past()
    booking_id = await past.booking(ann, "15.00")

    deadline = time.monotonic() + 10
    while not await entries_of(app, ann.id):
        assert time.monotonic() < deadline, "the loyalty job did not run"
        await asyncio.sleep(0.1)
    assert [(e.booking_id, e.points) for e in await entries_of(app, ann.id)] == [(booking_id, 150)]
    assert await assert_ledger(app, ann.id) == 150


# ---------------------------------------------------------------------------------------------
# GET /api/me/points


async def test_me_points_shows_the_account_and_its_entries_newest_first(
    app: FastAPI, show: Show, client: httpx.AsyncClient
) -> None:
    ann = await make_user(app)
    bob = await make_user(app)
    earned = await show.booking(ann, "100.00")
    await call(app, service.earn_for_booking, earned)
    spent = await show.booking(ann, "20.00", status="pending")
    await call(app, service.redeem, ann.id, spent, 300)
    async with app.state.db.session() as session:
        await session.execute(update(Booking).where(Booking.id == spent).values(status="expired"))
    await call(app, service.restore, spent)
    await call(app, service.earn_for_booking, await show.booking(bob, "50.00"))

    response = await client.get("/api/me/points", params={"limit": 2}, headers=ann.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "balance",
        "tier",
        "earnedLast12Months",
        "nextTier",
        "pointsToNextTier",
        "entries",
        "pagination",
    }
    assert (body["balance"], body["tier"], body["earnedLast12Months"]) == (1000, "bronze", 1000)
    assert (body["nextTier"], body["pointsToNextTier"]) == ("silver", 1000)
    assert body["pagination"] == {"page": 1, "limit": 2, "total": 3, "totalPages": 2}
    assert [set(e) for e in body["entries"]] == [
        {"id", "kind", "points", "bookingId", "note", "createdAt"}
    ] * 2
    assert [(e["kind"], e["points"], e["bookingId"]) for e in body["entries"]] == [
        ("restore", 300, str(spent)),
        ("redeem", -300, str(spent)),
    ]
    assert dt.datetime.fromisoformat(body["entries"][0]["createdAt"]).utcoffset() is not None

    second = (
        await client.get("/api/me/points", params={"limit": 2, "page": 2}, headers=ann.headers)
    ).json()
    assert [(e["kind"], e["points"], e["bookingId"]) for e in second["entries"]] == [
        ("earn", 1000, str(earned))
    ]
    assert await assert_ledger(app, ann.id) == 1000


async def test_me_points_for_a_newcomer_and_without_signing_in(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    newcomer = await make_user(app)
    body = (await client.get("/api/me/points", headers=newcomer.headers)).json()
    assert body == {
        "balance": 0,
        "tier": "bronze",
        "earnedLast12Months": 0,
        "nextTier": "silver",
        "pointsToNextTier": 2000,
        "entries": [],
        "pagination": {"page": 1, "limit": 20, "total": 0, "totalPages": 0},
    }
    anonymous = await client.get("/api/me/points")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    too_many = await client.get("/api/me/points?limit=101", headers=newcomer.headers)
    assert too_many.status_code == 422
    assert "/api/me/points" in (await client.get("/openapi.json")).json()["paths"]
