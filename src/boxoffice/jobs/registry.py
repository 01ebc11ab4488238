"""Job definitions: the `@job` registry, the context a job receives, argument checks and
the retry rule shared by both runners."""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

if TYPE_CHECKING:
    from fastapi import FastAPI

    from boxoffice.config import Settings
    from boxoffice.core.db import Database
    from boxoffice.core.mail import Mailer
    from boxoffice.storage import Storage

log = structlog.get_logger(__name__)


class UnknownJobError(LookupError):
    """No job is registered under this name."""


class JobArgumentsError(TypeError):
    """A job's arguments do not fit its function or would not survive JSON."""


@dataclass(frozen=True)
class JobContext:
    """What a job gets besides its arguments: the app's resources, and which run this is."""

    app: FastAPI
    settings: Settings
    db: Database
    mailer: Mailer
    storage: Storage
    job: str
    job_id: str
    attempt: int  # 1 for the first run

    @classmethod
    def of(cls, app: FastAPI, job: str, job_id: str, attempt: int) -> JobContext:
        state = app.state
        return cls(
            app=app,
            settings=state.settings,
            db=state.db,
            mailer=state.mailer,
            storage=state.storage,
            job=job,
            job_id=job_id,
            attempt=attempt,
        )


JobFunction = Callable[..., Awaitable[None]]
F = TypeVar("F", bound=JobFunction)


@dataclass(frozen=True)
class Job:
    name: str
    function: JobFunction
    max_attempts: int | None  # None: BOXOFFICE_JOBS_MAX_ATTEMPTS
    # Read once: inspecting the function on every enqueue cost ~40 us a confirmation.
    signature: inspect.Signature = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signature", inspect.signature(self.function))


_jobs: dict[str, Job] = {}


def job(name: str, *, max_attempts: int | None = None) -> Callable[[F], F]:
    """Register `async def f(ctx: JobContext, **args)` as the job `name`.

    The module must be imported by `boxoffice.app` (directly or through a feature), so that
    server processes and `boxoffice worker` know the same jobs.
    """
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")

    def register(function: F) -> F:
        is_async = inspect.iscoroutinefunction(function)  # (not narrowing `function`)
        if not is_async:
            raise TypeError(f"job {name!r} must be an async function")
        known = _jobs.get(name)
        if known is not None and known.function is not function:
            raise ValueError(f"job {name!r} is already registered ({known.function!r})")
        _jobs[name] = Job(name, function, max_attempts)
        return function

    return register


def get_job(name: str) -> Job:
    try:
        return _jobs[name]
    except KeyError:
        raise UnknownJobError(f"no job is registered as {name!r}") from None


def check_arguments(job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the job will receive them (a JSON round trip), or JobArgumentsError."""
    try:
        job.signature.bind(None, **args)
    except TypeError as exc:
        raise JobArgumentsError(f"job {job.name!r}: {exc}") from None
    decoded = _json_round_trip(args)
    if decoded != args:  # some value does not survive: name them (the rare, failing case)
        bad = [key for key, value in args.items() if _json_round_trip(value) != value]
        raise JobArgumentsError(
            f"job {job.name!r}: arguments must be JSON values (str, int, float, bool, None, "
            f"lists, dicts with string keys); not so: "
            + ", ".join(f"{key}={type(args[key]).__name__}" for key in bad)
        )
    checked: dict[str, Any] = decoded
    return checked


_NOT_JSON = object()


def _json_round_trip(value: Any) -> Any:
    """`value` after a JSON round trip; a marker equal to nothing if it has no JSON form."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return _NOT_JSON


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt `attempt` (1, 2, ...): exponential, capped, with
    "equal jitter" (between half and all of base x 2^(attempt-1)), so processes retrying the
    same failure spread out while each job's waits still grow."""
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


async def run_attempt(
    app: FastAPI, job_id: str, name: str, args: dict[str, Any], attempt: int
) -> float | None:
    """Run one attempt of a job. The delay before the next attempt if it failed and may try
    again; None when it is done (succeeded, dead, or unknown here)."""
    try:
        job = get_job(name)
    except UnknownJobError:
        log.error("job_unknown", job=name, job_id=job_id, attempt=attempt)
        return None
    settings: Settings = app.state.settings
    max_attempts = job.max_attempts or settings.jobs_max_attempts
    context = JobContext.of(app, name, job_id, attempt)
    try:
        with structlog.contextvars.bound_contextvars(job=name, job_id=job_id):
            await job.function(context, **args)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if attempt >= max_attempts:
            log.error(
                "job_dead",
                job=name,
                job_id=job_id,
                attempt=attempt,
                max_attempts=max_attempts,
                error=error,
                exc_info=exc,
            )
            return None
        delay = backoff_delay(
            attempt, settings.jobs_retry_base_seconds, settings.jobs_retry_cap_seconds
        )
        log.warning(
            "job_failed",
            job=name,
            job_id=job_id,
            attempt=attempt,
            max_attempts=max_attempts,
            error=error,
            retry_in=round(delay, 4),
            exc_info=exc,
        )
        return delay
    return None
