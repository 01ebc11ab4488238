"""Rate limits: the general limit on every /api request, the stricter ones on logins, password
resets, registration, verification, MFA and seat holds, client addresses behind trusted proxies,
limits shared through Redis, and failing open when Redis is gone."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from starlette.requests import Request
from structlog.testing import capture_logs

from boxoffice.app import create_app
from boxoffice.core.ratelimit import (
    Bucket,
    TrustedProxies,
    _MemoryBuckets,
    _RedisBuckets,
    client_ip,
    ip_key,
)
from tests.booking_helpers import hold, seed_showtime
from tests.conftest import Backend, make_settings, reset_database
from tests.helpers import DEFAULT_PASSWORD, make_user

MakeApp = Callable[..., Awaitable[FastAPI]]
Peer = Callable[..., httpx.AsyncClient]

MOVIES = "/api/movies"


@pytest.fixture
async def make_app(backend: Backend, tmp_path: Path) -> AsyncIterator[MakeApp]:
    """Apps with overridden settings on the test database (each its own windows, as a separate
    server process has, unless they share a Redis)."""
    managers: list[LifespanManager] = []

    async def factory(**overrides: Any) -> FastAPI:
        application = create_app(make_settings(backend, tmp_path / "var", **overrides))
        manager = LifespanManager(application)
        await manager.__aenter__()
        if not managers:
            await reset_database(application)
        managers.append(manager)
        return application

    yield factory
    for manager in reversed(managers):
        await manager.__aexit__(None, None, None)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    """HTTP clients of an app whose connections come from a given address."""
    clients: list[httpx.AsyncClient] = []

    def factory(app: FastAPI, address: str | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address or random_address(), 40000))
        http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(http)
        return http

    yield factory
    for http in clients:
        await http.aclose()


def random_address() -> str:
    """An address of its own, so other tests (and earlier runs on the same Redis) do not count."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def assert_limited(response: httpx.Response, most: int = 3600) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "rate_limited"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= most
    assert body["retryAfter"] == retry_after
    return retry_after


async def statuses(
    http: httpx.AsyncClient, count: int, path: str = MOVIES, **kwargs: Any
) -> list[int]:
    return [(await http.get(path, **kwargs)).status_code for _ in range(count)]


async def login(http: httpx.AsyncClient, email: str, password: str = "Wrong-Password-123") -> int:
    response = await http.post("/api/auth/login", json={"email": email, "password": password})
    return response.status_code


# ---------------------------------------------------------------------------------------------
# The general limit


