"""Background jobs: `enqueue` work to run after the request's commit, with retries.

    @job("tickets.send", max_attempts=5)
    async def send_tickets(ctx: JobContext, booking_id: str) -> None: ...

    enqueue(session, "tickets.send", booking_id=str(booking.id))  # after commit; not on rollback

Jobs run in the server processes (`InProcessRunner`) or, with `BOXOFFICE_REDIS_URL`, in
`boxoffice worker` processes through a Redis queue (`redis.RedisRunner`). Periodic work is
`core.periodic`, taking a `lease.JobLease` each period. See docs/architecture.md, "Jobs".
"""

from boxoffice.jobs.lease import JobLease, take_lease
from boxoffice.jobs.registry import (
    JobArgumentsError,
    JobContext,
    UnknownJobError,
    backoff_delay,
    job,
)
from boxoffice.jobs.runner import JobRunner, create_runner, enqueue, enqueue_now

__all__ = [
    "JobArgumentsError",
    "JobContext",
    "JobLease",
    "JobRunner",
    "UnknownJobError",
    "backoff_delay",
    "create_runner",
    "enqueue",
    "enqueue_now",
    "job",
    "take_lease",
]
