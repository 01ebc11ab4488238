"""Rate limits: a moving window per caller, kept in memory or, with Redis configured, in Redis
so that every server process counts against the same windows.

Routes opt in with a dependency, e.g.
`@router.post(..., dependencies=[Depends(rate_limit("promo-check", "10/minute"))])`.
Each request counts against the signed-in caller's window (when the bearer token is valid)
and against the client IP's window; a full window answers 429 `rate_limited` with
`Retry-After`. `BOXOFFICE_RATE_LIMIT_ENABLED=false` turns every limit off.

The client IP is the ASGI peer address. Behind a reverse proxy, run uvicorn with
`--proxy-headers --forwarded-allow-ips=<proxy>` so that it is the real client's address.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from starlette.requests import Request

from boxoffice.config import Settings
from boxoffice.core.errors import BoxofficeError

log = structlog.get_logger(__name__)

KEY_PREFIX = "boxoffice:ratelimit"


class RateLimited(BoxofficeError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class RateLimiter:
    """Moving-window counters (exact: no burst of twice the limit at a window's edge, as a fixed
    window allows) over a `limits` storage."""

    def __init__(self, storage: Storage, *, enabled: bool = True) -> None:
        self.storage = storage
        self.enabled = enabled
        self._strategy = MovingWindowRateLimiter(storage)
        base = storage.base_exceptions
        self._storage_errors: tuple[type[Exception], ...] = (
            StorageError,
            *(base if isinstance(base, tuple) else (base,)),
        )

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> RateLimiter:
        """In memory by default; in Redis when `redis_url` is set, on the app's own connection
        pool when one is given (so the app's shutdown closes it)."""
        if not settings.redis_url:
            return cls(MemoryStorage(), enabled=settings.rate_limit_enabled)
        options: dict[str, Any] = {}
        if redis is not None:
            options["connection_pool"] = redis.connection_pool
        storage = RedisStorage(
            _async_uri(settings.redis_url),
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            **options,
        )
        return cls(storage, enabled=settings.rate_limit_enabled)

    @classmethod
    def of(cls, request: Request) -> RateLimiter:
        """The app's limiter, built from its settings on first use."""
        state = request.app.state
        limiter: RateLimiter | None = getattr(state, "rate_limiter", None)
        if limiter is None:
            limiter = cls.from_settings(state.settings, getattr(state, "redis", None))
            state.rate_limiter = limiter
        return limiter

    async def hit(self, item: RateLimitItem, *identifiers: str) -> int | None:
        """Count one request in the window named by `identifiers`: None if it fits, else the
        whole seconds until the window has room again (at least 1)."""
        try:
            if await self._strategy.hit(item, *identifiers):
                return None
            stats = await self._strategy.get_window_stats(item, *identifiers)
        except self._storage_errors:
            # Limits protect, they do not decide correctness: an unreachable Redis must not
            # take the routes behind them down with it.
            log.warning("rate_limit_storage_unavailable", exc_info=True)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        await self._strategy.clear(item, *identifiers)


def rate_limit(
    scope: str, limit: str, *, per_ip: str | None = None
) -> Callable[[Request], Awaitable[None]]:
    """A dependency allowing `limit` (e.g. "10/minute") per signed-in caller and `per_ip`
    (default: the same) per client IP, for routes sharing the window name `scope`.

    Anonymous callers count against their IP only. A per-IP limit above the per-user one
    leaves room for customers behind one address (an office, a mobile carrier's NAT) while
    still capping one client that signs in with many accounts.
    """
    per_user_item = parse(limit)
    per_ip_item = parse(per_ip) if per_ip else per_user_item

    async def dependency(request: Request) -> None:
        limiter = RateLimiter.of(request)
        if not limiter.enabled:
            return
        windows: list[tuple[RateLimitItem, str, str]] = []
        user_id = _caller_id(request)
        if user_id is not None:
            windows.append((per_user_item, "user", user_id))
        windows.append((per_ip_item, "ip", client_ip(request)))
        for item, kind, key in windows:
            wait = await limiter.hit(item, scope, kind, key)
            if wait is not None:
                raise RateLimited(
                    f"Too many requests; try again in {wait} seconds.",
                    headers={"Retry-After": str(wait)},
                    retryAfter=wait,
                )

    dependency.__name__ = f"rate_limit_{scope.replace('-', '_')}"
    return dependency


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _caller_id(request: Request) -> str | None:
    """The user id of a valid bearer token, without a database read (an invalid token counts
    as anonymous; the route's own authentication answers it)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    claims = request.app.state.access_tokens.claims(token.strip())
    return str(claims.user_id) if claims is not None else None


def _async_uri(url: str) -> str:
    """`redis://`, `rediss://` or `unix://` as the URI scheme `limits` wants for asyncio."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return url if url.startswith("async+") else f"async+{url}"
