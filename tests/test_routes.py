"""The route table: no two routes answer the same request, so their order is free to choose
for speed (the onsale's routes come first, see boxoffice.app)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.routing import Route

SAMPLE_UUID = "3f2c9a4e-1b7d-4c55-9e0a-6d8f2b1c7e90"


def _a_request_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", SAMPLE_UUID, path)


def test_no_two_routes_match_the_same_method_and_path(app: FastAPI) -> None:
    routes = [r for r in app.router.routes if isinstance(r, Route) and r.methods]
    overlaps = [
        (first.path, second.path, sorted(first.methods & second.methods))
        for first in routes
        for second in routes
        if first is not second
        and first.methods & second.methods
        and first.path_regex.match(_a_request_path(second.path))
    ]
    assert overlaps == []
    assert len(routes) > 100  # the whole table was looked at


def test_the_onsale_routes_come_first(app: FastAPI) -> None:
    paths = [getattr(r, "path", "") for r in app.router.routes[:25]]
    assert "/api/showtimes/{showtime_id}/seats" in paths
    assert "/api/bookings/lock-seats" in paths
    assert "/api/bookings/lock-seats/{lock_token}" in paths
