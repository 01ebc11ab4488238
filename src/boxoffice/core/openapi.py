"""The problem answers in the OpenAPI document, documented once for every operation.

Any route can answer with the problems of `core.errors` (bad input, authentication, not
found, conflicts, rate limits, body size, a bug); routes only name their specific codes in
`responses=` descriptions. This fills in the rest and gives every 4xx/5xx answer the
`application/problem+json` Problem schema (FastAPI would document 422 as its own shape).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from boxoffice.core.errors import PROBLEM_MEDIA_TYPE

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `code` is stable and machine-readable.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "example": "urn:boxoffice:problem:not_found"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "example": "not_found"},
        "instance": {"type": "string"},
        "requestId": {"type": "string"},
        "errors": {
            "description": "Validation errors (422), one per invalid field.",
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}
_PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string"},
    }
}

# Answered by any operation: what the status means here.
_COMMON: dict[int, str] = {
    400: "Bad input (e.g. `malformed_json`).",
    401: "Not authenticated, or the credentials are invalid.",
    403: "Authenticated but not allowed.",
    404: "Unknown, or not yours.",
    409: "Conflicts with the current state.",
    410: "Gone (e.g. an expired hold).",
    422: "Invalid input (`validation_error` with `errors`).",
    429: "Rate limited; see `Retry-After`.",
    500: "A bug: `internal_error`, without internals.",
    503: "A dependency is unreachable or busy; see `Retry-After`.",
}
_WITH_BODY: dict[int, str] = {413: "The request body is too large (`body_too_large`)."}
_BODY_METHODS = {"post", "put", "patch", "delete"}


def _problem(status: int, description: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": _PROBLEM_CONTENT}
    if status in (429, 503):
        answer["headers"] = _RETRY_AFTER
    return answer


def add_problem_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Document the problem answers of every operation of an OpenAPI document (in place)."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = _PROBLEM_SCHEMA
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            # The route's own descriptions of its error codes stay; the body is a Problem.
            for code, answer in responses.items():
                if code[:1] in ("4", "5"):
                    answer["content"] = _PROBLEM_CONTENT
                    if code in ("429", "503"):
                        answer.setdefault("headers", _RETRY_AFTER)
            common = {**_COMMON, **(_WITH_BODY if method in _BODY_METHODS else {})}
            for status, description in common.items():
                responses.setdefault(str(status), _problem(status, description))
            operation["responses"] = dict(sorted(responses.items()))
    # FastAPI's own 422 shapes are no longer referenced.
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    return schema


def install_problem_responses(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) document the problem answers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_problem_responses(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
