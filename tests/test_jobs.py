"""Jobs: enqueue after commit (never on rollback), retries with backoff, dead jobs, argument
checks, draining at shutdown, periodic jobs once per period across processes (leases), and
the Redis queue with a worker, on every database backend."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select

from boxoffice.app import create_app
from boxoffice.core.clock import utcnow
from boxoffice.core.db import Database, SessionDep
from boxoffice.core.errors import Conflict
from boxoffice.core.periodic import PeriodicJobs
from boxoffice.jobs import (
    JobArgumentsError,
    JobContext,
    JobLease,
    UnknownJobError,
    backoff_delay,
    enqueue,
    enqueue_now,
    job,
    take_lease,
)
from boxoffice.jobs.redis import CONSUMER_GROUP, RedisRunner, run_worker
from boxoffice.jobs.runner import InProcessRunner
from boxoffice.loyalty import jobs as loyalty_jobs
from tests.conftest import Backend, make_settings, reset_database

# ---------------------------------------------------------------------------------------------
# Test jobs: each records its runs under the `key` it was given (one key per test).


@dataclass
class Run:
    attempt: int
    at: float  # time.monotonic()
    args: dict[str, Any]
    job_id: str
    marker_visible: bool | None = None


RUNS: defaultdict[str, list[Run]] = defaultdict(list)
FINISHED: defaultdict[str, int] = defaultdict(int)
RUNNING: defaultdict[str, int] = defaultdict(int)
MOST_AT_ONCE: defaultdict[str, int] = defaultdict(int)


def _record(ctx: JobContext, key: str, **args: Any) -> Run:
    run = Run(ctx.attempt, time.monotonic(), args, ctx.job_id)
    RUNS[key].append(run)
    return run


def marker_name(key: str) -> str:
    return f"marker-{key}"


@job("test.record")
async def record_job(ctx: JobContext, key: str, **args: Any) -> None:
    """Records its arguments and whether the enqueuing transaction's row is visible."""
    run = _record(ctx, key, **args)
    async with ctx.db.session(write=False) as session:
        run.marker_visible = await session.get(JobLease, marker_name(key)) is not None


@job("test.flaky")
async def flaky_job(ctx: JobContext, key: str, failures: int) -> None:
    _record(ctx, key)
    if ctx.attempt <= failures:
        raise RuntimeError(f"failure number {ctx.attempt}")


@job("test.doomed")  # as many attempts as BOXOFFICE_JOBS_MAX_ATTEMPTS
async def doomed_job(ctx: JobContext, key: str) -> None:
    _record(ctx, key)
    raise ValueError("this never works")


@job("test.doomed-twice", max_attempts=2)
async def doomed_twice_job(ctx: JobContext, key: str) -> None:
    _record(ctx, key)
    raise ValueError("this never works either")


@job("test.slow")
async def slow_job(ctx: JobContext, key: str, seconds: float) -> None:
    _record(ctx, key)
    RUNNING[key] += 1
    MOST_AT_ONCE[key] = max(MOST_AT_ONCE[key], RUNNING[key])
    try:
        await asyncio.sleep(seconds)
    finally:
        RUNNING[key] -= 1
    FINISHED[key] += 1


@pytest.fixture
def key() -> Iterator[str]:
    value = uuid.uuid4().hex
    yield value
    for recorded in (RUNS, FINISHED, RUNNING, MOST_AT_ONCE):
        recorded.pop(value, None)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Apps ("processes") on the test database


class Apps:
    """Start apps with overridden settings on the same database; stop them early or at the end."""

    def __init__(self, backend: Backend, var_dir: Path) -> None:
        self.backend = backend
        self.var_dir = var_dir
        self.running: dict[int, LifespanManager] = {}

    async def start(self, **overrides: Any) -> FastAPI:
        application = create_app(make_settings(self.backend, self.var_dir, **overrides))
        manager = LifespanManager(application, shutdown_timeout=30)
        await manager.__aenter__()
        if not self.running:
            await reset_database(application)
        self.running[id(application)] = manager
        return application

    async def stop(self, application: FastAPI) -> None:
        manager = self.running.pop(id(application))
        await manager.__aexit__(None, None, None)

    async def stop_all(self) -> None:
        for manager in reversed(list(self.running.values())):
            await manager.__aexit__(None, None, None)
        self.running.clear()