async def test_general_limit_counts_each_signed_in_customer(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(rate_limit_default="3/minute", rate_limit_default_per_ip="100/minute")
    http = peer(app)
    busy, neighbour = await make_user(app), await make_user(app)

    assert await statuses(http, 3, headers=busy.headers) == [200] * 3
    retry_after = assert_limited(await http.get(MOVIES, headers=busy.headers), most=60)
    assert retry_after >= 10  # one request of 3 a minute comes back after about 20 seconds
    # The same address: another customer, and anonymous browsing, have room of their own.
    assert (await http.get(MOVIES, headers=neighbour.headers)).status_code == 200
    assert (await http.get(MOVIES)).status_code == 200
    # A limited customer is limited everywhere under /api, and from any address.
    assert_limited(await peer(app).get("/api/me", headers=busy.headers))


async def test_general_limit_counts_each_client_address(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(rate_limit_default="100/minute", rate_limit_default_per_ip="4/minute")
    office, elsewhere = peer(app), peer(app)
    customer = await make_user(app)

    assert await statuses(office, 4) == [200] * 4
    assert_limited(await office.get(MOVIES))
    # Signing in does not get around a full address.
    assert_limited(await office.get(MOVIES, headers=customer.headers))
    assert (await elsewhere.get(MOVIES)).status_code == 200
    assert (await elsewhere.get(MOVIES, headers=customer.headers)).status_code == 200


# Clocks (seconds since boot) just below a power of two, where `now + period` rounds in floating
# seconds: a server up 68 minutes refused the last token of a full bucket (CI found it).
AWKWARD_CLOCKS_NS = [round((2**k - 30 + 0.123456789) * 1e9) for k in (12, 13, 17, 20)]
AWKWARD_LIMITS = ["1/minute", "3/minute", "7/minute", "13/second", "1000/hour"]


@pytest.mark.parametrize("clock_ns", AWKWARD_CLOCKS_NS)
def test_a_full_bucket_gives_exactly_its_limit_in_memory(clock_ns: int) -> None:
    buckets = _MemoryBuckets(clock=lambda: clock_ns)
    for value in AWKWARD_LIMITS:
        bucket = Bucket.parse(value)
        assert bucket is not None
        windows = [(bucket, f"ip:{value}")]
        assert [buckets.hit(windows) for _ in range(bucket.limit)] == [0.0] * bucket.limit, value
        wait = buckets.hit(windows)
        # The next token comes one interval later (the clock stood still).
        assert wait == pytest.approx(bucket.period / bucket.limit, abs=1e-5), value


async def test_a_full_bucket_gives_exactly_its_limit_in_redis(redis_url: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        buckets = _RedisBuckets(redis)
        for value in AWKWARD_LIMITS:
            bucket = Bucket.parse(value)
            assert bucket is not None
            # Fresh keys; a whole bucket taken within its first interval.
            windows = [(bucket, f"test:{uuid.uuid4()}")]
            waits = [await buckets.hit(windows) for _ in range(bucket.limit)]
            assert waits == [0.0] * bucket.limit, value
            assert 0 < await buckets.hit(windows) <= bucket.period / bucket.limit, value
    finally:
        await redis.aclose()


async def test_a_loopback_peer_has_no_per_address_windows(make_app: MakeApp, peer: Peer) -> None:
    # This machine, or a local reverse proxy not named in BOXOFFICE_TRUSTED_PROXIES: one
    # address for every client, so counting it would refuse them all at once.
    app = await make_app(rate_limit_default="3/minute", rate_limit_default_per_ip="2/minute")
    local, remote = peer(app, "127.0.0.1"), peer(app)
    customer = await make_user(app)

    assert await statuses(local, 6) == [200] * 6
    assert await statuses(remote, 2) == [200] * 2
    assert_limited(await remote.get(MOVIES))
    # The signed-in customer's own window still counts, from anywhere.
    assert await statuses(local, 3, headers=customer.headers) == [200] * 3
    assert_limited(await local.get(MOVIES, headers=customer.headers))


@pytest.mark.parametrize("role", ["cashier", "operator", "admin"])
async def test_staff_are_exempt_from_the_general_and_hold_limits(
    make_app: MakeApp, peer: Peer, role: str
) -> None:
    app = await make_app(
        rate_limit_default="2/minute",
        rate_limit_default_per_ip="2/minute",
        rate_limit_holds="1/minute",
        rate_limit_holds_per_ip="1/minute",
    )
    till = peer(app)
    staff = await make_user(app, role)
    shop = await seed_showtime(app)

    assert await statuses(till, 5, headers=staff.headers) == [200] * 5
    for seat in ("A1", "A2", "A3"):
        response = await hold(till, staff.headers, shop.showtime_id, seat)
        assert response.status_code == 201, response.text
    # A customer at the same till address is held to both.
    customer = await make_user(app)
    assert (await hold(till, customer.headers, shop.showtime_id, "B1")).status_code == 201
    assert_limited(await hold(till, customer.headers, shop.showtime_id, "B2"))


async def test_staff_are_not_exempt_from_login_limits(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(rate_limit_login_per_ip="2/minute")
    http = peer(app)
    admin = await make_user(app, "admin")
    for _ in range(2):
        response = await http.post(
            "/api/auth/login",
            json={"email": admin.email, "password": "Wrong-Password-123"},
            headers=admin.headers,
        )
        assert response.status_code == 401
    assert_limited(
        await http.post(
            "/api/auth/login",
            json={"email": admin.email, "password": admin.password},
            headers=admin.headers,
        )
    )


async def test_webhooks_and_operations_endpoints_are_never_limited(
    make_app: MakeApp, peer: Peer
) -> None:
    app = await make_app(rate_limit_default="1/minute", rate_limit_default_per_ip="1/minute")
    provider = peer(app)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert await statuses(provider, 3, path) == [200] * 3
    for _ in range(4):
        hook = await provider.post("/api/payments/webhook/local", content=b"{}")
        assert hook.status_code != 429, hook.text
        assert hook.status_code < 500
    # The same address is limited under the rest of /api.
    assert (await provider.get(MOVIES)).status_code == 200
    assert_limited(await provider.get(MOVIES))


# ---------------------------------------------------------------------------------------------
# Stricter limits


async def test_logins_are_limited_per_address(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(rate_limit_login_per_ip="3/minute", rate_limit_login_per_email="")
    attacker, someone_else = peer(app), peer(app)
    user = await make_user(app)

    assert [await login(attacker, f"guess{i}@example.com") for i in range(3)] == [401] * 3
    assert_limited(
        await attacker.post(
            "/api/auth/login", json={"email": user.email, "password": user.password}
        ),
        most=60,
    )
    # Malformed bodies count too (the limit runs before validation).
    assert_limited(await attacker.post("/api/auth/login", content=b"not json"))
    assert await login(someone_else, user.email, user.password) == 200


async def test_logins_are_limited_per_email_from_any_address(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(rate_limit_login_per_email="2/hour", rate_limit_login_per_ip="100/minute")
    victim, other = await make_user(app), await make_user(app)

    assert await login(peer(app), victim.email) == 401
    assert await login(peer(app), victim.email.upper()) == 401  # the same address
    third = await peer(app).post(
        "/api/auth/login", json={"email": f"  {victim.email}", "password": victim.password}
    )
    assert_limited(third)
    assert await login(peer(app), other.email, other.password) == 200


async def test_password_forgot_and_reset_are_limited(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(
        rate_limit_password_per_email="2/hour", rate_limit_password_per_ip="3/hour"
    )
    first, second = peer(app), peer(app)
    user = await make_user(app)

    async def forgot(http: httpx.AsyncClient, email: str) -> httpx.Response:
        return await http.post("/api/auth/password/forgot", json={"email": email})

    assert (await forgot(first, user.email)).status_code == 202
    assert (await forgot(second, user.email)).status_code == 202
    retry_after = assert_limited(await forgot(second, user.email))
    assert retry_after > 60  # a window of an hour
    # Per address: forgot and reset share the window.
    assert (await forgot(first, "someone@example.com")).status_code == 202
    assert (await forgot(first, "another@example.com")).status_code == 202
    reset = await first.post(
        "/api/auth/password/reset", json={"token": "x" * 43, "newPassword": DEFAULT_PASSWORD}
    )
    assert_limited(reset)
    assert (await forgot(peer(app), "third@example.com")).status_code == 202


async def test_registration_is_limited_per_address(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(rate_limit_register_per_ip="2/hour")
    signup, elsewhere = peer(app), peer(app)

    async def register(http: httpx.AsyncClient) -> httpx.Response:
        return await http.post(
            "/api/auth/register",
            json={
                "email": f"new-{uuid.uuid4().hex[:8]}@example.com",
                "password": DEFAULT_PASSWORD,
                "fullName": "New Customer",
            },
        )

    assert [(await register(signup)).status_code for _ in range(2)] == [201, 201]
    assert_limited(await register(signup))
    assert (await register(elsewhere)).status_code == 201


async def test_mfa_and_email_verification_are_limited(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(
        rate_limit_mfa="2/minute",
        rate_limit_mfa_per_ip="100/minute",
        rate_limit_email_verification="100/hour",
        rate_limit_email_verification_per_ip="2/hour",
    )
    user = await make_user(app)
    http = peer(app)
    for _ in range(2):
        assert (await http.post("/api/auth/mfa/setup", headers=user.headers)).status_code == 200
    assert_limited(
        await peer(app).post("/api/auth/mfa/enable", json={"otp": "123456"}, headers=user.headers)
    )

    verify = {"token": "y" * 43}
    for _ in range(2):
        response = await http.post("/api/auth/verify-email", json=verify)
        assert response.status_code != 429
    assert_limited(await http.post("/api/auth/verify-email", json=verify))


async def test_seat_holds_are_limited_per_customer_and_address(
    make_app: MakeApp, peer: Peer
) -> None:
    app = await make_app(rate_limit_holds="2/minute", rate_limit_holds_per_ip="3/minute")
    shop = await seed_showtime(app)
    http = peer(app)
    greedy, neighbour = await make_user(app), await make_user(app)

    for seat in ("A1", "A2"):
        assert (await hold(http, greedy.headers, shop.showtime_id, seat)).status_code == 201
    assert_limited(await hold(http, greedy.headers, shop.showtime_id, "A3"), most=60)
    best = await peer(app).post(
        "/api/bookings/lock-best",
        json={"showtimeId": shop.showtime_id, "quantity": 1},
        headers=greedy.headers,
    )
    assert_limited(best)  # the same window, from any address
    # The neighbour has a window of their own, but the address fills up.
    assert (await hold(http, neighbour.headers, shop.showtime_id, "B1")).status_code == 201
    assert_limited(await hold(http, neighbour.headers, shop.showtime_id, "B2"))


async def test_turning_limits_off_turns_them_all_off(make_app: MakeApp, peer: Peer) -> None:
    strict = dict.fromkeys(
        (
            "rate_limit_default",
            "rate_limit_default_per_ip",
            "rate_limit_login_per_ip",
            "rate_limit_login_per_email",
            "rate_limit_password_per_ip",
            "rate_limit_holds",
            "rate_limit_holds_per_ip",
        ),
        "1/hour",
    )
    app = await make_app(rate_limit_enabled=False, **strict)
    http = peer(app)
    user = await make_user(app)
    shop = await seed_showtime(app)
    assert await statuses(http, 5, headers=user.headers) == [200] * 5
    assert [await login(http, user.email) for _ in range(3)] == [401] * 3
    for seat in ("A1", "A2", "A3"):
        assert (await hold(http, user.headers, shop.showtime_id, seat)).status_code == 201


# ---------------------------------------------------------------------------------------------
# Redis: shared windows, and failing open


async def test_two_app_instances_on_one_redis_share_the_limits(
    make_app: MakeApp, peer: Peer, redis_url: str
) -> None:
    settings = {
        "redis_url": redis_url,
        "rate_limit_default": "3/minute",
        "rate_limit_default_per_ip": "1000/minute",
        "rate_limit_login_per_ip": "2/minute",
    }
    first, second = await make_app(**settings), await make_app(**settings)
    address = random_address()
    customer = await make_user(first)

    assert await statuses(peer(first, address), 2, headers=customer.headers) == [200] * 2
    assert await statuses(peer(second, address), 1, headers=customer.headers) == [200]
    for app in (first, second):
        assert_limited(await peer(app, address).get(MOVIES, headers=customer.headers), most=60)

    assert await login(peer(first, address), "nobody@example.com") == 401
    assert await login(peer(second, address), "nobody@example.com") == 401
    assert_limited(
        await peer(first, address).post(
            "/api/auth/login", json={"email": "nobody@example.com", "password": "x" * 12}
        )
    )


async def test_an_unreachable_redis_lets_requests_through(make_app: MakeApp, peer: Peer) -> None:
    app = await make_app(
        redis_url="redis://127.0.0.1:1/0",  # nothing listens there
        rate_limit_default="1/minute",
        rate_limit_default_per_ip="1/minute",
        rate_limit_login_per_ip="1/minute",
    )
    http = peer(app)
    with capture_logs() as logs:
        assert await statuses(http, 5) == [200] * 5
        assert [await login(http, "nobody@example.com") for _ in range(3)] == [401] * 3
    warnings = [entry for entry in logs if entry["event"] == "rate_limit_storage_unavailable"]
    assert len(warnings) == 1  # once in a while, not once per request
    assert warnings[0]["log_level"] == "warning"


# ---------------------------------------------------------------------------------------------
# Client addresses behind proxies

PROXIES = TrustedProxies(["10.0.0.0/8", "192.0.2.1", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("peer_address", "forwarded", "expected"),
    [
        # Straight from the client: its headers are not believed.
        ("198.51.100.7", ["203.0.113.5"], "198.51.100.7"),
        ("198.51.100.7", [], "198.51.100.7"),
        # Through one trusted proxy.
        ("192.0.2.1", ["203.0.113.5"], "203.0.113.5"),
        # Through several: trusted hops are skipped from the right.
        ("10.1.2.3", ["203.0.113.5, 10.9.9.9, 192.0.2.1"], "203.0.113.5"),
        # The client wrote the leftmost entries itself: only the rightmost untrusted one counts.
        ("192.0.2.1", ["1.2.3.4, 203.0.113.5"], "203.0.113.5"),
        ("192.0.2.1", ["10.0.0.1, 203.0.113.5"], "203.0.113.5"),
        # Header lines are one list, in order.
        ("192.0.2.1", ["1.2.3.4", "203.0.113.5, 10.0.0.2"], "203.0.113.5"),
        # Every hop trusted: the leftmost, written by a trusted proxy, is the client.
        ("192.0.2.1", ["10.0.0.5, 10.0.0.6"], "10.0.0.5"),
        # Malformed where it is read: fall back to the peer.
        ("192.0.2.1", ["203.0.113.5, not-an-address"], "192.0.2.1"),
        ("192.0.2.1", [""], "192.0.2.1"),
        ("192.0.2.1", [","], "192.0.2.1"),
        ("192.0.2.1", ["203.0.113.5 10.0.0.1"], "192.0.2.1"),
        # ...but garbage left of the client is never read.
        ("192.0.2.1", ["<script>, 203.0.113.5"], "203.0.113.5"),
        # Ports, brackets, IPv6 and IPv4-mapped peers.
        ("192.0.2.1", ["203.0.113.5:41000"], "203.0.113.5"),
        ("192.0.2.1", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("2001:db8:ffff::1", ["2001:db8::7, 2001:db8:ffff:1::2"], "2001:db8::7"),
        ("::ffff:192.0.2.1", ["203.0.113.5"], "203.0.113.5"),
    ],
)
def test_client_address_behind_trusted_proxies(
    peer_address: str, forwarded: list[str], expected: str
) -> None:
    assert PROXIES.client(peer_address, forwarded) == expected


def test_client_ip_reads_the_request(app: FastAPI) -> None:
    def request(peer_address: str, *forwarded: str) -> Request:
        headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
        scope = {"type": "http", "headers": headers, "client": (peer_address, 1), "app": app}
        return Request(scope)

    # The shared app trusts no proxy: the peer, whatever the header says.
    assert client_ip(request("192.0.2.1", "203.0.113.5")) == "192.0.2.1"
    assert ip_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert ip_key("203.0.113.5") == "203.0.113.5"


async def test_limits_count_the_forwarded_client(make_app: MakeApp, peer: Peer) -> None:
    proxy = "192.0.2.10"
    app = await make_app(
        trusted_proxies=f"{proxy}, 10.0.0.0/8",
        rate_limit_default="100/minute",
        rate_limit_default_per_ip="2/minute",
    )
    through_proxy, direct = peer(app, proxy), peer(app, "198.51.100.20")
    client, other = "203.0.113.77", "203.0.113.78"

    def via(*hops: str) -> dict[str, str]:
        return {"X-Forwarded-For": ", ".join(hops)}

    assert (await through_proxy.get(MOVIES, headers=via(client))).status_code == 200
    # A made-up leftmost entry does not give the client a fresh window.
    assert (await through_proxy.get(MOVIES, headers=via("1.1.1.1", client))).status_code == 200
    assert_limited(await through_proxy.get(MOVIES, headers=via("8.8.8.8", client, "10.0.0.3")))
    # Another customer behind the same proxy has a window of their own.
    assert (await through_proxy.get(MOVIES, headers=via(other))).status_code == 200
    # A peer that is no trusted proxy is counted as itself, whatever it forwards.
    assert (await direct.get(MOVIES, headers=via("203.0.113.200"))).status_code == 200
    assert (await direct.get(MOVIES, headers=via("203.0.113.201"))).status_code == 200
    assert_limited(await direct.get(MOVIES, headers=via("203.0.113.202")))
