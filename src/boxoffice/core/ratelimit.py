"""Rate limits: per caller and per client IP, kept in memory or, with Redis configured, in Redis
so that every server process counts against the same windows.

Two kinds, every limit a setting (`BOXOFFICE_RATE_LIMIT_*`, see config.py):

* The general limit on every `/api` request (`GeneralLimitMiddleware`, pure ASGI): per signed-in
  caller and per client IP, anonymous callers by IP only. It runs on every request, so it is a
  token bucket (GCRA: one number per key, one Redis round trip for both keys) and reads
  nothing but the bearer token's already verified claims. "300/minute" allows a burst of 300
  and then 5 a second. Staff (cashier, operator, admin) are exempt: a till sells for many
  people. The payment webhooks (providers retry) and /healthz, /readyz, /metrics are never
  limited.
* Stricter limits on the routes worth guessing at or flooding (login, registration, password
  reset, email verification, MFA, promo lookups, seat holds), a dependency each:
  `@router.post(..., dependencies=[Depends(limited("login", key="email"))])`. These are exact
  moving windows (no burst of twice the limit at a window's edge) counted per caller, or per
  submitted email address, and per client IP.

A full window answers 429 `rate_limited` with `Retry-After` (and `retryAfter` in the body).
`BOXOFFICE_RATE_LIMIT_ENABLED=false` turns every limit off. When Redis is configured but does
not answer, limits fail open: requests pass, a warning is logged now and then, and Redis is
tried again a few seconds later.

The client IP (`client_ip`) is the ASGI peer address, unless the peer is one of
`BOXOFFICE_TRUSTED_PROXIES` (IPs or CIDRs): then X-Forwarded-For is read from the right, each
trusted hop skipped, and the first address that is not a trusted proxy is the client's. The
leftmost entries are whatever the client sent and are never believed on their own. A
malformed header counts as absent (the peer is the client). IPv6 clients are counted by /64,
the block one subscriber usually holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from boxoffice.config import Settings
from boxoffice.core.errors import BoxofficeError, problem_response
from boxoffice.core.security import AccessClaims

log = structlog.get_logger(__name__)

KEY_PREFIX = "boxoffice:ratelimit"
STAFF_ROLES = frozenset({"cashier", "operator", "admin"})
# Paths never limited: providers retry their webhooks until they are answered.
UNLIMITED_PREFIXES = ("/api/payments/webhook/",)
# A storage call slower than this counts as Redis being down (the request passes).
STORAGE_TIMEOUT_SECONDS = 1.0
# After a failure, Redis is left alone this long (requests pass without a round trip).
OUTAGE_BACKOFF_SECONDS = 5.0
# At most one warning per this many seconds while Redis is down.
OUTAGE_LOG_INTERVAL_SECONDS = 60.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RateLimited(BoxofficeError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, wait: int) -> None:
        super().__init__(
            f"Too many requests; try again in {wait} seconds.",
            headers={"Retry-After": str(wait)},
            retryAfter=wait,
        )


@dataclass(frozen=True)
class Policy:
    """One named limit: a window per caller (or per submitted email) and one per client IP;
    None where the settings leave that window out."""

    per_key: RateLimitItem | None
    per_ip: RateLimitItem | None

    @classmethod
    def of(cls, per_key: str | None, per_ip: str | None) -> Policy:
        return cls(parse(per_key) if per_key else None, parse(per_ip) if per_ip else None)


def policies_from(settings: Settings) -> dict[str, Policy]:
    """The stricter limits by scope name, from the settings."""
    s = settings
    return {
        "login": Policy.of(s.rate_limit_login_per_email, s.rate_limit_login_per_ip),
        "register": Policy.of(None, s.rate_limit_register_per_ip),
        "password": Policy.of(s.rate_limit_password_per_email, s.rate_limit_password_per_ip),
        "email-verification": Policy.of(
            s.rate_limit_email_verification, s.rate_limit_email_verification_per_ip
        ),
        "mfa": Policy.of(s.rate_limit_mfa, s.rate_limit_mfa_per_ip),
        "promo-check": Policy.of(s.rate_limit_promo_check, s.rate_limit_promo_check_per_ip),
        "holds": Policy.of(s.rate_limit_holds, s.rate_limit_holds_per_ip),
    }


class _Outage:
    """Fail open while the storage is unreachable: skip it for a few seconds after a failure,
    and warn at most once a minute rather than once per request."""

    def __init__(self) -> None:
        self._skip_until = 0.0
        self._next_log = 0.0

    @property
    def ongoing(self) -> bool:
        return self._skip_until > time.monotonic()

    def record(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._skip_until = now + OUTAGE_BACKOFF_SECONDS
        if now >= self._next_log:
            self._next_log = now + OUTAGE_LOG_INTERVAL_SECONDS
            log.warning(
                "rate_limit_storage_unavailable",
                error=f"{type(exc).__name__}: {exc}",
                detail="requests pass unlimited until it answers again",
            )


# ---------------------------------------------------------------------------------------------
# The general limit: a token bucket (GCRA) per key. Each key holds its "theoretical arrival
# time" (TAT): a request is allowed when, after adding one interval (period / limit), the TAT
# is at most one period ahead of now. All of a request's keys are checked before any is
# counted, so a refused request costs nothing.
#
# Times are whole microseconds, exact in integers (Python) and in Lua's doubles (below 2^53):
# in floating seconds the last token of a full bucket sat exactly on the boundary, and where
# `now + period` rounded up (a clock just below a power of two: a server up ~68 minutes, ~2.3
# hours, ...) the bucket refused it. The interval is rounded down, so `limit` intervals never
# exceed the period.

_GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat + interval
  if tats[i] - now > period then wait = math.max(wait, tats[i] - period - now) end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000))
end
return 0
"""

MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class Bucket:
    """A token bucket of `limit` requests refilling over `period` seconds."""

    limit: int
    period: float

    @classmethod
    def parse(cls, value: str) -> Bucket | None:
        if not value:
            return None
        item = parse(value)
        return cls(item.amount, float(item.get_expiry()))

    @property
    def period_us(self) -> int:
        return round(self.period * MICROSECONDS)

    @property
    def interval_us(self) -> int:
        return self.period_us // self.limit


class _MemoryBuckets:
    """Buckets of one process: a dict of TATs (microseconds of `clock`), swept of full buckets
    once a minute."""

    SWEEP_US = 60 * MICROSECONDS

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock  # nanoseconds
        self._tats: dict[str, int] = {}
        self._next_sweep = 0

    def hit(self, windows: Sequence[tuple[Bucket, str]]) -> float:
        """Seconds to wait, 0 when every bucket had a token (then taken)."""
        now = self._clock() // 1000
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_US
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        wait = 0
        tats: list[int] = []
        for bucket, key in windows:
            tat = max(self._tats.get(key, now), now) + bucket.interval_us
            tats.append(tat)
            wait = max(wait, tat - bucket.period_us - now)
        if wait > 0:
            return wait / MICROSECONDS
        for (_, key), tat in zip(windows, tats, strict=True):
            self._tats[key] = tat
        return 0.0

    def clear(self) -> None:
        self._tats.clear()


