"""Operations endpoints, request ids, metrics and the problem+json shape of every error."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from boxoffice.app import create_app
from tests.conftest import Backend, make_settings

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return body  # type: ignore[no-any-return]


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


async def test_readyz_reports_an_unreachable_database(tmp_path: Path, backend: Backend) -> None:
    settings = make_settings(
        backend, tmp_path, database_url="postgresql://postgres@127.0.0.1:1/nothing"
    )
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("error")


@pytest.mark.backends("sqlite")
async def test_readyz_checks_redis_when_configured(
    tmp_path: Path, backend: Backend, redis_url: str
) -> None:
    for url, expected_status in ((redis_url, 200), ("redis://127.0.0.1:1/0", 503)):
        app = create_app(make_settings(backend, tmp_path, redis_url=url))
        async with (
            LifespanManager(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
        ):
            response = await http.get("/readyz")
        assert response.status_code == expected_status
        redis_check = response.json()["checks"]["redis"]
        assert redis_check == "ok" if expected_status == 200 else redis_check.startswith("error")


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "till-7.abc"})
    assert echoed.headers["x-request-id"] == "till-7.abc"
    generated = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    # A header that could forge log lines is replaced, not echoed.
    hostile = await client.get("/healthz", headers={"X-Request-ID": 'x" injected=1 ' + "a" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


async def test_errors_carry_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nowhere", headers={"X-Request-ID": "req-1"})
    body = assert_problem(response, 404, "not_found")
    assert body["requestId"] == "req-1"


async def test_unknown_route_and_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/does-not-exist"), 404, "not_found")
    assert_problem(await client.delete("/api/auth/login"), 405, "method_not_allowed")


async def test_malformed_json_and_validation_errors(client: httpx.AsyncClient) -> None:
    malformed = await client.post(
        "/api/auth/login", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(malformed, 400, "malformed_json")
    invalid = await client.post("/api/auth/login", json={"email": 5})
    body = assert_problem(invalid, 422, "validation_error")
    fields = {error["field"] for error in body["errors"]}  # type: ignore[attr-defined]
    assert {"email", "password"} <= fields
    not_an_object = await client.post("/api/auth/login", json=[1, 2])
    assert_problem(not_an_object, 422, "validation_error")


async def test_an_unexpected_error_is_a_500_problem_without_internals(
    tmp_path: Path, backend: Backend
) -> None:
    app = create_app(make_settings(backend, tmp_path))

    async def explode() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.add_api_route("/explode", explode)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        response = await http.get("/explode", headers={"X-Request-ID": "boom-1"})
    assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"] == "boom-1"


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/api/me")
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert re.search(
        r'boxoffice_http_requests_total\{method="GET",route="/api/me",status="401"\} [1-9]', text
    )
    assert (
        'boxoffice_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}'
        in text
    )


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/auth/login" in paths
    assert (await client.get("/docs")).status_code == 200
