"""`make bench`: boxoffice under load on this machine, next to the machine's own ceilings.

For each backend (PostgreSQL from BOXOFFICE_BENCH_DATABASE_URL, then SQLite) it creates a
fresh database with the benchmark data set, starts a real server (uvicorn, 2 workers, the
production settings) and runs the scenarios, each bounded in time:

  ceiling: constant JSON   wrk, the same stack answering a constant (framework ceiling)
  ceiling: raw hold        wrk, hold + release with the raw driver in one statement each
  a seat map               wrk, GET the seat map of 300-seat showtimes
  b movies                 wrk, movie list, filters and search
  c holds                  wrk, hold then release, spread over 100 showtimes, no contention
  ceiling: 4-step flow     the asyncio client making 4 constant requests per "purchase"
  d rush                   64 customers racing for one 300-seat showtime until sold out
  ceiling: raw purchase    the same four requests, each one raw statement (SQLite: transaction)
  e purchases              hold -> book -> pay (local provider) -> tickets, per second

and prints one table (plus bench/results/<date>.json).

Jobs (the confirmation mail with its tickets PDF, above all) run as in production when Redis
answers at BOXOFFICE_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14, a database the run
empties): queued in Redis and run by `boxoffice worker` at a lower CPU priority (nice 10), so
that during an onsale the two cores sell first and the mails follow; after the purchases the
run waits for the queue to drain and reports how long that took. Without Redis (or with
--jobs inprocess) they run inside the server processes, as on a single machine without Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import cpu, dataset, flows
from boxoffice.core.db import Database, create_engine, normalize_url

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "lua"
WORK = ROOT / "var" / "bench"
RESULTS = ROOT / "bench" / "results"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
SECRET = "benchmark-secret-" + "x" * 48
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/boxoffice_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
JOBS_QUEUE = "boxoffice-bench:jobs"

# Targets from the benchmark issue (PostgreSQL unless named).
TARGETS = {
    ("postgresql", "c holds"): ("ratio", 0.75),
    ("postgresql", "a seat map"): ("rps", 2000),
    ("postgresql", "e purchases"): ("rps", 300),
    ("sqlite", "c holds"): ("rps", 1000),
}


@dataclass
class Row:
    backend: str
    scenario: str
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    ceiling: str = ""
    ratio: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def target_verdict(self) -> str:
        target = TARGETS.get((self.backend, self.scenario))
        if target is None:
            if self.scenario == "d rush":
                ok = self.detail.get("double_sold") == 0 and self.p99_ms <= 100
                return f"{'ok' if ok else 'MISS'} (0 double, p99<=100)"
            return ""
        kind, value = target
        if kind == "ratio":
            ok = (self.ratio or 0) >= value
            return f"{'ok' if ok else 'MISS'} (>= {value:.0%})"
        ok = self.per_second >= value
        extra = ""
        if self.scenario == "a seat map":
            ok = ok and self.p99_ms <= 50
            extra = ", p99<=50"
        return f"{'ok' if ok else 'MISS'} (>= {value:,.0f}/s{extra})"


# ---------------------------------------------------------------------------------------------
# Databases and the server


class BackendUnavailable(Exception):
    """The benchmark database server cannot be reached."""


async def fresh_postgres(url: str) -> None:
    parsed = make_url(url)
    try:
        admin = await asyncpg.connect(
            user=parsed.username,
            password=parsed.password,
            host=parsed.host,
            port=parsed.port,
            database="postgres",
            timeout=5,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackendUnavailable(
            f"no PostgreSQL at {parsed.render_as_string(hide_password=True)} ({exc}); "
            "set BOXOFFICE_BENCH_DATABASE_URL"
        ) from exc
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await admin.close()


def fresh_sqlite(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def migrate(url: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "boxoffice"), "db", "upgrade"],
        env={**os.environ, "BOXOFFICE_DATABASE_URL": url},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def jobs_redis(choice: str) -> str | None:
    """The Redis URL for the jobs queue, or None to run jobs inside the server."""
    if choice == "inprocess":
        return None
    url = os.environ.get("BOXOFFICE_BENCH_REDIS_URL", DEFAULT_REDIS)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if choice == "worker":
            sys.exit(f"--jobs worker needs Redis at {url}: {exc}")
        print(f"  no Redis at {url} ({exc}): jobs run inside the server", flush=True)
        return None
    return url


def queued_jobs(redis_url: str | None) -> int:
    if redis_url is None:
        return 0
    with redis.Redis.from_url(redis_url) as client:
        return int(client.xlen(JOBS_QUEUE))


WORKER_NICE = 10


def lower_group_priority(pid: int, nice: int) -> None:
    """Give the scheduling group of `pid` (a session leader) the niceness `nice`.

    With Linux's autogroup scheduling (on by default in desktop and Debian kernels) every
    session is one group and the groups share the CPU equally: a process's own nice value
    only weighs against processes of its session. The worker runs in a session of its own,
    so `nice -n 10` alone left it an equal share beside the server's session (measured: 0.6
    of the two cores during the purchases); the group's niceness is what lowers it.
    """
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:  # no autogroup (other kernels, containers without it): nice alone works
        pass


class Server:
    """`boxoffice serve --workers 2` (uvicorn, a listening socket per worker) of
    `bench.ceilings:create_bench_app` with production settings, and
    with `redis_url` a `boxoffice worker` at nice 10 running the jobs queued there."""

    def __init__(self, url: str, log: Path, redis_url: str | None = None) -> None:
        self.url = url
        self.log = log
        self.redis_url = redis_url
        self.process: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = {
            **os.environ,
            "BOXOFFICE_ENV": "production",
            "BOXOFFICE_DATABASE_URL": self.url,
            "BOXOFFICE_SECRET_KEY": SECRET,
            "BOXOFFICE_VAR_DIR": str(WORK / "var"),
            "BOXOFFICE_LOG_LEVEL": os.environ.get("BOXOFFICE_LOG_LEVEL", "INFO"),
            # Every simulated customer comes from 127.0.0.1: no per-address limits here.
            "BOXOFFICE_RATE_LIMIT_ENABLED": "false",
        }
        if self.redis_url is not None:
            with redis.Redis.from_url(self.redis_url) as client:
                client.flushdb()  # the benchmark's own database: no jobs of an earlier run
            env |= {
                "BOXOFFICE_REDIS_URL": self.redis_url,
                "BOXOFFICE_JOBS_BACKEND": "redis",
                "BOXOFFICE_JOBS_QUEUE": JOBS_QUEUE,
            }
            self.worker = subprocess.Popen(
                [
                    "nice",
                    "-n",
                    str(WORKER_NICE),
                    str(Path(sys.executable).parent / "boxoffice"),
                    "worker",
                ],
                cwd=ROOT,
                env=env,
                stdout=(self.log.parent / "worker.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            lower_group_priority(self.worker.pid, WORKER_NICE)
        log = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",  # the working directory on the path: the bench package is found
                "boxoffice.cli",
                "serve",
                "--app",
                "bench.ceilings:create_bench_app",
                "--workers",
                "2",
                "--port",
                str(PORT),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{BASE}/readyz", timeout=1).status_code == 200:
                    time.sleep(1)  # let the second worker finish starting too
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the benchmark server did not start; see {self.log}")

    def __exit__(self, *_: object) -> None:
        for process in (self.process, self.worker):
            if process and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)

    def cpu_split(self) -> cpu.CpuSplit:
        """The CPU of the server's processes and of the jobs worker's (each started in a
        session, so a process group, of its own), PostgreSQL's, the client's and the rest."""
        groups = {"server": self.process.pid} if self.process else {}
        if self.worker is not None:
            groups["jobs worker"] = self.worker.pid
        return cpu.CpuSplit(groups)

    def drain_jobs(self, limit: float = 180) -> float | None:
        """Seconds until the worker has run every queued job (None: not within `limit`)."""
        started = time.monotonic()
        while queued_jobs(self.redis_url) > 0:
            if time.monotonic() - started > limit:
                return None
            time.sleep(0.2)
        return round(time.monotonic() - started, 1)


# ---------------------------------------------------------------------------------------------
# Load generators


def wrk(
    split: cpu.CpuSplit,
    script: str,
    args: list[str],
    *,
    seconds: int,
    threads: int,
    connections: int,
) -> dict[str, Any]:
    """One measured wrk run, after 2 s of the same load unmeasured: caches fill, every pooled
    connection prepares its statements, as on a server that has been up for a while. The
    CPU of the measured run goes to `split`."""
    _wrk(script, args, seconds=2, threads=threads, connections=connections)
    with split:
        result = _wrk(script, args, seconds=seconds, threads=threads, connections=connections)
    return {**result, "cpu": split}


def _wrk(
    script: str, args: list[str], *, seconds: int, threads: int, connections: int
) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA / script),
        BASE,
        "--",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    output = done.stdout
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise RuntimeError(f"wrk printed no summary:\n{output}")


def wrk_row(backend: str, name: str, result: dict[str, Any], count: str | None = None) -> Row:
    done = result[count] if count else result["requests"] - result["non2xx"]
    split: cpu.CpuSplit = result.pop("cpu")
    # holds.lua releases every hold it makes: a hold's CPU is its release's too.
    unit, label = ("hold", "hold and release") if count == "holds" else ("answer", "answer")
    split.report(result, unit, done, f"{label} ({name})")
    return Row(
        backend,
        name,
        per_second=done / result["seconds"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        errors=result["non2xx"] + result["socket_errors"] - result.get("conflicts", 0),
        detail=result,
    )


def flow_row(backend: str, name: str, result: flows.FlowResult) -> Row:
    summary = result.summary()
    return Row(
        backend,
        name,
        per_second=summary["per_second"],
        p50_ms=summary["p50_ms"],
        p99_ms=summary["p99_ms"],
        errors=summary["errors"],
        detail=summary,
    )


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


async def release_all_holds(database: Database) -> None:
    """Leftovers of a time-bounded run (holds in flight when it stopped) are freed."""
    await asyncio.sleep(1)  # requests still in flight when the load stopped finish first
    async with database.session() as session:
        await session.execute(
            text(
                "UPDATE showtime_seats SET status = 'available', hold_id = NULL, held_until = NULL"
                " WHERE status = 'held' AND booking_id IS NULL"
            )
        )
        await session.execute(text("UPDATE holds SET status = 'released' WHERE status = 'active'"))


async def settle(database: Database) -> None:
    """Between scenarios: dead row versions cleaned and statistics gathered, as autovacuum
    does on a server left to its defaults, so each scenario starts from the state a running
    server is normally in. (The PostgreSQL on the development machines runs with autovacuum
    off; within a scenario the statements must, and do, keep fast plans on stale
    statistics.)"""
    async with database.engine.connect() as connection:
        if database.backend == "postgresql":
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM (ANALYZE)"))
        else:
            await connection.execute(text("ANALYZE"))
            await connection.commit()


async def double_sales(database: Database) -> dict[str, int]:
    async with database.session(write=False) as session:
        doubles = await session.scalar(
            text(
                "SELECT count(*) FROM (SELECT showtime_id, seat_id FROM tickets"
                " WHERE status <> 'void' GROUP BY showtime_id, seat_id HAVING count(*) > 1) d"
            )
        )
        tickets = await session.scalar(text("SELECT count(*) FROM tickets"))
        booked = await session.scalar(
            text("SELECT count(*) FROM showtime_seats WHERE status = 'booked'")
        )
    return {
        "double_sold": int(doubles or 0),
        "tickets": int(tickets or 0),
        "booked": int(booked or 0),
    }


# ---------------------------------------------------------------------------------------------
# One backend


async def run_backend(
    backend: str, url: str, seconds: int, only: set[str] | None, redis_url: str | None
) -> list[Row]:
    if backend == "postgresql":
        await fresh_postgres(url)
    work = WORK / backend
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    migrate(url)
    database = Database(create_engine(url))
    started = time.perf_counter()
    data = await dataset.build(database, SECRET)
    await settle(database)
    print(f"  [{backend}] data set built in {time.perf_counter() - started:.1f} s", flush=True)
    (work / "dataset.json").write_text(json.dumps(data.to_json()))

    rng = random.Random(42)
    rush_showtime = data.imax_showtimes[-1]
    others = [s for s in data.showtimes if s.id != rush_showtime]
    hold_showtimes, purchase_showtimes = others[:100], others[100:]

    seatmap_paths = write_lines(
        work / "seatmap.txt", [f"/api/showtimes/{sid}/seats" for sid in data.imax_showtimes[:-1]]
    )
    movie_paths = write_lines(
        work / "movies.txt",
        ["/api/movies", "/api/movies?status=now_showing", "/api/movies?page=2&limit=10"]
        + [f"/api/movies?search={term}" for term in data.search_terms]
        + ["/api/movies?genre=drama", "/api/movies?genre=comedy&status=now_showing"],
    )
    constant_paths = write_lines(work / "constant.txt", ["/bench/constant"])
    pairs = [
        (showtime.id, showtime.labels[i : i + 2])
        for showtime in hold_showtimes
        for i in range(0, len(showtime.labels) - 1, 2)
    ]
    rng.shuffle(pairs)
    customers = data.customers
    hold_slots = write_lines(
        work / "hold-slots.txt",
        [
            " ".join((*customers[i % len(customers)], sid, ",".join(labels)))
            for i, (sid, labels) in enumerate(pairs)
        ],
    )
    purchase_slots = [
        (*customers[i % len(customers)], sid, labels)
        for i, (sid, labels) in enumerate(
            (showtime.id, showtime.labels[i : i + 2])
            for showtime in purchase_showtimes
            for i in range(0, len(showtime.labels) - 1, 2)
        )
    ]
    rng.shuffle(purchase_slots)
    # The flows' warm-up buys on slots of its own (and reads maps of other IMAX showtimes).
    warm_slots, purchase_slots = purchase_slots[:400], purchase_slots[400:]
    warm_maps = [(customers[i][1], showtime) for i, showtime in enumerate(data.imax_showtimes[:-1])]

    def wanted(name: str) -> bool:
        return only is None or name.split()[0] in only or name.startswith("ceiling")

    rows: list[Row] = []
    hold_threads = 32
    with Server(url, work / "server.log", redis_url) as server:
        # 32 clients at once per scenario: enough to keep both server processes saturated
        # (more only lengthens the queue in front of them, see docs/performance.md).
        get = {"seconds": seconds, "threads": 2, "connections": 32}
        holdload = {"seconds": seconds, "threads": hold_threads, "connections": hold_threads}

        constant = wrk_row(
            backend,
            "ceiling: constant JSON",
            wrk(server.cpu_split(), "get.lua", [constant_paths], **get),
        )
        rows.append(constant)
        if wanted("a seat map"):
            row = wrk_row(
                backend, "a seat map", wrk(server.cpu_split(), "get.lua", [seatmap_paths], **get)
            )
            row.ceiling, row.ratio = "constant JSON", row.per_second / constant.per_second
            rows.append(row)
        if wanted("b movies"):
            row = wrk_row(
                backend, "b movies", wrk(server.cpu_split(), "get.lua", [movie_paths], **get)
            )
            row.ceiling, row.ratio = "constant JSON", row.per_second / constant.per_second
            rows.append(row)
        raw = wrk_row(
            backend,
            "ceiling: raw hold",
            wrk(
                server.cpu_split(), "holds.lua", [hold_slots, "raw", str(hold_threads)], **holdload
            ),
            count="holds",
        )
        rows.append(raw)
        await release_all_holds(database)
        await settle(database)
        if wanted("c holds"):
            row = wrk_row(
                backend,
                "c holds",
                wrk(
                    server.cpu_split(),
                    "holds.lua",
                    [hold_slots, "api", str(hold_threads)],
                    **holdload,
                ),
                count="holds",
            )
            row.ceiling, row.ratio = "raw hold", row.per_second / raw.per_second
            rows.append(row)
            await release_all_holds(database)
            await settle(database)
        with server.cpu_split() as split:
            result = await flows.constant_flow(BASE, steps=4, clients=32, seconds=seconds)
        flow_ceiling = flow_row(backend, "ceiling: 4-step flow", result)
        # A purchase's floor: what its four requests cost with no work behind them.
        split.report(flow_ceiling.detail, "flow", result.completed, "4-step flow")
        rows.append(flow_ceiling)
        if wanted("d rush") or wanted("e purchases"):
            await flows.warm_up(BASE, warm_slots, warm_maps, clients=32, seconds=2)
            if server.redis_url is not None:
                server.drain_jobs()  # the warm-up's mails are not the rush's
            await settle(database)
        if wanted("d rush"):
            with server.cpu_split() as split:
                result = await flows.rush(
                    BASE, rush_showtime, customers, clients=64, seconds=max(seconds, 20)
                )
            row = flow_row(backend, "d rush", result)
            split.report(row.detail, "seat_sold", result.completed, "seat sold")
            row.p50_ms, row.p99_ms = result.extra["hold_p50_ms"], result.extra["hold_p99_ms"]
            row.detail.update(await double_sales(database))
            print(
                f"  rush's slowest holds [sent at, took] ms: {result.extra['hold_slowest_ms']};"
                " first hold answered (map included) p50/max ms:"
                f" {result.extra['first_hold_answered_p50_ms']}"
                f"/{result.extra['first_hold_answered_max_ms']}"
            )
            row.ceiling = "4-step flow (req/s)"
            row.ratio = (
                row.detail["requests_per_second"] / flow_ceiling.detail["requests_per_second"]
            )
            row.detail.update(jobs_after(server))
            rows.append(row)
            await settle(database)
        if wanted("e purchases"):
            # The first half of the customers' slots are the app's, the second the ceiling's.
            half = len(purchase_slots) // 2
            with server.cpu_split() as split:
                result = await flows.purchases(
                    BASE, purchase_slots[:half], clients=32, seconds=seconds
                )
            row = flow_row(backend, "e purchases", result)
            split.report(row.detail, "purchase", result.completed, "purchase")
            row.detail.update(await double_sales(database))
            row.detail.update(jobs_after(server))
            await settle(database)
            # Measured after the app's purchases (and their mails), so that its rows do not
            # weigh on the app's statements; the row goes first, as every ceiling's.
            with server.cpu_split() as split:
                result = await flows.purchases(
                    BASE, purchase_slots[half:], clients=32, seconds=seconds, raw=True
                )
            ceiling = flow_row(backend, "ceiling: raw purchase", result)
            split.report(ceiling.detail, "purchase", result.completed, "raw purchase")
            row.ceiling, row.ratio = "raw purchase", row.per_second / ceiling.per_second
            rows += [ceiling, row]
    await database.dispose()
    return rows


def jobs_after(server: Server) -> dict[str, Any]:
    """How the jobs a scenario queued (mails, mostly) were run: by the worker, which then gets
    the cores to itself until it is done, or inside the server, during the scenario."""
    if server.redis_url is None:
        return {"jobs": "in the server processes"}
    backlog = queued_jobs(server.redis_url)
    drained = server.drain_jobs()
    print(f"  jobs queued when the scenario ended: {backlog}, run {drained} s later", flush=True)
    return {"jobs": "worker (nice 10)", "jobs_queued_at_end": backlog, "jobs_drained_s": drained}


# ---------------------------------------------------------------------------------------------
# Report


def table(rows: list[Row]) -> str:
    header = (
        f"{'backend':<10} {'scenario':<22} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'ratio':>6}  {'of ceiling':<20} target"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r.ratio:.0%}" if r.ratio is not None else ""
        lines.append(
            f"{r.backend:<10} {r.scenario:<22} {r.per_second:>9,.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.errors:>6} {ratio:>6}  {r.ceiling:<20} {r.target_verdict()}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--seconds", type=int, default=15, help="per scenario (at most 20)")
    parser.add_argument("--only", default="", help="scenario letters, e.g. a,c")
    parser.add_argument(
        "--jobs",
        choices=["auto", "worker", "inprocess"],
        default="auto",
        help="where jobs run: a niced worker via Redis (auto: when Redis answers) or the server",
    )
    args = parser.parse_args()
    seconds = min(args.seconds, 20)
    only = set(args.only.split(",")) if args.only else None
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: install Debian's wrk package (apt-get install wrk)")
    rows: list[Row] = []
    started = time.perf_counter()
    for backend in args.backends.split(","):
        if backend == "postgresql":
            url = os.environ.get("BOXOFFICE_BENCH_DATABASE_URL", DEFAULT_PG)
        else:
            url = fresh_sqlite(WORK / "sqlite-db" / "bench.db")
        print(
            f"== {backend}: {normalize_url(url).render_as_string(hide_password=True)}", flush=True
        )
        try:
            rows.extend(
                asyncio.run(run_backend(backend, url, seconds, only, jobs_redis(args.jobs)))
            )
        except BackendUnavailable as exc:
            print(f"  [{backend}] skipped: {exc}", flush=True)
            continue
        print(table([r for r in rows if r.backend == backend]), flush=True)
        save(rows, seconds)  # a later backend's failure keeps this one's numbers
    print()
    print(table(rows))
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")
    if rows:
        print(f"results: {save(rows, seconds).relative_to(ROOT)}")


def save(rows: list[Row], seconds: int) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{dt.date.today().isoformat()}.json"
    out.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                "seconds_per_scenario": seconds,
                "rows": [{**r.__dict__, "target": r.target_verdict()} for r in rows],
            },
            indent=2,
            default=str,
        )
    )
    return out


if __name__ == "__main__":
    main()
