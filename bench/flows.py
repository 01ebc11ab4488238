"""Multi-step scenarios driven by an asyncio client (aiohttp): the onsale rush and purchases.

Every request's latency is recorded; a scenario returns a `FlowResult` that `run.py` prints.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

SUCCESS_CARD = "4242424242424242"


@dataclass
class Recorder:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    async def call(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        token: str | None = None,
        json: Any = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.perf_counter()
        async with session.request(method, url, json=json, headers=headers) as response:
            # orjson: a 300-seat map is ~57 KB, which the standard library's parser takes
            # ~2.3 times as long to read, on the cores the servers need.
            body = orjson.loads(await response.read()) if response.status != 204 else None
        self.latencies.append(time.perf_counter() - started)
        if response.status >= 500:
            self.errors += 1
        return response.status, body


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


@dataclass
class FlowResult:
    seconds: float
    completed: int  # purchases, or seats sold in the rush
    recorder: Recorder
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = self.recorder.latencies
        return {
            "seconds": round(self.seconds, 3),
            "completed": self.completed,
            "per_second": round(self.completed / self.seconds, 1) if self.seconds else 0.0,
            "requests": len(lat),
            "requests_per_second": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(lat, 50) * 1000, 2),
            "p99_ms": round(percentile(lat, 99) * 1000, 2),
            "errors": self.recorder.errors,
            **self.recorder.counters,
            **self.extra,
        }


def _connector(clients: int) -> aiohttp.TCPConnector:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so no
    # request is sent on a connection the server is closing at that moment.
    return aiohttp.TCPConnector(limit=clients, force_close=False, keepalive_timeout=2.0)


@dataclass(frozen=True)
class PurchaseRoutes:
    """Where a purchase's steps go and what they send: the app's API, or (`raw`) the purchase
    ceiling's endpoints (bench/ceilings.py), which take the customer's id instead of a token."""

    base: str
    raw: bool = False

    def hold(self, user: str, showtime: str, labels: list[str]) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"showtimeId": showtime, "seatNumbers": labels}
        if self.raw:
            return f"{self.base}/bench/raw/lock-seats", body | {"userId": user}
        return f"{self.base}/api/bookings/lock-seats", body

    def book(
        self, user: str, showtime: str, labels: list[str], lock_token: str
    ) -> tuple[str, dict[str, Any]]:
        if self.raw:
            return f"{self.base}/bench/raw/bookings", {"lockToken": lock_token, "userId": user}
        body = {"showtimeId": showtime, "seatNumbers": labels, "lockToken": lock_token}
        return f"{self.base}/api/bookings", body

    def pay(self, intent: str) -> tuple[str, dict[str, Any]]:
        if self.raw:
            return f"{self.base}/bench/raw/payments/confirm", {"paymentIntentId": intent}
        body = {"paymentIntentId": intent, "card": SUCCESS_CARD}
        return f"{self.base}/api/payments/local/confirm", body

    def tickets(self, user: str, booking_id: str) -> str:
        if self.raw:
            return f"{self.base}/bench/raw/bookings/{booking_id}/tickets?user={user}"
        return f"{self.base}/api/bookings/{booking_id}/tickets"


async def book_and_pay(
    recorder: Recorder,
    session: aiohttp.ClientSession,
    routes: PurchaseRoutes,
    customer: tuple[str, str],
    showtime: str,
    labels: list[str],
    lock_token: str,
) -> str | None:
    """Book a hold and pay it (the local provider's success card): the booking id, or None
    (counted by the step that failed). `customer`: their id and access token."""
    user, token = customer
    url, body = routes.book(user, showtime, labels, lock_token)
    status, booked = await recorder.call(session, "POST", url, token, body)
    if status != 201:
        recorder.count(f"book_{status}")
        return None
    url, body = routes.pay(booked["paymentIntentId"])
    status, paid = await recorder.call(session, "POST", url, token, body)
    if status != 200 or paid.get("bookingStatus") != "confirmed":
        recorder.count(f"pay_{status}")
        return None
    booking_id: str = booked["booking"]["id"]
    return booking_id


async def purchases(
    base: str,
    slots: list[tuple[str, str, str, list[str]]],
    *,
    clients: int,
    seconds: float,
    raw: bool = False,
) -> FlowResult:
    """hold → book → pay (local provider) → tickets, by `clients` customers at once, each on
    its own slots (customer, showtime, seats), for `seconds`. `raw`: the same four requests
    to the purchase ceiling (`PurchaseRoutes`)."""
    recorder = Recorder()
    queue = list(reversed(slots))
    deadline = time.perf_counter() + seconds
    done = 0
    routes = PurchaseRoutes(base, raw)

    async def customer(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while queue and time.perf_counter() < deadline:
            user, token, showtime, labels = queue.pop()
            url, body = routes.hold(user, showtime, labels)
            status, held = await recorder.call(session, "POST", url, token, body)
            if status != 201:
                recorder.count(f"hold_{status}")
                continue
            booking_id = await book_and_pay(
                recorder, session, routes, (user, token), showtime, labels, held["lockToken"]
            )
            if booking_id is None:
                continue
            status, listed = await recorder.call(
                session, "GET", routes.tickets(user, booking_id), token
            )
            if status != 200 or len(listed["tickets"]) != len(labels):
                recorder.count(f"tickets_{status}")
                continue
            done += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=_connector(clients)) as session:
        await asyncio.gather(*(customer(session) for _ in range(clients)))
    return FlowResult(time.perf_counter() - started, done, recorder)


async def warm_up(
    base: str,
    slots: list[tuple[str, str, str, list[str]]],
    seat_maps: list[tuple[str, str]],
    *,
    clients: int,
    seconds: float,
) -> None:
    """Purchases and signed-in seat maps (customer token, showtime), unmeasured, before the
    flows are measured: as each wrk scenario gets 2 s of its load first, every pooled
    connection of both server processes prepares these requests' statements and the layout
    cache fills, as on a server that has been up for a while."""
    recorder = Recorder()

    async def maps(session: aiohttp.ClientSession) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for token, showtime in seat_maps:
                await recorder.call(session, "GET", f"{base}/api/showtimes/{showtime}/seats", token)

    async with aiohttp.ClientSession(connector=_connector(clients)) as session:
        await asyncio.gather(
            purchases(base, slots, clients=clients, seconds=seconds),
            *(maps(session) for _ in range(max(1, clients // 4))),
        )


async def constant_flow(base: str, *, steps: int, clients: int, seconds: float) -> FlowResult:
    """The ceiling of a flow: the same client making `steps` requests per flow to the constant
    endpoint."""
    recorder = Recorder()
    deadline = time.perf_counter() + seconds
    done = 0

    async def customer(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            for _ in range(steps):
                await recorder.call(session, "GET", f"{base}/bench/constant")
            done += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=_connector(clients)) as session:
        await asyncio.gather(*(customer(session) for _ in range(clients)))
    return FlowResult(time.perf_counter() - started, done, recorder)


async def rush(
    base: str,
    showtime: str,
    customers: list[tuple[str, str]],
    *,
    clients: int,
    seconds: float,
    seed: int = 7,
) -> FlowResult:
    """`clients` customers race for one showtime, each holding 1-4 seats it believes free
    (from the seat map it last read), booking and paying what it got, until nothing is left."""
    recorder = Recorder()
    hold_latencies: list[float] = []
    hold_starts: list[float] = []  # when each hold was sent: is the tail the first burst?
    # Per customer, from the rush's start to their first hold's answer (map read included):
    # how long the first burst waits, wherever it queues.
    first_answers: list[float] = []
    rng = random.Random(seed)
    deadline = time.perf_counter() + seconds
    sold = 0
    sold_out = asyncio.Event()
    routes = PurchaseRoutes(base)

    async def free_seats(session: aiohttp.ClientSession, token: str) -> list[str]:
        status, seat_map = await recorder.call(
            session, "GET", f"{base}/api/showtimes/{showtime}/seats", token
        )
        assert status == 200, seat_map
        return [
            seat["label"]
            for row in seat_map["rows"]
            for seat in row["seats"]
            if seat["status"] == "available"
        ]

    async def customer(session: aiohttp.ClientSession, user: str, token: str) -> None:
        nonlocal sold
        first = True
        free = await free_seats(session, token)
        while not sold_out.is_set() and time.perf_counter() < deadline:
            if not free:
                free = await free_seats(session, token)
                if not free:
                    sold_out.set()
                    return
            wanted = rng.sample(free, min(len(free), rng.randint(1, 4)))
            started = time.perf_counter()
            status, held = await recorder.call(
                session,
                "POST",
                f"{base}/api/bookings/lock-seats",
                token,
                {"showtimeId": showtime, "seatNumbers": wanted},
            )
            hold_latencies.append(time.perf_counter() - started)
            hold_starts.append(started)
            if first:
                first_answers.append(time.perf_counter() - rush_started)
                first = False
            if status == 409:
                recorder.count("conflicts")
                free = await free_seats(session, token)
                continue
            if status != 201:
                recorder.count(f"hold_{status}")
                free = await free_seats(session, token)
                continue
            free = [label for label in free if label not in wanted]
            if await book_and_pay(
                recorder, session, routes, (user, token), showtime, wanted, held["lockToken"]
            ):
                sold += len(wanted)

    rush_started = time.perf_counter()
    async with aiohttp.ClientSession(connector=_connector(clients)) as session:
        await asyncio.gather(*(customer(session, *pair) for pair in customers[:clients]))
    elapsed = time.perf_counter() - rush_started
    slowest = sorted(zip(hold_latencies, hold_starts, strict=True), reverse=True)[:5]
    return FlowResult(
        elapsed,
        sold,
        recorder,
        extra={
            "hold_p50_ms": round(percentile(hold_latencies, 50) * 1000, 2),
            "hold_p99_ms": round(percentile(hold_latencies, 99) * 1000, 2),
            "hold_attempts": len(hold_latencies),
            # The five slowest holds: [sent at, latency] in ms from the rush's start.
            "hold_slowest_ms": [
                [round((at - rush_started) * 1000), round(latency * 1000, 1)]
                for latency, at in slowest
            ],
            "first_hold_answered_p50_ms": round(percentile(first_answers, 50) * 1000, 1),
            "first_hold_answered_max_ms": round(max(first_answers, default=0) * 1000, 1),
            "sold_out": sold_out.is_set(),
        },
    )