@pytest.fixture
async def apps(backend: Backend, tmp_path: Path) -> AsyncIterator[Apps]:
    started = Apps(backend, tmp_path / "var")
    try:
        yield started
    finally:
        await started.stop_all()


async def add_marker(database: Database, key: str) -> None:
    async with database.session() as session:
        session.add(JobLease(name=marker_name(key), holder="test", expires_at=utcnow()))


async def marker_exists(database: Database, key: str) -> bool:
    async with database.session(write=False) as session:
        return await session.get(JobLease, marker_name(key)) is not None


def add_test_routes(application: FastAPI) -> None:
    """Two write requests: one commits, one fails (and so rolls back); each enqueues a job."""

    async def commits(session: SessionDep, key: str) -> dict[str, str]:
        session.add(JobLease(name=marker_name(key), holder="test", expires_at=utcnow()))
        job_id = enqueue(session, "test.record", key=key, seats=["A1", "A2"], total=12.5)
        return {"jobId": job_id}

    async def fails(session: SessionDep, key: str) -> dict[str, str]:
        session.add(JobLease(name=marker_name(key), holder="test", expires_at=utcnow()))
        await session.flush()
        enqueue(session, "test.record", key=key)
        raise Conflict("changed my mind")

    application.add_api_route("/test-jobs/commits", commits, methods=["POST"])
    application.add_api_route("/test-jobs/fails", fails, methods=["POST"])


async def enqueue_and_roll_back(database: Database, key: str) -> None:
    async with database.session() as session:
        session.add(JobLease(name=marker_name(key), holder="test", expires_at=utcnow()))
        enqueue(session, "test.record", key=key, where="transaction")
        raise RuntimeError("rolled back")


def http(application: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://testserver"
    )


def events(logs: list[dict[str, Any]], name: str, key_job_ids: set[str]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name and e.get("job_id") in key_job_ids]


# ---------------------------------------------------------------------------------------------
# After commit, never after a rollback


async def test_a_job_enqueued_in_a_committed_request_runs_once_after_the_commit(
    apps: Apps, key: str
) -> None:
    application = await apps.start()
    assert isinstance(application.state.jobs, InProcessRunner)
    add_test_routes(application)
    async with http(application) as client:
        response = await client.post("/test-jobs/commits", params={"key": key})
    assert response.status_code == 200, response.text

    await wait_until(lambda: bool(RUNS[key]), "the job")
    await apps.stop(application)  # drains: anything else queued would run now
    [run] = RUNS[key]
    assert run.job_id == response.json()["jobId"]
    assert run.args == {"seats": ["A1", "A2"], "total": 12.5}
    assert run.attempt == 1
    assert run.marker_visible is True  # it ran after the commit, and saw the request's row


async def test_a_job_enqueued_in_a_failed_request_or_a_rolled_back_transaction_never_runs(
    apps: Apps, key: str
) -> None:
    application = await apps.start()
    add_test_routes(application)
    async with http(application) as client:
        response = await client.post("/test-jobs/fails", params={"key": key})
    assert response.status_code == 409
    with pytest.raises(RuntimeError, match="rolled back"):
        await enqueue_and_roll_back(application.state.db, key)
    # A job committed afterwards runs, so the runner was working all along.
    async with application.state.db.session() as session:
        enqueue(session, "test.record", key=f"{key}-later")

    await wait_until(lambda: bool(RUNS[f"{key}-later"]), "the later job")
    await apps.stop(application)
    assert RUNS[key] == []
    assert not await marker_exists(application.state.db, key)
    RUNS.pop(f"{key}-later")


