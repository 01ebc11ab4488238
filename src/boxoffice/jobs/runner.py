"""Enqueueing, and the embedded runner that executes jobs inside the server process."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.core.db import Database, after_commit
from boxoffice.jobs.registry import check_arguments, get_job, run_attempt

if TYPE_CHECKING:
    from fastapi import FastAPI

    from boxoffice.config import Settings

log = structlog.get_logger(__name__)


class JobRunner(ABC):
    """Where an app's jobs go: executed in this process, or sent to a queue."""

    backend: ClassVar[str]

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.settings: Settings = app.state.settings

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None:
        """Finish (or give up on, after the grace period) what this process is running."""

    @abstractmethod
    async def submit(self, job_id: str, name: str, args: dict[str, Any]) -> None:
        """Hand over the first attempt of a checked job."""

    async def fall_back(self, job_id: str, name: str, args: dict[str, Any]) -> bool:
        """Take a job `submit` refused some other way; False when there is none."""
        return False


_runners: weakref.WeakKeyDictionary[Database, JobRunner] = weakref.WeakKeyDictionary()


def create_runner(app: FastAPI) -> JobRunner:
    """The app's runner, chosen by the settings; jobs enqueued on its database go to it."""
    settings: Settings = app.state.settings
    runner: JobRunner
    if settings.jobs_use_redis:
        from boxoffice.jobs.redis import RedisRunner  # taskiq is imported only when used

        runner = RedisRunner(app)
    else:
        runner = InProcessRunner(app)
    _runners[app.state.db] = runner
    return runner


def _runner_for(database: Database | None) -> JobRunner:
    runner = _runners.get(database) if database is not None else None
    if runner is None:
        raise RuntimeError("no job runner for this database (create it with create_app)")
    return runner


def _prepare(name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return uuid.uuid4().hex, check_arguments(get_job(name), args)


def enqueue(session: AsyncSession, name: str, /, **args: Any) -> str:
    """Run job `name` with `args` once `session`'s transaction has committed; if it rolls back,
    never. The arguments are checked now (UnknownJobError, JobArgumentsError). The job's id."""
    runner = _runner_for(session.info.get("database"))
    job_id, payload = _prepare(name, args)

    async def submit() -> None:
        try:
            await runner.submit(job_id, name, payload)
        except Exception as exc:
            # The data is stored: failing the request would report an error for a stored
            # change, and dropping the job would lose its work (a confirmation mail) for good.
            # So the queue's runner may take it another way (Redis down: in this process).
            if await runner.fall_back(job_id, name, payload):
                log.warning(
                    "job_enqueue_failed",
                    job=name,
                    job_id=job_id,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                    fallback="in_process",
                )
            else:
                log.exception("job_enqueue_failed", job=name, job_id=job_id)

    after_commit(session, submit)
    return job_id


async def enqueue_now(database: Database, name: str, /, **args: Any) -> str:
    """Run job `name` with `args`, outside any transaction (from a job, a periodic task, the
    command line). Raises if the queue cannot take it (the caller decides what then, unlike
    `enqueue`, which has no caller left to tell). The job's id."""
    runner = _runner_for(database)
    job_id, payload = _prepare(name, args)
    await runner.submit(job_id, name, payload)
    return job_id


@dataclass(frozen=True)
class _Run:
    job_id: str
    name: str
    args: dict[str, Any]
    attempt: int


class InProcessRunner(JobRunner):
    """Jobs run as tasks of this process, at most `jobs_concurrency` at a time. Retries wait
    on a timer. At shutdown, queued, running and retrying jobs get the grace period to
    finish; what is left then is cancelled and logged (`job_dropped`)."""

    backend = "inprocess"

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app)
        self._queue: asyncio.Queue[_Run] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._retrying: dict[int, tuple[_Run, asyncio.TimerHandle]] = {}
        self._pending = 0  # submitted and not yet done (queued, running or retrying)
        self._idle = asyncio.Event()
        self._idle.set()
        self._state: Literal["new", "running", "stopping", "stopped"] = "new"

    async def start(self) -> None:
        self._state = "running"
        self._workers = [
            asyncio.create_task(self._work(), name=f"jobs-{index}")
            for index in range(self.settings.jobs_concurrency)
        ]

    async def submit(self, job_id: str, name: str, args: dict[str, Any]) -> None:
        if self._state == "stopped":
            log.warning("job_dropped", job=name, job_id=job_id, reason="runner stopped")
            return
        if self._state == "new":
            log.warning("job_waits_for_runner", job=name, job_id=job_id)
        self._pending += 1
        self._idle.clear()
        self._queue.put_nowait(_Run(job_id, name, args, 1))

    async def wait_until_idle(self) -> None:
        """Return once no job is queued, running or waiting to retry (tests use it)."""
        await self._idle.wait()

    async def stop(self) -> None:
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopping"  # jobs still running may enqueue follow-ups meanwhile
        grace = self.settings.jobs_shutdown_grace_seconds
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("jobs_not_drained", pending=self._pending, grace_seconds=grace)
        self._state = "stopped"
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        left = [run for run, _ in self._retrying.values()]
        for _, timer in self._retrying.values():
            timer.cancel()
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        for run in left:
            log.warning("job_dropped", job=run.name, job_id=run.job_id, attempt=run.attempt)

    async def _work(self) -> None:
        while True:
            run = await self._queue.get()
            try:
                delay = await run_attempt(self.app, run.job_id, run.name, run.args, run.attempt)
            except asyncio.CancelledError:
                log.warning("job_dropped", job=run.name, job_id=run.job_id, attempt=run.attempt)
                raise
            if delay is None:
                self._done()
            else:
                retry = replace(run, attempt=run.attempt + 1)
                timer = asyncio.get_running_loop().call_later(delay, self._retry, retry)
                self._retrying[id(retry)] = (retry, timer)

    def _retry(self, run: _Run) -> None:
        self._retrying.pop(id(run), None)
        self._queue.put_nowait(run)

    def _done(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()
