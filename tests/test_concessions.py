"""Concessions: the snack menu and its admin CRUD, stock taken and given back under races,
standalone preorders from order to payment to the counter, and pickup exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from boxoffice.audit.models import AuditEntry
from boxoffice.booking.models import Booking, BookingStatus
from boxoffice.booking.service import expire_due_bookings
from boxoffice.concessions import service
from boxoffice.concessions.exceptions import (
    InvalidSnackOrder,
    OutOfStock,
    SnackNotFound,
    SnackUnavailable,
)
from boxoffice.concessions.models import BookingSnack, Snack
from boxoffice.concessions.service import SnackOrder
from boxoffice.payments.models import Payment, PaymentStatus
from boxoffice.payments.service import PaymentContext
from boxoffice.scheduling.models import Showtime
from boxoffice.tickets.models import Ticket
from tests.booking_helpers import pay, seed_showtime
from tests.helpers import TestUser as AppUser  # aliased: pytest would collect "Test*"
from tests.helpers import make_user

ADMIN_SNACKS = "/api/admin/snacks"
PREORDERS = "/api/concessions/preorders"
PICKUP = "/api/concessions/pickup"
CODE = re.compile(r"^[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{8}$")


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> AppUser:
    # Depends on `client` so the user is created after the tables were emptied.
    return await make_user(app, "admin")


@pytest.fixture
async def cashier(app: FastAPI, client: httpx.AsyncClient) -> AppUser:
    return await make_user(app, "cashier")


@pytest.fixture
async def customer(app: FastAPI, client: httpx.AsyncClient) -> AppUser:
    return await make_user(app, "customer")


async def add_snack(client: httpx.AsyncClient, admin: AppUser, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Popcorn", "category": "popcorn", "price": "6.50", **fields}
    response = await client.post(ADMIN_SNACKS, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    snack: dict[str, Any] = response.json()
    return snack


async def stock_of(app: FastAPI, snack_id: str | uuid.UUID) -> int | None:
    async with app.state.db.session() as session:
        stock: int | None = await session.scalar(
            select(Snack.stock).where(Snack.id == uuid.UUID(str(snack_id)))
        )
        return stock


async def preorder(
    client: httpx.AsyncClient,
    user: AppUser,
    showtime_id: str,
    *items: tuple[str, int],
    key: str | None = None,
) -> httpx.Response:
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    return await client.post(
        PREORDERS,
        json={
            "showtimeId": showtime_id,
            "snacks": [{"snackId": snack_id, "quantity": q} for snack_id, q in items],
        },
        headers=headers,
    )


async def paid_preorder(
    client: httpx.AsyncClient, user: AppUser, showtime_id: str, *items: tuple[str, int]
) -> dict[str, Any]:
    created = await preorder(client, user, showtime_id, *items)
    assert created.status_code == 201, created.text
    paid = await pay(client, user.headers, created.json()["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["bookingStatus"] == "confirmed", paid.text
    answer: dict[str, Any] = created.json()
    return answer


async def new_bookings(
    app: FastAPI, user: AppUser, showtime_id: str, count: int
) -> list[uuid.UUID]:
    """Pending bookings without lines, to hang snack lines on in service-level tests."""
    async with app.state.db.session() as session:
        showtime = await session.get(Showtime, uuid.UUID(showtime_id))
        assert showtime is not None
        bookings = [
            Booking(
                reference=uuid.uuid4().hex[:10].upper(),
                user_id=user.id,
                showtime_id=showtime.id,
                currency=showtime.currency,
                total_amount=Decimal("0.00"),
                final_amount=Decimal("0.00"),
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15),
            )
            for _ in range(count)
        ]
        session.add_all(bookings)
        await session.flush()
        return [b.id for b in bookings]


async def set_booking(app: FastAPI, booking_id: str | uuid.UUID, **values: Any) -> None:
    async with app.state.db.session() as session:
        await session.execute(
            update(Booking).where(Booking.id == uuid.UUID(str(booking_id))).values(**values)
        )


# ---------------------------------------------------------------------------------------------
# Admin CRUD and the public menu


async def test_admin_creates_reads_updates_and_deletes_a_snack(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser
) -> None:
    body = {
        "name": "Salted Popcorn",
        "description": "Large, 250 g.\nFreshly popped.",
        "category": "Popcorn",
        "price": "6.50",
        "imageUrl": "https://img.example.com/popcorn.png",
        "stock": 40,
    }
    created = await client.post(ADMIN_SNACKS, json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    snack = created.json()
    assert snack == {
        **body,
        "id": snack["id"],
        "category": "popcorn",  # lower-cased
        "available": True,
        "orderable": True,
        "createdAt": snack["createdAt"],
        "updatedAt": snack["updatedAt"],
    }
    url = f"{ADMIN_SNACKS}/{snack['id']}"
    read = await client.get(url, headers=admin.headers)
    assert read.status_code == 200
    assert read.json() == snack

    changed = await client.patch(
        url, json={"price": 7, "stock": 0, "description": None}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["price"] == "7.00"
    assert changed.json()["stock"] == 0
    assert changed.json()["description"] == ""
    assert changed.json()["available"] is True  # the flag is untouched...
    assert changed.json()["orderable"] is False  # ...but nothing is left to order

    unlimited = await client.patch(
        url, json={"stock": None, "available": False}, headers=admin.headers
    )
    assert unlimited.json()["stock"] is None
    assert unlimited.json()["orderable"] is False

    listing = await client.get(ADMIN_SNACKS, headers=admin.headers)
    assert listing.status_code == 200
    assert listing.json() == {
        "snacks": [unlimited.json()],
        "pagination": {"page": 1, "limit": 20, "total": 1, "totalPages": 1},
    }

    deleted = await client.delete(url, headers=admin.headers)
    assert deleted.status_code == 204
    gone = await client.get(url, headers=admin.headers)
    assert gone.status_code == 404
    assert gone.json()["code"] == "snack_not_found"

    async with app.state.db.session() as session:
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "snack")
                .order_by(AuditEntry.created_at, AuditEntry.action)
            )
        ).all()
    assert [e.action for e in entries] == [
        "snack.created",
        "snack.updated",
        "snack.updated",
        "snack.deleted",
    ]
    assert all(e.actor_id == admin.id and e.entity_id == snack["id"] for e in entries)
    assert entries[0].data["price"] == "6.50"
    assert entries[1].data == {
        "before": {"price": "6.50", "stock": 40, "description": body["description"]},
        "after": {"price": "7.00", "stock": 0, "description": ""},
    }


async def test_menu_is_public_sorted_filtered_and_says_what_can_be_ordered(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    cola = await add_snack(client, admin, name="Cola", category="drinks", price="3.00")
    water = await add_snack(client, admin, name="Water", category="drinks", price="2", stock=0)
    sweet = await add_snack(client, admin, name="Popcorn sweet", category="popcorn", stock=5)
    salty = await add_snack(
        client, admin, name="Popcorn salty", category="popcorn", available=False
    )
    nachos = await add_snack(client, admin, name="Nachos", category="combos", price="8.90")

    menu = await client.get("/api/snacks")  # no token
    assert menu.status_code == 200
    snacks = menu.json()["snacks"]
    assert [s["name"] for s in snacks] == [
        "Nachos",
        "Cola",
        "Water",
        "Popcorn salty",
        "Popcorn sweet",
    ]
    by_id = {s["id"]: s for s in snacks}
    assert by_id[cola["id"]] == {
        "id": cola["id"],
        "name": "Cola",
        "description": "",
        "price": "3.00",
        "category": "drinks",
        "imageUrl": None,
        "available": True,
    }
    assert by_id[water["id"]]["available"] is False  # stock 0
    assert by_id[salty["id"]]["available"] is False  # withdrawn
    assert by_id[sweet["id"]]["available"] is True  # stock 5
    assert by_id[nachos["id"]]["available"] is True  # not counted

    drinks = await client.get("/api/snacks", params={"category": "DRINKS"})
    assert [s["name"] for s in drinks.json()["snacks"]] == ["Cola", "Water"]
    admin_drinks = await client.get(
        ADMIN_SNACKS, params={"category": "drinks", "limit": 1}, headers=admin.headers
    )
    assert [s["name"] for s in admin_drinks.json()["snacks"]] == ["Cola"]
    assert admin_drinks.json()["pagination"] == {
        "page": 1,
        "limit": 1,
        "total": 2,
        "totalPages": 2,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"category": "popcorn", "price": "6.50"}, "name"),
        ({"name": "", "category": "popcorn", "price": "6.50"}, "name"),
        ({"name": "Pop\x00corn", "category": "popcorn", "price": "6.50"}, "name"),
        ({"name": "Popcorn", "category": "pop/corn", "price": "6.50"}, "category"),
        ({"name": "Popcorn", "category": "popcorn", "price": "-1.00"}, "price"),
        ({"name": "Popcorn", "category": "popcorn", "price": "6.505"}, "price"),
        ({"name": "Popcorn", "category": "popcorn", "price": "abc"}, "price"),
        ({"name": "Popcorn", "category": "popcorn", "price": "6.50", "stock": -1}, "stock"),
        ({"name": "Popcorn", "category": "popcorn", "price": "6.50", "stock": "5"}, "stock"),
        ({"name": "Popcorn", "category": "popcorn", "price": "6.50", "stock": True}, "stock"),
        ({"name": "Popcorn", "category": "popcorn", "price": "6.50", "imageUrl": "x"}, "imageUrl"),
        ({"name": "Popcorn", "category": "popcorn", "price": "6.50", "colour": "red"}, "colour"),
    ],
)
async def test_invalid_snacks_are_422(
    client: httpx.AsyncClient, admin: AppUser, body: dict[str, Any], field: str
) -> None:
    response = await client.post(ADMIN_SNACKS, json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.text
    listing = await client.get(ADMIN_SNACKS, headers=admin.headers)
    assert listing.json()["snacks"] == []


async def test_invalid_snack_changes_are_422(client: httpx.AsyncClient, admin: AppUser) -> None:
    snack = await add_snack(client, admin, stock=3)
    url = f"{ADMIN_SNACKS}/{snack['id']}"
    for body in ({"name": None}, {"price": None}, {"available": None}, {"stock": -2}):
        response = await client.patch(url, json=body, headers=admin.headers)
        assert response.status_code == 422, (body, response.text)
    empty = await client.patch(url, json={}, headers=admin.headers)
    assert empty.status_code == 422
    assert empty.json()["code"] == "empty_update"
    unchanged = await client.get(url, headers=admin.headers)
    assert unchanged.json() == snack
    missing = f"{ADMIN_SNACKS}/{uuid.uuid4()}"
    for method in ("GET", "DELETE"):
        response = await client.request(method, missing, headers=admin.headers)
        assert response.status_code == 404
        assert response.json()["code"] == "snack_not_found"
    patch = await client.patch(missing, json={"price": 1}, headers=admin.headers)
    assert patch.status_code == 404


async def test_only_admins_manage_snacks_and_only_staff_hand_them_out(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser
) -> None:
    snack = await add_snack(client, admin)
    url = f"{ADMIN_SNACKS}/{snack['id']}"
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", ADMIN_SNACKS, {"name": "X", "category": "x", "price": "1.00"}),
        ("GET", ADMIN_SNACKS, None),
        ("GET", url, None),
        ("PATCH", url, {"price": "1.00"}),
        ("DELETE", url, None),
    ]
    for method, path, body in calls:
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
    for role in ("customer", "cashier", "operator"):
        user = await make_user(app, role)
        for method, path, body in calls:
            response = await client.request(method, path, json=body, headers=user.headers)
            assert response.status_code == 403, (role, method, path)
    customer = await make_user(app, "customer")
    refused = await client.post(PICKUP, json={"pickupCode": "ABCDEFGH"}, headers=customer.headers)
    assert refused.status_code == 403
    anonymous = await client.post(PICKUP, json={"pickupCode": "ABCDEFGH"})
    assert anonymous.status_code == 401
    for role in ("cashier", "operator", "admin"):  # allowed: the code is simply unknown
        staff = await make_user(app, role)
        unknown = await client.post(PICKUP, json={"pickupCode": "ABCDEFGH"}, headers=staff.headers)
        assert unknown.status_code == 404, role
        assert unknown.json()["code"] == "pickup_not_found"
    assert (await client.get(url, headers=admin.headers)).json() == snack


async def test_a_snack_once_ordered_is_withdrawn_not_deleted(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, customer: AppUser
) -> None:
    show = await seed_showtime(app)
    snack = await add_snack(client, admin)
    created = await preorder(client, customer, show.showtime_id, (snack["id"], 1))
    assert created.status_code == 201, created.text
    url = f"{ADMIN_SNACKS}/{snack['id']}"
    refused = await client.delete(url, headers=admin.headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "snack_in_use"
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    withdrawn = await client.patch(url, json={"available": False}, headers=admin.headers)
    assert withdrawn.status_code == 200
    menu = (await client.get("/api/snacks")).json()["snacks"]
    assert [(s["id"], s["available"]) for s in menu] == [(snack["id"], False)]


# ---------------------------------------------------------------------------------------------
# reserve / restock, the service booking checkout calls


async def test_reserve_merges_lines_freezes_prices_and_takes_stock(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, customer: AppUser
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, price="6.50", stock=10)
    cola = await add_snack(client, admin, name="Cola", category="drinks", price="3.00")
    [booking_id] = await new_bookings(app, customer, show.showtime_id, 1)
    pop_id, cola_id = uuid.UUID(popcorn["id"]), uuid.UUID(cola["id"])
    async with app.state.db.session() as session:
        lines = await service.reserve(
            session,
            booking_id,
            [SnackOrder(pop_id, 2), SnackOrder(cola_id, 1), SnackOrder(pop_id, 3)],
        )
        assert [(line.snack_id, line.name, line.quantity) for line in lines] == [
            (pop_id, "Popcorn", 5),
            (cola_id, "Cola", 1),
        ]
    assert await stock_of(app, pop_id) == 5
    assert await stock_of(app, cola_id) is None  # not counted

    raised = await client.patch(
        f"{ADMIN_SNACKS}/{pop_id}", json={"price": "9.99"}, headers=admin.headers
    )
    assert raised.status_code == 200
    async with app.state.db.session() as session:
        stored = (
            await session.execute(
                select(BookingSnack.name, BookingSnack.unit_price, BookingSnack.total_price)
                .where(BookingSnack.booking_id == booking_id)
                .order_by(BookingSnack.name)
            )
        ).all()
    assert [tuple(row) for row in stored] == [
        ("Cola", Decimal("3.00"), Decimal("3.00")),
        ("Popcorn", Decimal("6.50"), Decimal("32.50")),  # the price when it was ordered
    ]


async def test_reserve_refuses_bad_orders_and_takes_nothing(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, customer: AppUser
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, stock=3)
    cola = await add_snack(client, admin, name="Cola", category="drinks", stock=50)
    gone = await add_snack(client, admin, name="Nachos", category="combos", available=False)
    [booking_id] = await new_bookings(app, customer, show.showtime_id, 1)
    pop_id, cola_id = uuid.UUID(popcorn["id"]), uuid.UUID(cola["id"])
    many = [uuid.UUID((await add_snack(client, admin, name=f"S{i}"))["id"]) for i in range(21)]

    async def attempt(items: list[SnackOrder]) -> Exception:
        with pytest.raises(Exception) as caught:  # noqa: PT011 (the type is checked below)
            async with app.state.db.session() as session:
                await service.reserve(session, booking_id, items)
        return caught.value

    unknown = uuid.uuid4()
    error = await attempt([SnackOrder(cola_id, 1), SnackOrder(unknown, 1)])
    assert isinstance(error, SnackNotFound)
    assert (error.status, error.code, error.extra) == (
        404,
        "snack_not_found",
        {"snackId": str(unknown)},
    )

    error = await attempt([SnackOrder(uuid.UUID(gone["id"]), 1)])
    assert isinstance(error, SnackUnavailable)
    assert (error.status, error.extra) == (409, {"snackId": gone["id"]})

    # Cola (50) would be taken first or last depending on the ids: either way it comes back.
    error = await attempt([SnackOrder(cola_id, 2), SnackOrder(pop_id, 4)])
    assert isinstance(error, OutOfStock)
    assert (error.status, error.code) == (409, "out_of_stock")
    assert error.extra == {"snackId": str(pop_id), "available": 3, "requested": 4}

    for items in (
        [SnackOrder(pop_id, 0)],
        [SnackOrder(pop_id, 21)],
        [SnackOrder(cola_id, 15), SnackOrder(cola_id, 6)],  # 21 once merged
        [SnackOrder(snack_id, 1) for snack_id in many],  # 21 lines
    ):
        error = await attempt(items)
        assert isinstance(error, InvalidSnackOrder), items
        assert (error.status, error.code) == (422, "invalid_snack_order")

    assert await stock_of(app, pop_id) == 3
    assert await stock_of(app, cola_id) == 50
    async with app.state.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(BookingSnack)) == 0
        # Twenty different snacks and twenty of one are still fine.
        lines = await service.reserve(
            session, booking_id, [SnackOrder(snack_id, 1) for snack_id in many[:20]]
        )
        assert len(lines) == 20
        assert len(await service.reserve(session, booking_id, [SnackOrder(cola_id, 20)])) == 1


async def test_concurrent_reservations_sell_exactly_the_stock(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, customer: AppUser
) -> None:
    """Many checkouts in their own transactions race for 7 popcorns (and plenty of cola, named
    in either order): exactly 7 succeed, the rest get out_of_stock, nothing goes negative and
    no two transactions deadlock."""
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, stock=7)
    cola = await add_snack(client, admin, name="Cola", category="drinks", stock=1000)
    pop_id, cola_id = uuid.UUID(popcorn["id"]), uuid.UUID(cola["id"])
    booking_ids = await new_bookings(app, customer, show.showtime_id, 16)
    start = asyncio.Event()

    async def checkout(booking_id: uuid.UUID, index: int) -> list[BookingSnack]:
        items = [SnackOrder(pop_id, 1), SnackOrder(cola_id, 1)]
        if index % 2:
            items.reverse()
        await start.wait()
        async with app.state.db.session() as session:
            return await service.reserve(session, booking_id, items)

    tasks = [
        asyncio.create_task(checkout(booking_id, i)) for i, booking_id in enumerate(booking_ids)
    ]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    sold = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, OutOfStock)]
    assert len(sold) == 7, results
    assert len(refused) == 9, results
    assert all(r.extra["available"] == 0 for r in refused)
    assert await stock_of(app, pop_id) == 0
    assert await stock_of(app, cola_id) == 1000 - 7
    async with app.state.db.session() as session:
        popcorn_sold = await session.scalar(
            select(func.sum(BookingSnack.quantity)).where(BookingSnack.snack_id == pop_id)
        )
        assert popcorn_sold == 7


async def test_restock_gives_the_stock_back_exactly_once(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, customer: AppUser
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, stock=10)
    cola = await add_snack(client, admin, name="Cola", category="drinks")  # not counted
    pop_id, cola_id = uuid.UUID(popcorn["id"]), uuid.UUID(cola["id"])
    first, second = await new_bookings(app, customer, show.showtime_id, 2)
    async with app.state.db.session() as session:
        await service.reserve(session, first, [SnackOrder(pop_id, 4), SnackOrder(cola_id, 2)])
        await service.reserve(session, second, [SnackOrder(pop_id, 3)])
    assert await stock_of(app, pop_id) == 3

    # Two processes give the first booking's snacks back at the same time: once.
    async def give_back() -> None:
        async with app.state.db.session() as session:
            await service.restock(session, first)

    await asyncio.gather(*(give_back() for _ in range(4)))
    assert await stock_of(app, pop_id) == 7
    assert await stock_of(app, cola_id) is None
    await give_back()
    assert await stock_of(app, pop_id) == 7
    async with app.state.db.session() as session:
        flags = (
            await session.execute(
                select(BookingSnack.booking_id, BookingSnack.restocked).order_by(
                    BookingSnack.quantity
                )
            )
        ).all()
        await service.restock(session, uuid.uuid4())  # a booking without snacks: nothing
    assert sorted((b == first, r) for b, r in flags) == [(False, False), (True, True), (True, True)]

    async with app.state.db.session() as session:
        await service.restock(session, second)
    assert await stock_of(app, pop_id) == 10


async def test_pickup_codes_are_short_unambiguous_and_never_shared(
    app: FastAPI, client: httpx.AsyncClient, customer: AppUser
) -> None:
    codes = {service.new_pickup_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(CODE.match(code) for code in codes)

    show = await seed_showtime(app)
    taken, fresh = await new_bookings(app, customer, show.showtime_id, 2)
    await set_booking(app, taken, pickup_code="K7QX4M2P")
    async with app.state.db.session() as session:
        booking = await session.get(Booking, fresh)
        assert booking is not None
        booking.snacks_amount = Decimal("4.00")
        code = await service.assign_pickup_code(session, booking, codes=iter(["K7QX4M2P", "W9RT"]))
        assert code == "W9RT"
    async with app.state.db.session() as session:
        stored = await session.get(Booking, fresh)
        assert stored is not None
        assert (stored.pickup_code, stored.snacks_amount) == ("W9RT", Decimal("4.00"))


# ---------------------------------------------------------------------------------------------
# Preorders and the counter


async def test_preorder_pay_and_collect_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: AppUser,
    cashier: AppUser,
    customer: AppUser,
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, price="6.50", stock=10)
    cola = await add_snack(client, admin, name="Cola", category="drinks", price="3.00")
    created = await preorder(
        client,
        customer,
        show.showtime_id,
        (popcorn["id"], 2),
        (cola["id"], 1),
        (popcorn["id"], 1),
    )
    assert created.status_code == 201, created.text
    answer = created.json()
    booking = answer["booking"]
    assert CODE.match(answer["pickupCode"])
    assert answer["paymentIntentId"]
    assert answer["paymentClientSecret"]
    assert booking["status"] == "pending"
    assert booking["showtimeId"] == show.showtime_id
    assert booking["userId"] == str(customer.id)
    assert booking["seatNumbers"] == []
    assert booking["snacks"] == [
        {
            "snackId": popcorn["id"],
            "name": "Popcorn",
            "quantity": 3,
            "unitPrice": "6.50",
            "totalPrice": "19.50",
        },
        {
            "snackId": cola["id"],
            "name": "Cola",
            "quantity": 1,
            "unitPrice": "3.00",
            "totalPrice": "3.00",
        },
    ]
    assert (booking["totalAmount"], booking["discountAmount"], booking["finalAmount"]) == (
        "22.50",
        "0.00",
        "22.50",
    )
    assert booking["currency"] == "EUR"
    assert await stock_of(app, popcorn["id"]) == 7
    async with app.state.db.session() as session:
        stored = await session.get(Booking, uuid.UUID(booking["id"]))
        assert stored is not None
        assert (stored.tickets_amount, stored.snacks_amount) == (Decimal("0.00"), Decimal("22.50"))
        assert stored.pickup_code == answer["pickupCode"]
        assert stored.hold_id is None
        payment = await session.scalar(select(Payment).where(Payment.booking_id == stored.id))
        assert payment is not None
        assert payment.amount == Decimal("22.50")

    unpaid = await client.post(
        PICKUP, json={"pickupCode": answer["pickupCode"]}, headers=cashier.headers
    )
    assert unpaid.status_code == 409
    assert unpaid.json()["code"] == "not_collectable"
    assert unpaid.json()["bookingStatus"] == "pending"

    paid = await pay(client, customer.headers, answer["paymentIntentId"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["bookingStatus"] == "confirmed"
    async with app.state.db.session() as session:
        assert (
            await session.scalar(
                select(Booking.status).where(Booking.id == uuid.UUID(booking["id"]))
            )
            == BookingStatus.CONFIRMED
        )
        tickets = await session.scalar(
            select(func.count())
            .select_from(Ticket)
            .where(Ticket.booking_id == uuid.UUID(booking["id"]))
        )
        assert tickets == 0  # snacks only: nothing to let anyone in
    assert await stock_of(app, popcorn["id"]) == 7  # taken once, when ordered

    # Read out with a dash and in lower case at the counter.
    spoken = f"{answer['pickupCode'][:4].lower()}-{answer['pickupCode'][4:]}"
    collected = await client.post(PICKUP, json={"pickupCode": spoken}, headers=cashier.headers)
    assert collected.status_code == 200, collected.text
    handed = collected.json()
    assert handed == {
        "bookingId": booking["id"],
        "reference": booking["bookingReference"],
        "showtimeId": show.showtime_id,
        "snacks": [{"name": "Cola", "quantity": 1}, {"name": "Popcorn", "quantity": 3}],
        "collectedAt": handed["collectedAt"],
    }
    again = await client.post(
        PICKUP, json={"pickupCode": answer["pickupCode"]}, headers=cashier.headers
    )
    assert again.status_code == 409
    assert again.json()["code"] == "already_collected"
    assert dt.datetime.fromisoformat(again.json()["collectedAt"]) == dt.datetime.fromisoformat(
        handed["collectedAt"]
    )
    bad = await client.post(PICKUP, json={"pickupCode": "no!"}, headers=cashier.headers)
    assert bad.status_code == 422


async def test_two_cashiers_scanning_one_code_hand_it_out_once(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, customer: AppUser
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin)
    answer = await paid_preorder(client, customer, show.showtime_id, (popcorn["id"], 2))
    cashiers = [await make_user(app, "cashier") for _ in range(2)] + [await make_user(app, "admin")]
    body = {"pickupCode": answer["pickupCode"]}
    start = asyncio.Event()

    async def scan(user: AppUser) -> httpx.Response:
        await start.wait()
        return await client.post(PICKUP, json=body, headers=user.headers)

    tasks = [asyncio.create_task(scan(user)) for user in cashiers * 2]
    await asyncio.sleep(0)
    start.set()
    responses = await asyncio.gather(*tasks)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "already_collected"
            assert dt.datetime.fromisoformat(
                response.json()["collectedAt"]
            ) == dt.datetime.fromisoformat(winner["collectedAt"])


@pytest.mark.parametrize(
    ("status", "collectable"),
    [
        ("pending", False),
        ("cancelled", False),
        ("expired", False),
        ("refunded", False),
        ("used", True),  # the tickets were scanned at the door: the snacks are still due
    ],
)
async def test_only_paid_orders_are_collectable(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: AppUser,
    cashier: AppUser,
    customer: AppUser,
    status: str,
    collectable: bool,
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin)
    created = await preorder(client, customer, show.showtime_id, (popcorn["id"], 1))
    assert created.status_code == 201
    await set_booking(app, created.json()["booking"]["id"], status=status)
    response = await client.post(
        PICKUP, json={"pickupCode": created.json()["pickupCode"]}, headers=cashier.headers
    )
    if collectable:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 409
        assert response.json()["code"] == "not_collectable"
        assert response.json()["bookingStatus"] == status


async def test_an_expired_preorder_gives_its_stock_back_once(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, cashier: AppUser, customer: AppUser
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, stock=5)
    created = await preorder(client, customer, show.showtime_id, (popcorn["id"], 3))
    assert created.status_code == 201
    booking_id = uuid.UUID(created.json()["booking"]["id"])
    code = created.json()["pickupCode"]
    assert await stock_of(app, popcorn["id"]) == 2
    await set_booking(app, booking_id, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))

    # Past its deadline it is expired before the job records it...
    early = await client.post(PICKUP, json={"pickupCode": code}, headers=cashier.headers)
    assert early.status_code == 409
    assert early.json()["bookingStatus"] == "expired"

    async with app.state.db.session() as session:
        assert await expire_due_bookings(session, PaymentContext.of(app)) == 1
    async with app.state.db.session() as session:
        # (expiry will call this itself once wired; it is idempotent either way)
        await service.restock(session, booking_id)
        booking = await session.get(Booking, booking_id)
        assert booking is not None
        assert booking.status == BookingStatus.EXPIRED
        payment = await session.scalar(select(Payment).where(Payment.booking_id == booking_id))
        assert payment is not None
        assert payment.status == PaymentStatus.CANCELLED
    assert await stock_of(app, popcorn["id"]) == 5
    async with app.state.db.session() as session:
        await service.restock(session, booking_id)
    assert await stock_of(app, popcorn["id"]) == 5

    late = await client.post(PICKUP, json={"pickupCode": code}, headers=cashier.headers)
    assert late.status_code == 409
    assert late.json()["bookingStatus"] == "expired"
    # The stock it gave back can be sold again.
    again = await preorder(client, customer, show.showtime_id, (popcorn["id"], 5))
    assert again.status_code == 201, again.text


async def test_preorder_refusals(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, customer: AppUser
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, stock=2)
    cola = await add_snack(client, admin, name="Cola", category="drinks", stock=20)
    gone = await add_snack(client, admin, name="Nachos", category="combos", available=False)
    sid = show.showtime_id

    async def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        assert body["code"] == code, body
        return body

    out = await refused(
        await preorder(client, customer, sid, (cola["id"], 4), (popcorn["id"], 3)),
        409,
        "out_of_stock",
    )
    assert (out["snackId"], out["available"]) == (popcorn["id"], 2)
    gone_body = await refused(
        await preorder(client, customer, sid, (gone["id"], 1)), 409, "snack_unavailable"
    )
    assert gone_body["snackId"] == gone["id"]
    unknown = str(uuid.uuid4())
    missing = await refused(
        await preorder(client, customer, sid, (unknown, 1)), 404, "snack_not_found"
    )
    assert missing["snackId"] == unknown
    await refused(
        await preorder(client, customer, str(uuid.uuid4()), (cola["id"], 1)), 404, "not_found"
    )
    await refused(
        await preorder(client, customer, sid, (cola["id"], 15), (cola["id"], 6)),
        422,
        "invalid_snack_order",
    )
    for items in ([], [(cola["id"], 0)], [(cola["id"], 21)], [(cola["id"], 1)] * 21):
        await refused(await preorder(client, customer, sid, *items), 422, "validation_error")
    anonymous = await client.post(
        PREORDERS, json={"showtimeId": sid, "snacks": [{"snackId": cola["id"], "quantity": 1}]}
    )
    assert anonymous.status_code == 401
    # Nothing was taken by the failures (the cola of the out_of_stock order came back).
    assert await stock_of(app, popcorn["id"]) == 2
    assert await stock_of(app, cola["id"]) == 20

    now = dt.datetime.now(dt.UTC)
    async with app.state.db.session() as session:
        await session.execute(
            update(Showtime)
            .where(Showtime.id == uuid.UUID(sid))
            .values(start_time=now - dt.timedelta(minutes=20), end_time=now + dt.timedelta(hours=2))
        )
    running = await preorder(client, customer, sid, (cola["id"], 1))
    assert running.status_code == 201, running.text  # snacks until the end of the show

    async with app.state.db.session() as session:
        await session.execute(
            update(Showtime)
            .where(Showtime.id == uuid.UUID(sid))
            .values(start_time=now - dt.timedelta(hours=3), end_time=now - dt.timedelta(minutes=1))
        )
    await refused(await preorder(client, customer, sid, (cola["id"], 1)), 409, "showtime_closed")
    other = await seed_showtime(app)
    async with app.state.db.session() as session:
        await session.execute(
            update(Showtime)
            .where(Showtime.id == uuid.UUID(other.showtime_id))
            .values(status="cancelled")
        )
    await refused(
        await preorder(client, customer, other.showtime_id, (cola["id"], 1)),
        409,
        "showtime_closed",
    )
    assert await stock_of(app, cola["id"]) == 19


async def test_concurrent_preorders_sell_exactly_the_stock(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, stock=3)
    customers = [await make_user(app, "customer") for _ in range(8)]
    start = asyncio.Event()

    async def order(user: AppUser) -> httpx.Response:
        await start.wait()
        return await preorder(client, user, show.showtime_id, (popcorn["id"], 1))

    tasks = [asyncio.create_task(order(user)) for user in customers]
    await asyncio.sleep(0)
    start.set()
    responses = await asyncio.gather(*tasks)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 5, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"out_of_stock"}
    assert await stock_of(app, popcorn["id"]) == 0
    codes = {r.json()["pickupCode"] for r in responses if r.status_code == 201}
    assert len(codes) == 3
    async with app.state.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(BookingSnack)) == 3


async def test_a_repeated_preorder_with_the_same_key_orders_once(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, customer: AppUser
) -> None:
    show = await seed_showtime(app)
    popcorn = await add_snack(client, admin, stock=10)
    key = f"preorder-{random.randrange(10**9)}"
    first = await preorder(client, customer, show.showtime_id, (popcorn["id"], 2), key=key)
    second = await preorder(client, customer, show.showtime_id, (popcorn["id"], 2), key=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert await stock_of(app, popcorn["id"]) == 8
    other = await preorder(client, customer, show.showtime_id, (popcorn["id"], 3), key=key)
    assert other.status_code == 422