async def test_enqueue_now_runs_a_job_outside_any_transaction(apps: Apps, key: str) -> None:
    application = await apps.start()
    job_id = await enqueue_now(application.state.db, "test.record", key=key, n=1)
    await wait_until(lambda: bool(RUNS[key]), "the job")
    assert [(r.job_id, r.args) for r in RUNS[key]] == [(job_id, {"n": 1})]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, "when=datetime"),
        ({"booking_id": uuid.uuid4()}, "booking_id=UUID"),
        ({"amount": Decimal("9.50")}, "amount=Decimal"),
        ({"seats": ("A1", "A2")}, "seats=tuple"),  # would arrive as a list
        ({"by_row": {1: "A"}}, "by_row=dict"),  # would arrive with "1" as key
        ({"ratio": math.nan}, "ratio=float"),
        ({"tags": {"a"}}, "tags=set"),
    ],
)
async def test_arguments_that_are_not_json_are_refused_at_enqueue(
    apps: Apps, key: str, args: dict[str, Any], message: str
) -> None:
    application = await apps.start()
    async with application.state.db.session() as session:
        with pytest.raises(JobArgumentsError, match=message):
            enqueue(session, "test.record", key=key, **args)
        assert "after_commit" not in session.info  # nothing was queued
    with pytest.raises(JobArgumentsError, match=message):
        await enqueue_now(application.state.db, "test.record", key=key, **args)
    await apps.stop(application)
    assert RUNS[key] == []


async def test_unknown_jobs_and_wrong_argument_names_are_refused_at_enqueue(
    apps: Apps, key: str
) -> None:
    application = await apps.start()
    async with application.state.db.session() as session:
        with pytest.raises(UnknownJobError, match=r"no job is registered as 'test\.nope'"):
            enqueue(session, "test.nope", key=key)
        with pytest.raises(JobArgumentsError, match="failures"):
            enqueue(session, "test.flaky", key=key)  # `failures` is missing
        with pytest.raises(JobArgumentsError, match="unexpected keyword"):
            enqueue(session, "test.flaky", key=key, failures=1, extra=True)


def test_a_job_must_be_an_async_function_and_its_name_unique() -> None:
    with pytest.raises(TypeError, match="async"):
        job("test.sync")(lambda ctx: None)

    async def other(ctx: JobContext) -> None:
        pass

    with pytest.raises(ValueError, match="already registered"):
        job("test.record")(other)


# ---------------------------------------------------------------------------------------------
# Retries


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 50.0), (200, 50.0)]:
        delays = [backoff_delay(attempt, 1.0, 50.0) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays))
        assert len(set(delays)) > 150  # jittered
    # Each attempt waits at least as long as the one before (equal jitter).
    assert max(backoff_delay(1, 1.0, 50.0) for _ in range(200)) <= min(
        backoff_delay(2, 1.0, 50.0) for _ in range(200)
    )


async def test_a_job_failing_twice_is_retried_with_growing_delays_and_runs_three_times(
    apps: Apps, key: str
) -> None:
    application = await apps.start(jobs_retry_base_seconds=0.05, jobs_max_attempts=5)
    with structlog.testing.capture_logs() as logs:
        job_id = await enqueue_now(application.state.db, "test.flaky", key=key, failures=2)
        await wait_until(lambda: len(RUNS[key]) == 3, "three attempts")
        await apps.stop(application)
    runs = RUNS[key]
    assert [r.attempt for r in runs] == [1, 2, 3]
    failed = events(logs, "job_failed", {job_id})
    assert [(e["job"], e["attempt"], e["error"]) for e in failed] == [
        ("test.flaky", 1, "RuntimeError: failure number 1"),
        ("test.flaky", 2, "RuntimeError: failure number 2"),
    ]
    delays = [e["retry_in"] for e in failed]
    assert 0.025 <= delays[0] <= 0.05 <= delays[1] <= 0.1, delays
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(runs)]
    assert all(gap >= delay - 0.001 for gap, delay in zip(gaps, delays, strict=True)), gaps
    assert not events(logs, "job_dead", {job_id})


async def test_a_job_that_always_fails_stops_after_max_attempts_and_is_logged_dead(
    apps: Apps, key: str
) -> None:
    application = await apps.start(jobs_retry_base_seconds=0.01, jobs_max_attempts=3)
    with structlog.testing.capture_logs() as logs:
        doomed = await enqueue_now(application.state.db, "test.doomed", key=key)
        twice = await enqueue_now(application.state.db, "test.doomed-twice", key=f"{key}-2")
        await wait_until(
            lambda: len(events(logs, "job_dead", {doomed, twice})) == 2, "both jobs dead"
        )
        await apps.stop(application)  # no attempt is left waiting
    assert [r.attempt for r in RUNS[key]] == [1, 2, 3]  # BOXOFFICE_JOBS_MAX_ATTEMPTS
    assert [r.attempt for r in RUNS.pop(f"{key}-2")] == [1, 2]  # the job's own max_attempts
    assert len(events(logs, "job_failed", {doomed})) == 2
    [dead] = events(logs, "job_dead", {doomed})
    assert dead["log_level"] == "error"
    assert (dead["job"], dead["attempt"], dead["max_attempts"]) == ("test.doomed", 3, 3)
    assert dead["error"] == "ValueError: this never works"


