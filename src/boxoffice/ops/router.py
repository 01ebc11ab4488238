"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

router = APIRouter(tags=["operations"])
READY_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database (and Redis, if configured) answer",
    responses={503: {"description": "a dependency is unreachable"}},
)
async def readyz(request: Request) -> JSONResponse:
    checks: dict[str, Any] = {}
    checks["database"] = await _check(request.app.state.db.ping())
    redis = getattr(request.app.state, "redis", None)
    if redis is not None:
        checks["redis"] = await _check(redis.ping())
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


async def _check(awaitable: Any) -> str:
    """`ok`, or the error's class and its root cause's (`error: DatabaseUnavailable
    (ConnectionRefusedError)`): enough for an operator, no addresses or messages leaked."""
    try:
        await asyncio.wait_for(awaitable, READY_TIMEOUT_SECONDS)
    except Exception as exc:
        root: BaseException = exc
        while root.__cause__ is not None:
            root = root.__cause__
        cause = f" ({type(root).__name__})" if root is not exc else ""
        return f"error: {type(exc).__name__}{cause}"
    return "ok"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several server processes: add up what each process wrote to the shared directory.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
