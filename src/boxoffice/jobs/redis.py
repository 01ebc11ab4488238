"""Jobs through Redis (with `BOXOFFICE_REDIS_URL`): a taskiq stream broker, executed by
`boxoffice worker` processes.

Server processes only send: each job is an entry of the stream `BOXOFFICE_JOBS_QUEUE`, read
by the workers' consumer group (created reading from the stream's start, so entries sent
before any worker ran are not skipped). An entry is acknowledged and deleted once its attempt
is over; one a worker took and never finished (killed) is taken over by another worker once
it has been idle for ten minutes (taskiq's `idle_timeout`). A failed attempt that may retry
is put, as its next message, in the sorted set `<queue>:delayed` scored by when it is due
(Redis' clock); every worker moves due entries back into the stream (one Lua script each
way, so a retry is moved once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskiq import AckableMessage, Context, TaskiqDepends
from taskiq.message import BrokerMessage, TaskiqMessage
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

from boxoffice.jobs.registry import run_attempt
from boxoffice.jobs.runner import InProcessRunner, JobRunner

if TYPE_CHECKING:
    from fastapi import FastAPI

log = structlog.get_logger(__name__)

TASK_NAME = "boxoffice.job"  # the one taskiq task: it runs any registered job by name
CONSUMER_GROUP = "boxoffice-workers"
CLAIM_EVERY = 30.0  # seconds between looks for entries a dead worker left unacknowledged

# KEYS[1] delayed set; ARGV[1] delay in seconds, ARGV[2] message
_SCHEDULE = """
local now = redis.call('TIME')
local due = tonumber(now[1]) + tonumber(now[2]) / 1000000 + tonumber(ARGV[1])
return redis.call('ZADD', KEYS[1], due, ARGV[2])
"""
# KEYS[1] delayed set, KEYS[2] stream: move up to 100 due messages into the stream
_PROMOTE = """
local now = redis.call('TIME')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf',
    tonumber(now[1]) + tonumber(now[2]) / 1000000, 'LIMIT', 0, 100)
for _, message in ipairs(due) do
    redis.call('ZREM', KEYS[1], message)
    redis.call('XADD', KEYS[2], '*', 'data', message)