# ---------------------------------------------------------------------------------------------
# Concurrency and shutdown


async def test_concurrency_is_bounded_and_shutdown_drains_queued_running_and_retrying_jobs(
    apps: Apps, key: str
) -> None:
    application = await apps.start(jobs_concurrency=2, jobs_retry_base_seconds=0.2)
    database = application.state.db
    await enqueue_now(database, "test.flaky", key=f"{key}-flaky", failures=1)
    for _ in range(5):
        await enqueue_now(database, "test.slow", key=key, seconds=0.1)
    await wait_until(lambda: len(RUNS[f"{key}-flaky"]) == 1, "the flaky job's first attempt")

    started = time.monotonic()
    await apps.stop(application)  # at once: jobs are queued, running and waiting to retry
    assert time.monotonic() - started < 5
    assert FINISHED[key] == 5
    assert MOST_AT_ONCE[key] == 2  # BOXOFFICE_JOBS_CONCURRENCY
    assert [r.attempt for r in RUNS.pop(f"{key}-flaky")] == [1, 2]  # its retry ran too


async def test_shutdown_cancels_what_is_still_running_after_the_grace_period(
    apps: Apps, key: str
) -> None:
    application = await apps.start(jobs_shutdown_grace_seconds=0.2)
    with structlog.testing.capture_logs() as logs:
        job_id = await enqueue_now(application.state.db, "test.slow", key=key, seconds=60)
        await wait_until(lambda: bool(RUNS[key]), "the slow job to start")
        started = time.monotonic()
        await apps.stop(application)
    assert time.monotonic() - started < 3
    assert FINISHED[key] == 0
    assert events(logs, "jobs_not_drained", {None})
    assert events(logs, "job_dropped", {job_id})


# ---------------------------------------------------------------------------------------------
# Periodic jobs and leases


