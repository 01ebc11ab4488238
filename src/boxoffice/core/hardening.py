"""HTTP hardening: security headers on every answer and a request body size limit.

Both run inside `RequestContextMiddleware` (no extra middleware layer on the request path):
it asks `Hardening` for the headers of each answer and for a size-checked `receive`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from fastapi import HTTPException
from starlette.types import Message, Receive, Scope

from boxoffice.config import Settings

# API answers are data, never a page: nothing may load, run, or frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The Swagger UI and ReDoc pages FastAPI serves load their scripts and styles from jsDelivr,
# fonts from Google, a favicon from fastapi.tiangolo.com, maybe a validator badge from
# validator.swagger.io; ReDoc starts a worker from a blob and injects <style> tags at run
# time (so inline styles are allowed). Their inline <script>s are allowed by hash only.
_DOCS_CSP = (
    "default-src 'none'; "
    "script-src https://cdn.jsdelivr.net{hashes}; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly "
    "https://validator.swagger.io; "
    "connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body outgrows the limit (FastAPI re-raises it)."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="body_too_large")


def docs_csp(html: bytes) -> str:
    """The CSP for a documentation page: its own inline scripts, by hash, and the CDNs."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return _DOCS_CSP.format(hashes=hashes)


class Hardening:
    """What `RequestContextMiddleware` adds to every exchange, prepared once from settings."""

    def __init__(self, settings: Settings, docs_paths: Iterable[str | None] = ()) -> None:
        self.max_body_bytes = settings.max_body_bytes
        headers = [
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy", API_CSP),
        ]
        if settings.hsts_seconds:
            hsts = f"max-age={settings.hsts_seconds}"
            if settings.hsts_include_subdomains:
                hsts += "; includeSubDomains"
            headers.append(("Strict-Transport-Security", hsts))
        # Raw ASGI pairs: names lowercase, as servers and Starlette's responses give them.
        self.headers = tuple((name.lower().encode(), value.encode()) for name, value in headers)
        self.docs_paths = frozenset(path for path in docs_paths if path)

    def add_headers(self, message: Message, *, no_store: bool) -> None:
        """Add the security headers to a `http.response.start` (routes do not set them).

        Cache-Control is added (no-store) only when the route did not choose its own."""
        headers = message.get("headers") or []
        if not isinstance(headers, list):
            headers = list(headers)
        if no_store:
            for name, _ in headers:
                if name == b"cache-control":
                    break
            else:
                headers.append((b"cache-control", b"no-store"))
        headers.extend(self.headers)
        message["headers"] = headers

    def declared_too_large(self, scope: Scope) -> bool:
        """The request announces a body above the limit (refused before reading it)."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    return int(value) > self.max_body_bytes
                except ValueError:
                    return False  # the server rejects a malformed length itself
        return False

    def has_body(self, scope: Scope) -> bool:
        return scope["method"] in _BODY_METHODS

    def limited(self, receive: Receive, overflow: list[bool]) -> Receive:
        """`receive` that stops a streamed body once it outgrows the limit.

        The caller answers 413 itself: `overflow[0]` tells it the limit was hit."""
        limit = self.max_body_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflow[0] = True
                    raise BodyTooLarge()
            return message

        return limited_receive
