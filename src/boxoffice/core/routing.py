"""A route class that re-runs a request whose transaction lost a deadlock or serialisation race.

The database aborted the whole transaction, so nothing was stored and no after-commit work
ran: running the handler again (with a fresh session) is safe. The request body is cached by
the framework, so it can be read again.

Each attempt gets its own stack for function-scoped dependencies (the session), closed before
the next attempt starts: the failed attempt's session is rolled back and its connection given
back first. Otherwise it stays open until the request ends, holding its connection and, when
the deadlock hit inside a savepoint, the row locks taken before it, which the retry then
waits for forever.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import Response

from boxoffice.core.errors import is_retryable

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = 4


class RetryingRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def retrying_handler(request: Request) -> Response:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    # Closing the stack commits (or rolls back) the attempt's session.
                    async with AsyncExitStack() as function_stack:
                        request.scope["fastapi_function_astack"] = function_stack
                        return await handler(request)
                except DBAPIError as exc:
                    if attempt == MAX_ATTEMPTS or not is_retryable(exc):
                        raise
                    log.info("transaction_retry", attempt=attempt, path=request.url.path)
                    await asyncio.sleep(random.uniform(0.005, 0.03) * attempt)
            raise AssertionError("unreachable")

        return retrying_handler


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Put the routers' routes straight into the app's route table.

    `include_router` wraps each router in a lazily matched layer that re-matches its routes on
    every request; measured here it took about 40% of the CPU of a trivial request. Our routers
    carry their full path prefix and no router-level options (dependencies, prefixes added at
    include time), so their finished routes can join the app's table as they are.
    """
    for router in routers:
        if router.dependencies:
            raise ValueError("router-level dependencies need include_router")
        app.router.routes.extend(router.routes)