end
return #due
"""


class _StreamBroker(RedisStreamBroker):
    """taskiq's stream broker with a simpler `listen` and acknowledgements that delete.

    An acknowledged entry is deleted, so the stream holds only jobs not done yet (and needs no
    length cap that could drop unread ones). `listen` reads one entry per free slot of the
    receiver (the other workers get the rest) and, every `CLAIM_EVERY` seconds, takes over
    entries another worker read and did not acknowledge within `idle_timeout` (it died).
    """

    runner: RedisRunner

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        async with Redis(connection_pool=self.connection_pool) as redis:
            claimed_at = -CLAIM_EVERY
            while True:
                entries: list[tuple[bytes, dict[bytes, bytes] | None]] = []
                if time.monotonic() - claimed_at >= CLAIM_EVERY:
                    claimed_at = time.monotonic()
                    claimed: Any = await redis.xautoclaim(
                        self.queue_name,
                        self.consumer_group_name,
                        self.consumer_name,
                        min_idle_time=self.idle_timeout,
                        count=self.unacknowledged_batch_size,
                    )
                    entries += claimed[1]
                fetched: Any = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    count=1,
                    block=self.block,
                )
                for _stream, read in fetched or []:
                    entries += read
                for entry_id, fields in entries:
                    if fields:  # (an entry deleted meanwhile has none)
                        yield AckableMessage(
                            data=fields[b"data"], ack=self._ack_generator(entry_id, self.queue_name)
                        )

    def _ack_generator(self, id: Any, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            async with (
                Redis(connection_pool=self.connection_pool) as redis,
                redis.pipeline(transaction=True) as pipe,
            ):
                pipe.xack(queue_name, self.consumer_group_name, id)
                pipe.xdel(queue_name, id)
                await pipe.execute()

        return ack


class RedisRunner(JobRunner):
    backend = "redis"

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app)
        settings = self.settings
        assert settings.redis_url
        self.queue = settings.jobs_queue
        self.delayed = f"{self.queue}:delayed"
        self.broker = _StreamBroker(
            settings.redis_url,
            queue_name=self.queue,
            consumer_group_name=CONSUMER_GROUP,
            consumer_id="0",
            max_connection_pool_size=settings.jobs_concurrency + 10,
            socket_connect_timeout=5,
        )
        self.broker.runner = self
        self.broker.register_task(_task(), task_name=TASK_NAME)
        self._redis = Redis(connection_pool=self.broker.connection_pool)
        self._schedule = self._redis.register_script(_SCHEDULE)
        self._promote = self._redis.register_script(_PROMOTE)
        self._running: set[asyncio.Task[Any]] = set()
        self._fallback: InProcessRunner | None = None  # started when Redis first refuses a job

    async def start(self) -> None:
        try:
            await self.broker.startup()  # declares the consumer group
        except (RedisError, OSError) as exc:  # the server still starts; sending will retry
            log.warning("jobs_queue_unreachable", queue=self.queue, error=str(exc))

    async def stop(self) -> None:
        if self._fallback is not None:
            await self._fallback.stop()
        await self.broker.shutdown()

    async def submit(self, job_id: str, name: str, args: dict[str, Any]) -> None:
        # The XADD taskiq's `kick` sends (the broker sets no length cap), on the runner's own
        # client: `kick` builds a client object per message (~0.3 ms of CPU, a copy of every
        # response callback), once per confirmed booking.
        message = self._message(job_id, name, args, 1)
        await self._redis.xadd(self.queue, {b"data": message.message})

    async def fall_back(self, job_id: str, name: str, args: dict[str, Any]) -> bool:
        """Redis refused a job enqueued after a commit: run it in this process instead.

        Jobs run in the server processes by default, so running one here is no new risk; it
        only lacks the queue's safety across a restart of this process."""
        if self._fallback is None:
            self._fallback = InProcessRunner(self.app)
            await self._fallback.start()
        await self._fallback.submit(job_id, name, args)
        return True

    def _message(self, job_id: str, name: str, args: dict[str, Any], attempt: int) -> BrokerMessage:
        return self.broker.formatter.dumps(
            TaskiqMessage(
                task_id=f"{job_id}.{attempt}",
                task_name=TASK_NAME,
                labels={},
                args=[],
                kwargs={"job": name, "args": args, "attempt": attempt, "job_id": job_id},
            )
        )

    async def execute(self, job: str, args: dict[str, Any], attempt: int, job_id: str) -> None:
        """One attempt of `job`, and its retry scheduled if it failed."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            delay = await run_attempt(self.app, job_id, job, args, attempt)
            if delay is not None:
                message = self._message(job_id, job, args, attempt + 1)
                try:
                    await self._schedule(keys=[self.delayed], args=[delay, message.message])
                except (RedisError, OSError) as exc:
                    log.error("job_retry_lost", job=job, job_id=job_id, error=str(exc))
        finally:
            self._running.discard(task)

    async def work(self, stop: asyncio.Event) -> None:
        """Execute jobs until `stop` is set, then let running ones finish (up to the grace
        period; those still running are cancelled and go to another worker later)."""
        settings = self.settings
        self.broker.is_worker_process = True
        finish = asyncio.Event()
        poll = min(1.0, max(0.05, settings.jobs_retry_base_seconds / 2))
        listening = asyncio.create_task(self._listen(finish), name="jobs-listen")
        promoting = asyncio.create_task(self._promote_due(poll), name="jobs-promote")
        stopping = asyncio.create_task(stop.wait())
        log.info("worker_started", queue=self.queue, concurrency=settings.jobs_concurrency)
        try:
            await asyncio.wait({listening, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finish.set()
            await listening
        finally:
            tasks = (listening, promoting, stopping, *self._running)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("worker_stopped", queue=self.queue)

    async def _listen(self, finish: asyncio.Event) -> None:
        settings = self.settings
        while not finish.is_set():
            try:
                await self.broker.startup()  # (re)declares the consumer group
                receiver = Receiver(
                    self.broker,
                    validate_params=False,
                    max_async_tasks=settings.jobs_concurrency,
                    run_startup=False,
                    wait_tasks_timeout=settings.jobs_shutdown_grace_seconds,
                )
                await receiver.listen(finish)
            except Exception as exc:  # Redis went away: wait a little and listen again
                log.warning("worker_listen_failed", queue=self.queue, error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finish.wait(), 1.0)

    async def _promote_due(self, poll: float) -> None:
        while True:
            try:
                await self._promote(keys=[self.delayed, self.queue])
            except (RedisError, OSError) as exc:
                log.warning("jobs_promote_failed", queue=self.queue, error=str(exc))
            await asyncio.sleep(poll)


def _task() -> Callable[..., Awaitable[None]]:
    # A new function for each broker: taskiq renames the function it registers.
    async def execute(
        job: str,
        args: dict[str, Any],
        attempt: int,
        job_id: str,
        context: Context = TaskiqDepends(),
    ) -> None:
        """The taskiq task: runs any registered job, through the broker's runner."""
        broker = cast(_StreamBroker, context.broker)
        await broker.runner.execute(job, args, attempt, job_id)

    return execute


async def run_worker(app: FastAPI, stop: asyncio.Event) -> None:
    """What `boxoffice worker` runs (inside the app's lifespan): execute the Redis queue's
    jobs with this app's resources until `stop` is set."""
    runner = app.state.jobs
    if not isinstance(runner, RedisRunner):
        raise RuntimeError("jobs do not go through Redis (set BOXOFFICE_REDIS_URL)")
    await runner.work(stop)
