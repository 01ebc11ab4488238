"""Pure ASGI middleware: request id, access log, Prometheus metrics, security headers, body
size limit, last-resort 500 answer."""

from __future__ import annotations

import random
import re
import time

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from boxoffice.core.errors import problem_response
from boxoffice.core.hardening import Hardening, docs_csp

log = structlog.get_logger("boxoffice.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "boxoffice_http_requests_total",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "boxoffice_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ("method", "route"),
            registry=registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class RequestContextMiddleware:
    """Request id, access log and metrics; with `hardening`, security headers and a body limit.

    One layer does all of it: every middleware layer costs on each request."""

    def __init__(
        self, app: ASGIApp, metrics: HttpMetrics, hardening: Hardening | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.hardening = hardening

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming_id, authenticated = _scan_headers(scope)
        # A request id needs to be unique, not secret: no urandom system call per request.
        request_id = incoming_id or f"{random.getrandbits(128):032x}"
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        hardening = self.hardening
        path: str = scope.get("path", "")
        # Answers to authenticated requests and token endpoints must not be cached.
        no_store = authenticated or path.startswith("/api/auth/")
        overflow = [False]  # the body outgrew the limit: the app's answer is replaced by a 413
        docs_page = hardening is not None and path in hardening.docs_paths
        held: list[Message] = []

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if overflow[0]:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
                if hardening is not None:
                    hardening.add_headers(message, no_store=no_store)
                    if docs_page:
                        held.append(message)
                        return
            elif held:
                held.append(message)
                if message.get("more_body", False):
                    return
                await _send_docs_page(held, send)
                return
            await send(message)

        app_receive = receive
        if hardening is not None and hardening.has_body(scope):
            if hardening.declared_too_large(scope):
                overflow[0] = True  # refused before reading a byte
            else:
                app_receive = hardening.limited(receive, overflow)
        try:
            try:
                if not overflow[0]:
                    await self.app(scope, app_receive, send_with_id)
            except Exception:
                if not overflow[0]:  # else the body limit's own exception came through
                    log.exception("unhandled_error", path=path)
                    status = 500
                    if not response_started:
                        await _problem(scope, send_with_id, request_id, 500, "internal_error")
            if overflow[0] and hardening is not None:
                overflow[0] = False  # let our answer through
                await _problem(
                    scope,
                    send_with_id,
                    request_id,
                    413,
                    "body_too_large",
                    f"The request body is larger than {hardening.max_body_bytes} bytes.",
                )
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            log.info(
                "request",
                method=method,
                path=path,
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()


async def _problem(
    scope: Scope,
    send: Send,
    request_id: str,
    status: int,
    code: str,
    detail: str = "An unexpected error occurred.",
) -> None:
    response = problem_response(None, status, code, detail, requestId=request_id)
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


async def _send_docs_page(messages: list[Message], send: Send) -> None:
    """A documentation page, with a CSP that allows its own inline scripts by hash."""
    start, *bodies = messages
    html = b"".join(message.get("body", b"") for message in bodies)
    MutableHeaders(scope=start)["Content-Security-Policy"] = docs_csp(html)
    await send(start)
    await send({"type": "http.response.body", "body": html, "more_body": False})


def _scan_headers(scope: Scope) -> tuple[str | None, bool]:
    """The client's request id (if well-formed) and whether it sent credentials."""
    request_id: str | None = None
    authenticated = False
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            request_id = candidate if _REQUEST_ID.match(candidate) else None
        elif name == b"authorization":
            authenticated = True
    return request_id, authenticated