class _RedisBuckets:
    """Buckets shared by every process: one script call per request, timed by Redis's clock."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_GCRA_SCRIPT)

    async def hit(self, windows: Sequence[tuple[Bucket, str]]) -> float:
        # "gcra", not the earlier "general" whose TATs were float milliseconds: processes of
        # both versions during a rolling upgrade each read only their own unit.
        keys = [f"{KEY_PREFIX}:gcra:{key}" for _, key in windows]
        args: list[int] = []
        for bucket, _ in windows:
            args += [bucket.interval_us, bucket.period_us]
        wait_us = await self._script(keys=keys, args=args)
        return int(wait_us) / MICROSECONDS


@dataclass(frozen=True)
class GeneralLimit:
    per_user: Bucket | None
    per_ip: Bucket | None

    @classmethod
    def from_settings(cls, settings: Settings) -> GeneralLimit:
        return cls(
            Bucket.parse(settings.rate_limit_default),
            Bucket.parse(settings.rate_limit_default_per_ip),
        )


# ---------------------------------------------------------------------------------------------


class RateLimiter:
    """An app's limits: moving-window counters over a `limits` storage for the stricter limits,
    token buckets for the general one, both in memory or both in Redis."""

    def __init__(
        self,
        storage: Storage,
        *,
        enabled: bool = True,
        policies: dict[str, Policy] | None = None,
        general: GeneralLimit | None = None,
        redis: Redis | None = None,
    ) -> None:
        self.storage = storage
        self.enabled = enabled
        self.policies = policies or {}
        self.general = general or GeneralLimit(None, None)
        self._buckets: _MemoryBuckets | _RedisBuckets = (
            _RedisBuckets(redis) if redis is not None else _MemoryBuckets()
        )
        self._strategy = MovingWindowRateLimiter(storage)
        base = storage.base_exceptions
        self._storage_errors: tuple[type[BaseException], ...] = (
            StorageError,
            RedisError,
            OSError,
            TimeoutError,
            *(base if isinstance(base, tuple) else (base,)),
        )
        self._outage = _Outage()

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> RateLimiter:
        """In memory by default; in Redis when `redis_url` is set, on the app's own connection
        pool when one is given (so the app's shutdown closes it)."""
        options: dict[str, Any] = {
            "enabled": settings.rate_limit_enabled,
            "policies": policies_from(settings),
            "general": GeneralLimit.from_settings(settings),
        }
        if not settings.redis_url:
            return cls(MemoryStorage(), **options)
        storage_options: dict[str, Any] = {}
        if redis is not None:
            storage_options["connection_pool"] = redis.connection_pool
        else:
            redis = Redis.from_url(settings.redis_url)
        storage = RedisStorage(
            _async_uri(settings.redis_url),
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            **storage_options,
        )
        return cls(storage, redis=redis, **options)

    @classmethod
    def of(cls, request: HTTPConnection) -> RateLimiter:
        """The app's limiter, built from its settings on first use."""
        return cls.of_state(request.app.state)

    @classmethod
    def of_state(cls, state: Any) -> RateLimiter:
        limiter: RateLimiter | None = getattr(state, "rate_limiter", None)
        if limiter is None:
            limiter = cls.from_settings(state.settings, getattr(state, "redis", None))
            state.rate_limiter = limiter
        return limiter

    async def hit(self, item: RateLimitItem, *identifiers: str) -> int | None:
        """Count one request in the moving window named by `identifiers`: None if it fits (or
        the storage is down), else the whole seconds until the window has room (at least 1)."""
        if self._outage.ongoing:
            return None
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
                if await self._strategy.hit(item, *identifiers):
                    return None
                stats = await self._strategy.get_window_stats(item, *identifiers)
        except self._storage_errors as exc:
            # Limits protect, they do not decide correctness: an unreachable Redis must not
            # take the routes behind them down with it.
            self._outage.record(exc)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit_general(self, windows: Sequence[tuple[Bucket, str]]) -> int | None:
        """Take one token from each bucket, or from none: None when all had one (or the storage
        is down), else the whole seconds until they do."""
        buckets = self._buckets
        if isinstance(buckets, _MemoryBuckets):  # nothing to wait for, nothing to fail
            wait = buckets.hit(windows)
        elif self._outage.ongoing:
            return None
        else:
            try:
                async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
                    wait = await buckets.hit(windows)
            except self._storage_errors as exc:
                self._outage.record(exc)
                return None
        return max(1, math.ceil(wait)) if wait > 0 else None

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        await self._strategy.clear(item, *identifiers)

    async def reset(self) -> None:
        """Forget every window of this limiter (tests; in Redis: every process's)."""
        await self.storage.reset()
        if isinstance(self._buckets, _MemoryBuckets):
            self._buckets.clear()


# ---------------------------------------------------------------------------------------------
# The stricter limits, as route dependencies


async def _check_windows(
    request: Request, scope: str, windows: Iterable[tuple[RateLimitItem | None, str, str]]
) -> None:
    limiter = RateLimiter.of(request)
    for item, kind, key in windows:
        if item is None:
            continue
        wait = await limiter.hit(item, scope, kind, key)
        if wait is not None:
            raise RateLimited(wait)


def limited(
    scope: str, *, key: Literal["caller", "email"] = "caller", staff_exempt: bool = False
) -> Callable[[Request], Awaitable[None]]:
    """A dependency applying the settings' limit named `scope` (see `policies_from`): per
    signed-in caller, or per the `email` of the JSON body with `key="email"`, and per client
    IP. Anonymous callers (and bodies without an email) count against their IP only."""

    async def dependency(request: Request) -> None:
        limiter = RateLimiter.of(request)
        if not limiter.enabled:
            return
        policy = limiter.policies[scope]
        claims = _claims(request)
        if staff_exempt and claims is not None and claims.role in STAFF_ROLES:
            return
        if key == "email":
            email = await _submitted_email(request)
            kind, ident = "email", (_email_key(email) if email else None)
        else:
            kind, ident = "user", (str(claims.user_id) if claims is not None else None)
        windows: list[tuple[RateLimitItem | None, str, str]] = []
        if ident is not None:
            windows.append((policy.per_key, kind, ident))
        address = counted_ip(client_ip(request))
        if address is not None:
            windows.append((policy.per_ip, "ip", address))
        await _check_windows(request, scope, windows)

    dependency.__name__ = f"rate_limit_{scope.replace('-', '_')}"
    return dependency


def rate_limit(
    scope: str, limit: str, *, per_ip: str | None = None
) -> Callable[[Request], Awaitable[None]]:
    """A dependency allowing a fixed `limit` (e.g. "10/minute") per signed-in caller and
    `per_ip` (default: the same) per client IP, for routes sharing the window name `scope`.
    Prefer `limited` with a setting for anything an operator may want to tune."""
    per_user_item = parse(limit)
    per_ip_item = parse(per_ip) if per_ip else per_user_item

    async def dependency(request: Request) -> None:
        if not RateLimiter.of(request).enabled:
            return
        claims = _claims(request)
        windows: list[tuple[RateLimitItem | None, str, str]] = []
        if claims is not None:
            windows.append((per_user_item, "user", str(claims.user_id)))
        address = counted_ip(client_ip(request))
        if address is not None:
            windows.append((per_ip_item, "ip", address))
        await _check_windows(request, scope, windows)

    dependency.__name__ = f"rate_limit_{scope.replace('-', '_')}"
    return dependency


async def _submitted_email(request: Request) -> str | None:
    """The `email` of the JSON body (already read and cached by the framework), normalised."""
    try:
        body = await request.json()
    except ValueError:
        return None
    email = body.get("email") if isinstance(body, dict) else None
    return email.strip().lower() if isinstance(email, str) and email.strip() else None


def _email_key(email: str) -> str:
    """Addresses are keyed by digest: the limiter's store (Redis) holds no personal data."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# The general limit, as middleware


class GeneralLimitMiddleware:
    """The general limit on every `/api` request but the webhooks. Pure ASGI on the raw scope
    (no request objects): a header scan, a dict lookup for the token's claims and one bucket
    update, in memory or one Redis round trip."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith("/api/") or path.startswith(UNLIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        limiter = RateLimiter.of_state(state)
        general = limiter.general
        windows: list[tuple[Bucket, str]] = []
        if limiter.enabled:
            claims = _scope_claims(scope, state)
            if claims is not None:
                if claims.role in STAFF_ROLES:
                    await self.app(scope, receive, send)
                    return
                if general.per_user is not None:
                    windows.append((general.per_user, f"user:{claims.user_id}"))
            if general.per_ip is not None:
                address = counted_ip(_scope_client_ip(scope, TrustedProxies.of_state(state)))
                if address is not None:
                    windows.append((general.per_ip, f"ip:{address}"))
        wait = await limiter.hit_general(windows) if windows else None
        if wait is None:
            await self.app(scope, receive, send)
            return
        error = RateLimited(wait)
        response = problem_response(
            Request(scope),
            error.status,
            error.code,
            error.detail,
            title=error.title,
            headers=error.headers,
            **error.extra,
        )
        await response(scope, receive, send)


# ---------------------------------------------------------------------------------------------
# Callers


def _claims(connection: HTTPConnection) -> AccessClaims | None:
    return _scope_claims(connection.scope, connection.app.state)


def _scope_claims(scope: Scope, state: Any) -> AccessClaims | None:
    """The verified claims of a valid bearer token, without a database read (an invalid token
    counts as anonymous; the route's own authentication answers it)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return None
            claims: AccessClaims | None = state.access_tokens.claims(token.strip())
            return claims
    return None


def _caller_id(request: HTTPConnection) -> str | None:
    claims = _claims(request)
    return str(claims.user_id) if claims is not None else None


class TrustedProxies:
    """The networks of `BOXOFFICE_TRUSTED_PROXIES`, parsed once per app."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in entries
        )

    @classmethod
    def of_state(cls, state: Any) -> TrustedProxies:
        proxies: TrustedProxies | None = getattr(state, "trusted_proxies", None)
        if proxies is None:
            proxies = cls(state.settings.trusted_proxies)
            state.trusted_proxies = proxies
        return proxies

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client's address given the peer and the X-Forwarded-For header values."""
        peer_address = _parse_address(peer)
        if peer_address is None or not self.trusts(peer_address):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        client: Address | None = None
        for hop in reversed(hops):
            address = _parse_address(hop)
            if address is None:
                return peer  # malformed: believe none of it
            client = address
            if not self.trusts(address):
                break
        # Every hop trusted: the leftmost, added by a trusted proxy, is the client.
        return str(client) if client is not None else peer