async def test_a_periodic_job_runs_once_per_period_across_two_processes(
    apps: Apps, key: str
) -> None:
    interval = 0.3
    first = await apps.start()
    second = await apps.start()
    runs: list[tuple[float, str]] = []

    def work(who: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            runs.append((time.monotonic(), who))

        return run

    periodic = [PeriodicJobs(a.state.db) for a in (first, second)]
    started = time.monotonic()
    for jobs, who in zip(periodic, ("first", "second"), strict=True):
        assert jobs.start(f"test-{key}", interval, work(who)) is not None
    try:
        await wait_until(lambda: len(runs) >= 5, "five periods", timeout=15)
    finally:
        for jobs in periodic:
            await jobs.stop()
    elapsed = time.monotonic() - started
    times = [at for at, _ in runs]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Without the lease each process would run every period: gaps under half an interval.
    assert min(gaps) >= interval * 0.8, (gaps, runs)
    assert len(runs) <= elapsed / interval + 1
    async with first.state.db.session(write=False) as session:
        lease = await session.get(JobLease, f"test-{key}")
    assert lease is not None
    assert lease.holder in {p.holder for p in periodic}


async def test_the_apps_periodic_jobs_take_the_lease(
    apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[float] = []

    async def earn_once(app: FastAPI) -> None:
        runs.append(time.monotonic())

    monkeypatch.setattr(loyalty_jobs, "earn_once", earn_once)
    off = await apps.start()  # intervals 0: no periodic job at all
    await apps.start(loyalty_interval_seconds=1)
    await apps.start(loyalty_interval_seconds=1)
    await wait_until(lambda: len(runs) >= 3, "three periods", timeout=10)
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert min(gaps) >= 0.8, gaps  # two server processes, one run per second
    async with off.state.db.session(write=False) as session:
        names = set(await session.scalars(select(JobLease.name)))
    # The login-failure purge runs in every app (its period is the lockout window, which the
    # tests' settings keep) and may take its lease as an app starts; no other job may.
    assert names - {"login-failures-purge"} == {"loyalty-earning"}


async def test_a_lease_held_by_a_dead_process_is_taken_over_when_it_expires(
    apps: Apps, key: str
) -> None:
    application = await apps.start()
    name = f"test-{key}"
    expires = utcnow() + dt.timedelta(seconds=0.8)
    async with application.state.db.session() as session:
        session.add(JobLease(name=name, holder="crashed-host:4242:0", expires_at=expires))
    runs: list[dt.datetime] = []

    async def work() -> None:
        runs.append(utcnow())

    periodic = PeriodicJobs(application.state.db)
    periodic.start(name, 0.1, work)
    try:
        await wait_until(lambda: len(runs) >= 2, "runs after the expiry", timeout=5)
    finally:
        await periodic.stop()
    assert runs[0] >= expires  # nothing while the dead process's lease was valid
    async with application.state.db.session(write=False) as session:
        lease = await session.get(JobLease, name)
    assert lease is not None
    assert lease.holder == periodic.holder


async def test_take_lease_rules(apps: Apps, key: str) -> None:
    first = await apps.start()
    second = await apps.start()
    db_a, db_b = first.state.db, second.state.db
    name = f"test-{key}"
    # First use: the row is inserted; two processes racing for it, exactly one wins.
    won = await asyncio.gather(take_lease(db_a, name, "a", 60), take_lease(db_b, name, "b", 60))
    assert sorted(won) == [False, True]
    holder, other = ("a", "b") if won[0] else ("b", "a")
    assert await take_lease(db_a, name, other, 60) is False  # valid and someone else's
    assert await take_lease(db_a, name, holder, 0.05) is True  # renewing one's own
    await asyncio.sleep(0.1)
    assert await take_lease(db_b, name, other, 60) is True  # expired: taken over
    assert await take_lease(db_a, name, holder, 60) is False


def test_an_interval_of_zero_turns_a_periodic_job_off() -> None:
    async def work() -> None:
        raise AssertionError("must not run")

    periodic = PeriodicJobs(database=None, holder="x")  # type: ignore[arg-type]
    assert periodic.start("off", 0, work) is None


# ---------------------------------------------------------------------------------------------
# Redis: a stream queue and `boxoffice worker`'s receiver


@pytest.fixture
async def redis_queue(redis_url: str) -> AsyncIterator[tuple[str, Redis]]:
    """A queue name of its own (no crosstalk between tests) and a client to look at it."""
    queue = f"boxoffice-test:jobs:{uuid.uuid4().hex}"
    client = Redis.from_url(redis_url)
    try:
        yield queue, client
    finally:
        await client.delete(queue, f"{queue}:delayed")
        await client.aclose()


class Worker:
    """`boxoffice worker`'s receiver (run_worker) on its own app, as a task of this test."""

    def __init__(self, application: FastAPI) -> None:
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(run_worker(application, self.stop_event))

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 15)


async def redis_apps(
    apps: Apps, redis_url: str, queue: str, **overrides: Any
) -> tuple[FastAPI, FastAPI]:
    settings = {"redis_url": redis_url, "jobs_queue": queue, **overrides}
    server = await apps.start(**settings)
    worker = await apps.start(**settings)
    assert isinstance(server.state.jobs, RedisRunner)  # BOXOFFICE_REDIS_URL set: Redis
    return server, worker


async def test_redis_a_committed_job_is_queued_in_redis_and_run_once_by_a_worker(
    apps: Apps, redis_url: str, redis_queue: tuple[str, Redis], key: str
) -> None:
    queue, client = redis_queue
    server, worker_app = await redis_apps(apps, redis_url, queue)
    add_test_routes(server)
    async with http(server) as client_http:
        response = await client_http.post("/test-jobs/commits", params={"key": key})
    assert response.status_code == 200, response.text
    assert await client.xlen(queue) == 1  # waiting in Redis, not run by the server
    assert RUNS[key] == []

    worker = Worker(worker_app)
    try:
        await wait_until(lambda: bool(RUNS[key]), "the worker to run the job")
    finally:
        await worker.stop()
    [run] = RUNS[key]
    assert run.job_id == response.json()["jobId"]
    assert run.args == {"seats": ["A1", "A2"], "total": 12.5}
    assert run.marker_visible is True
    assert await client.xlen(queue) == 0  # acknowledged and deleted
    assert (await client.xpending(queue, CONSUMER_GROUP))["pending"] == 0


async def test_redis_a_rolled_back_job_never_reaches_the_queue(
    apps: Apps, redis_url: str, redis_queue: tuple[str, Redis], key: str
) -> None:
    queue, client = redis_queue
    server, worker_app = await redis_apps(apps, redis_url, queue)
    add_test_routes(server)
    async with http(server) as client_http:
        assert (await client_http.post("/test-jobs/fails", params={"key": key})).status_code == 409
    with pytest.raises(RuntimeError, match="rolled back"):
        await enqueue_and_roll_back(server.state.db, key)
    assert await client.xlen(queue) == 0
    assert await client.zcard(f"{queue}:delayed") == 0

    async with server.state.db.session() as session:  # a sentinel that does commit
        enqueue(session, "test.record", key=f"{key}-later")
    worker = Worker(worker_app)
    try:
        await wait_until(lambda: bool(RUNS[f"{key}-later"]), "the committed job")
    finally:
        await worker.stop()
    assert RUNS[key] == []
    RUNS.pop(f"{key}-later")


async def test_redis_jobs_are_retried_with_growing_delays_and_die_after_max_attempts(
    apps: Apps, redis_url: str, redis_queue: tuple[str, Redis], key: str
) -> None:
    queue, client = redis_queue
    server, worker_app = await redis_apps(
        apps, redis_url, queue, jobs_retry_base_seconds=0.05, jobs_max_attempts=3
    )
    with structlog.testing.capture_logs() as logs:
        flaky = await enqueue_now(server.state.db, "test.flaky", key=key, failures=2)
        doomed = await enqueue_now(server.state.db, "test.doomed", key=f"{key}-doomed")
        worker = Worker(worker_app)
        try:
            await wait_until(
                lambda: len(RUNS[key]) == 3 and bool(events(logs, "job_dead", {doomed})),
                "the retries",
            )
        finally:
            await worker.stop()
    runs = RUNS[key]
    assert [r.attempt for r in runs] == [1, 2, 3]
    failed = events(logs, "job_failed", {flaky})
    assert [e["attempt"] for e in failed] == [1, 2]
    delays = [e["retry_in"] for e in failed]
    assert delays[0] < delays[1], delays
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(runs)]
    assert all(gap >= delay - 0.01 for gap, delay in zip(gaps, delays, strict=True)), gaps
    assert [r.attempt for r in RUNS.pop(f"{key}-doomed")] == [1, 2, 3]
    [dead] = events(logs, "job_dead", {doomed})
    assert (dead["attempt"], dead["error"]) == (3, "ValueError: this never works")
    assert await client.xlen(queue) == 0
    assert await client.zcard(f"{queue}:delayed") == 0


async def test_redis_a_stopping_worker_finishes_its_running_job(
    apps: Apps, redis_url: str, redis_queue: tuple[str, Redis], key: str
) -> None:
    queue, client = redis_queue
    server, worker_app = await redis_apps(apps, redis_url, queue)
    await enqueue_now(server.state.db, "test.slow", key=key, seconds=0.3)
    worker = Worker(worker_app)
    await wait_until(lambda: bool(RUNS[key]), "the job to start")
    await worker.stop()
    assert FINISHED[key] == 1
    assert await client.xlen(queue) == 0


async def test_redis_an_unreachable_redis_does_not_stop_the_server(apps: Apps, key: str) -> None:
    server = await apps.start(redis_url="redis://127.0.0.1:1/0")  # the lifespan starts
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(RedisError):
            await enqueue_now(server.state.db, "test.record", key=key)
        async with server.state.db.session() as session:  # after a commit: logged, not raised
            job_id = enqueue(session, "test.record", key=key)
    assert events(logs, "job_enqueue_failed", {job_id})


def test_worker_command_refuses_to_start_without_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    env["BOXOFFICE_VAR_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "boxoffice.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "BOXOFFICE_REDIS_URL" in result.stderr
