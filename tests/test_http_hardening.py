"""HTTP hardening: CORS, security headers, no-store, the body size limit, 500s and 422s
that reveal nothing, and the problem answers documented in OpenAPI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from boxoffice.app import create_app
from tests.conftest import Backend, make_settings
from tests.helpers import make_user

PROBLEM = "application/problem+json"
MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]
ORIGIN = "https://shop.example"
LOGIN = {"email": "nobody@example.com", "password": "Wrong-Password-123"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


# ---------------------------------------------------------------------------------------------
# Security headers


async def test_every_answer_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/healthz"),
        await client.get("/api/cities"),
        await client.get("/api/no-such-thing"),  # a problem answer too
        await client.get("/openapi.json"),
    ):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        csp = headers["content-security-policy"]
        assert csp.startswith("default-src 'none'")
        assert "frame-ancestors 'none'" in csp
        assert "strict-transport-security" not in headers  # off unless configured


async def test_hsts_when_configured(make_client: MakeClient) -> None:
    http = await make_client(hsts_seconds=31_536_000)
    response = await http.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=31536000"

    http = await make_client(hsts_seconds=600, hsts_include_subdomains=True)
    response = await http.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=600; includeSubDomains"


def _script_hashes(html: str) -> set[str]:
    return {
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    }


async def test_docs_pages_may_load_their_assets(client: httpx.AsyncClient) -> None:
    swagger = await client.get("/docs")
    assert swagger.status_code == 200
    csp = swagger.headers["content-security-policy"]
    # Swagger UI's bundle and CSS come from jsDelivr; its inline start-up script by hash.
    assert "script-src https://cdn.jsdelivr.net" in csp
    assert "https://cdn.jsdelivr.net" in csp.split("style-src", 1)[1].split(";")[0]
    hashes = _script_hashes(swagger.text)
    assert hashes
    assert all(digest in csp for digest in hashes)
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0]
    assert "connect-src 'self'" in csp  # fetches /openapi.json
    assert swagger.headers["x-frame-options"] == "DENY"

    redoc = await client.get("/redoc")
    assert redoc.status_code == 200
    csp = redoc.headers["content-security-policy"]
    assert "https://fonts.googleapis.com" in csp
    assert "font-src https://fonts.gstatic.com" in csp
    assert "worker-src blob:" in csp

    redirect = await client.get("/docs/oauth2-redirect")
    assert all(
        digest in redirect.headers["content-security-policy"]
        for digest in _script_hashes(redirect.text)
    )


# ---------------------------------------------------------------------------------------------
# Cache-Control


async def test_authenticated_answers_and_token_endpoints_are_not_cached(
    client: httpx.AsyncClient, app: Any
) -> None:
    user = await make_user(app)
    me = await client.get("/api/me", headers=user.headers)
    assert me.status_code == 200
    assert me.headers["cache-control"] == "no-store"

    login = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert login.status_code == 200
    assert "accessToken" in login.json()
    assert login.headers["cache-control"] == "no-store"

    refused = await client.post("/api/auth/login", json=LOGIN)
    assert refused.status_code == 401
    assert refused.headers["cache-control"] == "no-store"

    # An anonymous public read may be cached by whoever wants to.
    assert "cache-control" not in (await client.get("/api/cities")).headers


async def test_a_routes_own_cache_control_is_kept(client: httpx.AsyncClient, app: Any) -> None:
    user = await make_user(app)
    response = await client.get("/api/checkin/public-key", headers=user.headers)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=3600"


# ---------------------------------------------------------------------------------------------
# CORS


async def test_no_cors_headers_unless_configured(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/api/bookings",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = await client.get("/api/cities", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_cors_preflight_of_an_allowed_origin(make_client: MakeClient) -> None:
    http = await make_client(cors_origins=[ORIGIN, "https://till.example"])
    preflight = await http.options(
        "/api/bookings",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key", "x-request-id"} <= {
        name.strip() for name in allowed.split(",")
    }
    assert "access-control-allow-credentials" not in preflight.headers  # off by default
    assert preflight.headers["x-content-type-options"] == "nosniff"

    response = await http.get("/api/cities", headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


async def test_cors_preflight_of_another_origin_is_refused(make_client: MakeClient) -> None:
    http = await make_client(cors_origins=[ORIGIN])
    preflight = await http.options(
        "/api/bookings",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    response = await http.get("/api/cities", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_credentials_when_configured(make_client: MakeClient) -> None:
    http = await make_client(cors_origins=[ORIGIN], cors_allow_credentials=True)
    preflight = await http.options(
        "/api/me", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.headers["access-control-allow-credentials"] == "true"


# ---------------------------------------------------------------------------------------------
# Body size limit


async def test_a_body_announced_too_large_is_refused_before_reading(
    make_client: MakeClient,
) -> None:
    http = await make_client(max_body_bytes=2048)
    small = await http.post("/api/auth/login", json=LOGIN)
    assert small.status_code == 401  # under the limit: the route answers

    big = await http.post("/api/auth/login", json={**LOGIN, "padding": "x" * 3000})
    body = assert_problem(big, 413, "body_too_large")
    assert "2048" in body["detail"]
    assert big.headers["x-request-id"]
    assert big.headers["x-content-type-options"] == "nosniff"


async def test_the_default_limit_is_one_mebibyte(client: httpx.AsyncClient) -> None:
    big = await client.post(
        "/api/auth/login",
        content=b"{" + b" " * (1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert_problem(big, 413, "body_too_large")


async def test_a_streamed_body_that_grows_too_large_is_cut_off(make_client: MakeClient) -> None:
    http = await make_client(max_body_bytes=2048)
    sent: list[int] = []

    async def chunks(count: int) -> AsyncIterator[bytes]:
        yield b'{"email": "nobody@example.com", "password": "Wrong-Password-123"'
        for _ in range(count):
            sent.append(1)
            yield b" " * 1000  # whitespace: still a valid login body
        yield b"}"

    streamed = await http.post(
        "/api/auth/login", content=chunks(50), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers  # chunked: no length announced
    assert_problem(streamed, 413, "body_too_large")
    assert len(sent) < 50  # reading stopped at the limit

    within = await http.post(
        "/api/auth/login", content=chunks(1), headers={"Content-Type": "application/json"}
    )
    assert within.status_code == 401


async def test_a_big_screen_layout_fits_the_default_limit(
    client: httpx.AsyncClient, app: Any
) -> None:
    admin = await make_user(app, "admin")
    city = await client.post(
        "/api/admin/cities",
        json={"name": "Big City", "timezone": "Europe/Berlin"},
        headers=admin.headers,
    )
    assert city.status_code == 201, city.text
    theater = await client.post(
        "/api/admin/theaters",
        json={"name": "Grand", "cityId": city.json()["id"], "currency": "EUR"},
        headers=admin.headers,
    )
    assert theater.status_code == 201, theater.text
    rows = [
        {
            "row": f"R{r:02d}",
            "seats": [
                {
                    "number": n,
                    "class": "standard",
                    "position": n + (2 if n > 50 else 0),
                    "active": True,
                }
                for n in range(1, 101)
            ],
        }
        for r in range(30)
    ]
    body = {
        "theaterId": theater.json()["id"],
        "screenNumber": 1,
        "name": "Hall 1",
        "hallType": "standard",
        "layout": {"rows": rows},
    }
    pretty = json.dumps(body, indent=2).encode()  # the worst case: pretty-printed
    assert len(pretty) > 200_000
    response = await client.post(
        "/api/admin/screens",
        content=pretty,
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text[:300]
    assert response.json()["capacity"] == 3000


# ---------------------------------------------------------------------------------------------
# No internals in error answers


@pytest.mark.parametrize("env", ["development", "production"])
async def test_an_unexpected_error_reveals_nothing(
    env: str, tmp_path: Path, backend: Backend
) -> None:
    overrides: dict[str, Any] = {"env": env}
    if env == "production":  # production refuses weak password hashing
        overrides |= {"argon2_memory_kib": 19 * 1024, "argon2_time_cost": 2}
    app = create_app(make_settings(backend, tmp_path, **overrides))

    async def explode() -> None:
        raise RuntimeError("secret internals: password=hunter2 at /srv/boxoffice/app.py")

    app.add_api_route("/api/explode", explode, methods=["GET", "POST"])
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        responses = [
            await http.get("/api/explode"),
            await http.post("/api/explode", json={"a": 1}),
        ]
    for response in responses:
        body = assert_problem(response, 500, "internal_error")
        assert set(body) <= {"type", "title", "status", "detail", "code", "instance", "requestId"}
        for leak in ("hunter2", "RuntimeError", "Traceback", "/srv/", ".py", "secret"):
            assert leak not in response.text
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"]


async def test_validation_errors_do_not_echo_the_input(client: httpx.AsyncClient) -> None:
    huge = "Z" * 200_000
    response = await client.post(
        "/api/auth/register",
        json={"email": f"{huge}@example.com", "password": huge, "fullName": huge},
    )
    assert_problem(response, 422, "validation_error")
    assert "ZZZZ" not in response.text
    assert len(response.content) < 4000

    not_a_number = await client.get("/api/movies", params={"page": huge[:50_000]})
    assert_problem(not_a_number, 422, "validation_error")
    assert "ZZZZ" not in not_a_number.text

    malformed = await client.post(
        "/api/auth/login",
        content=b'{"email": "' + huge.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(malformed, 400, "malformed_json")
    assert "ZZZZ" not in malformed.text


# ---------------------------------------------------------------------------------------------
# OpenAPI: the problem answers are documented


async def test_problem_answers_are_documented_for_every_operation(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "Problem" in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("400", "401", "403", "404", "409", "410", "422", "429", "500"):
                assert responses[status]["content"] == problem, (method, path, status)
            if method in ("post", "put", "patch", "delete"):
                assert responses["413"]["content"] == problem
            assert "Retry-After" in responses["429"]["headers"]
    # A route's own description of its error codes is kept.
    hold = document["paths"]["/api/bookings"]["post"]["responses"]
    assert hold["410"]["description"] == "hold_expired"
