"""Domain errors and their RFC 9457 problem+json answers.

Every error a client can see is a problem document with a stable machine-readable `code`.
Features define their own subclasses in `<feature>/exceptions.py`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = structlog.get_logger(__name__)


class BoxofficeError(Exception):
    """Base of all domain errors: carries the HTTP status, a stable code and extra fields."""

    status: int = 400
    code: str = "bad_request"
    title: str | None = None
    # Keep the transaction's writes although the request fails (e.g. revoking a token family).
    commit: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.detail = detail or self.title or HTTPStatus(self.status).phrase
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)


class BadRequest(BoxofficeError):
    status = 400
    code = "bad_request"


class NotAuthenticated(BoxofficeError):
    status = 401
    code = "not_authenticated"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(BoxofficeError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(BoxofficeError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(BoxofficeError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Gone(BoxofficeError):
    status = 410
    code = "gone"


class Unprocessable(BoxofficeError):
    status = 422
    code = "validation_error"
    title = "Invalid input"


class ServiceUnavailable(BoxofficeError):
    status = 503
    code = "service_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    title = "Database unavailable"


def database_unreachable(exc: BaseException) -> DatabaseUnavailable:
    """What a failed connect answers: 503, not 500. It changed nothing, so the client may
    simply try again."""
    log.warning("database_connect_failed", error=f"{type(exc).__name__}: {exc}"[:300])
    return DatabaseUnavailable(
        "The database is not reachable; try again shortly.", headers={"Retry-After": "2"}
    )


def problem_response(
    request: Request | None,
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:boxoffice:problem:{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["requestId"] = request_id
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BoxofficeError)
    return problem_response(
        request,
        exc.status,
        exc.code,
        exc.detail,
        title=exc.title,
        headers=exc.headers,
        **exc.extra,
    )


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return problem_response(
            request, 400, "malformed_json", "The request body is not valid JSON."
        )
    items = [
        {
            "field": _location(tuple(err.get("loc", ()))),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in errors
    ]
    first = items[0] if items else {"field": "body", "message": "invalid"}
    return problem_response(
        request,
        422,
        "validation_error",
        f"{first['field']}: {first['message']}",
        title="Invalid input",
        errors=items,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No resource at {request.url.path}"
    return problem_response(
        request,
        exc.status_code,
        _HTTP_CODES.get(exc.status_code, "http_error"),
        detail,
        headers=dict(exc.headers or {}),
    )


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # A unique or foreign-key race the service did not foresee: a conflict, never a 500.
    log.warning("integrity_conflict", error=str(getattr(exc, "orig", exc))[:300])
    return problem_response(
        request, 409, "conflict", "The change conflicts with the current state; try again."
    )


# PostgreSQL SQLSTATEs and MySQL/MariaDB error numbers that mean "lost a race, try again".
_PG_RETRYABLE = {"40001", "40P01"}
_MYSQL_RETRYABLE = {1213, 1205}

# Unique keys whose values are drawn at random (a booking's reference): a duplicate is bad
# luck, not a conflict, and the request run again draws another value. Named as the backends
# report them: PostgreSQL and MariaDB by constraint, SQLite by table.column.
_RANDOM_UNIQUE_KEYS: set[str] = set()


def retry_on_duplicate(*keys: str) -> None:
    """A duplicate of one of these keys makes the transaction retryable (`is_retryable`)."""
    _RANDOM_UNIQUE_KEYS.update(keys)


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialisation failure, or a duplicate of a randomly drawn key
    (`retry_on_duplicate`): the transaction was rolled back and may be re-run.

    InnoDB rolls back the whole transaction on a deadlock, savepoints included; when the
    deadlock hit inside a savepoint, what surfaces is the failed `ROLLBACK TO SAVEPOINT`
    (1305), with the deadlock as its context. That is retryable too."""
    seen: BaseException | None = exc
    for _ in range(5):  # the deadlock is at most a few links down the chain
        if seen is None:
            return False
        if isinstance(seen, DBAPIError) and _is_conflict(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_conflict(exc: DBAPIError) -> bool:
    orig = exc.orig
    if isinstance(exc, IntegrityError):
        message = str(orig)
        return any(key in message for key in _RANDOM_UNIQUE_KEYS)
    if getattr(orig, "sqlstate", None) in _PG_RETRYABLE:
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] in _MYSQL_RETRYABLE


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if is_retryable(exc):
        log.warning("transaction_conflict_gave_up", error=str(exc.orig)[:300])
        return problem_response(
            request,
            503,
            "try_again",
            "The server is busy with conflicting changes; try again.",
            headers={"Retry-After": "1"},
        )
    if exc.connection_invalidated or _looks_unavailable(exc):
        log.error("database_unavailable", error=str(exc.orig)[:300])
        return problem_response(
            request,
            503,
            "service_unavailable",
            "The database is not reachable; try again shortly.",
            headers={"Retry-After": "2"},
        )
    log.exception("database_error")
    return problem_response(request, 500, "internal_error", "An unexpected error occurred.")


async def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    """Every pooled connection stayed busy for the pool timeout: overload, not a bug."""
    log.warning("database_pool_timeout", error=str(exc)[:300])
    return problem_response(
        request,
        503,
        "service_unavailable",
        "The server is overloaded; try again shortly.",
        headers={"Retry-After": "2"},
    )


def _looks_unavailable(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(
        marker in text
        for marker in (
            "connection",
            "closed",
            "terminat",
            "shutdown",
            "database is locked",
            "too many clients",
        )
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BoxofficeError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