def client_ip(request: HTTPConnection) -> str:
    """The client's IP address: the peer's, or behind trusted proxies the one they forwarded."""
    return _scope_client_ip(request.scope, TrustedProxies.of_state(request.app.state))


def _scope_client_ip(scope: Scope, proxies: TrustedProxies) -> str:
    client = scope.get("client")
    peer: str = client[0] if client else "unknown"
    if not proxies.networks:
        return peer
    forwarded = [
        value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"
    ]
    return proxies.client(peer, forwarded)


def is_loopback(address: str) -> bool:
    parsed = _parse_address(address)
    return parsed is not None and parsed.is_loopback


def counted_ip(address: str) -> str | None:
    """The per-IP window key of a client address, or None for a loopback peer: that is this
    machine itself (its own scripts, tests, a till on the server) or a reverse proxy on it
    whose clients cannot be told apart until BOXOFFICE_TRUSTED_PROXIES names it. Counting
    them as one client would refuse every customer at once; their per-user and per-email
    windows still count."""
    return None if is_loopback(address) else ip_key(address)


def ip_key(address: str) -> str:
    """The window key of an address: itself, or for IPv6 its /64."""
    if ":" not in address:
        return address
    try:
        network = ipaddress.IPv6Network((address, 64), strict=False)
    except ValueError:
        return address
    return str(network)


def _parse_address(value: str) -> Address | None:
    """An IP address, also with a port ("1.2.3.4:80", "[::1]:80"); IPv4-mapped IPv6 as IPv4."""
    value = value.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _async_uri(url: str) -> str:
    """`redis://`, `rediss://` or `unix://` as the URI scheme `limits` wants for asyncio."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return url if url.startswith("async+") else f"async+{url}"
