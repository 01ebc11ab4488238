"""The `boxoffice` command: serve, worker, db (migrations, backup, restore), demo data, users,
payments, invoices."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.config import ConfigurationError, Settings, get_settings
from boxoffice.core import serving
from boxoffice.core.db import Database
from boxoffice.core.errors import BoxofficeError
from boxoffice.core.logging import configure_logging
from boxoffice.migrations import alembic_config

app = typer.Typer(help="boxoffice: cinema booking backend.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema, backup and restore.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
payments_app = typer.Typer(help="Payments.", no_args_is_help=True)
invoices_app = typer.Typer(help="Invoices.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(payments_app, name="payments")
app.add_typer(invoices_app, name="invoices")

T = TypeVar("T")


def _with_session(work: Callable[..., Awaitable[T]]) -> T:
    """Run `work(session)` in one committed transaction against the configured database."""
    settings = get_settings()
    configure_logging(settings)

    async def runner() -> T:
        database = Database.from_settings(settings)
        try:
            async with database.session() as session:
                return await work(session)
        finally:
            await database.dispose()

    return asyncio.run(runner())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
    factory: Annotated[
        str, typer.Option("--app", hidden=True, help="The app factory (the benchmark's).")
    ] = "boxoffice.app:create_app",
) -> None:
    """Serve the HTTP API. With several workers, each listens on a socket of its own (on
    Linux), so that a burst of new connections is spread over them."""
    settings = get_settings()
    try:
        settings.signing_key()
    except ConfigurationError as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(2) from exc
    options: dict[str, Any] = {
        "access_log": False,  # the app logs every request with its request id
        "proxy_headers": True,
        "log_level": settings.log_level.lower(),
    }
    if reload:
        uvicorn.run(factory, factory=True, host=host, port=port, reload=True, **options)
        return
    try:
        serving.serve(factory, host=host, port=port, workers=workers, **options)
    except serving.AddressInUse as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs at once (default: BOXOFFICE_JOBS_CONCURRENCY)."),
    ] = None,
) -> None:
    """Run jobs from the Redis queue (BOXOFFICE_REDIS_URL) until SIGINT or SIGTERM; run as
    many workers as needed. Running jobs get BOXOFFICE_JOBS_SHUTDOWN_GRACE_SECONDS to end."""
    settings = get_settings()
    if not settings.jobs_use_redis:
        typer.echo(
            "refusing to start: jobs run inside the server processes; a worker needs "
            "BOXOFFICE_REDIS_URL (and BOXOFFICE_JOBS_BACKEND unset or redis)",
            err=True,
        )
        raise typer.Exit(2)
    if concurrency is not None:
        settings = settings.model_copy(update={"jobs_concurrency": concurrency})
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    from boxoffice.app import create_app
    from boxoffice.jobs.redis import run_worker

    application = create_app(settings)  # every job module is imported with the app
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with application.router.lifespan_context(application):
        await run_worker(application, stop)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations (default: up to the newest)."""
    command.upgrade(alembic_config(get_settings().database_url), revision)
    typer.echo(f"database upgraded to {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()]) -> None:
    """Revert migrations down to REVISION (`base` empties the schema)."""
    command.downgrade(alembic_config(get_settings().database_url), revision)
    typer.echo(f"database downgraded to {revision}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's migration revision."""
    command.current(alembic_config(get_settings().database_url), verbose=False)


@db_app.command("backup")
def db_backup(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write (default: var/backups/boxoffice-<backend>-<UTC time>.<ext>).",
        ),
    ] = None,
) -> None:
    """Back up the database while the servers run (SQLite online backup, pg_dump, or
    mariadb-dump/mysqldump)."""
    from boxoffice.ops import backup as backups

    try:
        result = backups.backup(get_settings(), output)
    except backups.BackupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from exc
    typer.echo(f"backup written to {result.path} ({backups.human_size(result.size)})")


@db_app.command("restore")
def db_restore(
    path: Annotated[Path, typer.Argument(help="A file written by `boxoffice db backup`.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace all data of the database with a backup. Stop every server and worker first."""
    from boxoffice.ops import backup as backups

    settings = get_settings()
    try:
        info = backups.inspect_backup(settings, path)
        target = backups.Target.of(settings).describe()
        typer.echo(
            f"This replaces all data of {target} with {path} (revision {info.revision}). "
            "Every server and worker must be stopped."
        )
        if not yes and not typer.confirm("Restore?"):
            raise typer.Exit(1)
        backups.restore(settings, info)
    except backups.BackupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from exc
    typer.echo(backups.next_steps(info))


@app.command()
def demo() -> None:
    """Load demo data (idempotent): cities, theaters, halls, movies, a week of showtimes."""
    from boxoffice.demo import DEMO_ACCOUNTS, load_demo

    summary = _with_session(load_demo)
    typer.echo(summary)
    typer.echo("Demo logins:")
    for account in DEMO_ACCOUNTS:
        typer.echo(f"  {account.role:<9} {account.email:<28} {account.password}")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Login email.")],
    password: Annotated[str, typer.Option(help="Password (policy applies).")],
    role: Annotated[str, typer.Option(help="customer, cashier, operator or admin.")] = "customer",
    full_name: Annotated[str, typer.Option("--name", help="Full name.")] = "",
) -> None:
    """Create a user (verified email) with the given role."""
    from boxoffice.accounts.service import create_user

    async def work(session: AsyncSession) -> str:
        user = await create_user(
            session,
            email=email,
            password=password,
            full_name=full_name or email.split("@")[0],
            role=role,
            verified=True,
        )
        return f"created {user.role} {user.email} ({user.id})"

    try:
        typer.echo(_with_session(work))
    except BoxofficeError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


@payments_app.command("reconcile")
def payments_reconcile(
    since: Annotated[
        dt.datetime | None,
        typer.Option(help="Only payments created at or after this time (ISO 8601; UTC if naive)."),
    ] = None,
    older_than: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Minutes a payment must have been pending (BOXOFFICE_RECONCILE_AFTER_MINUTES).",
        ),
    ] = None,
) -> None:
    """Ask the providers about payments still pending and apply what they say (a lost
    webhook's payment confirms its booking)."""
    from boxoffice.app import create_app
    from boxoffice.payments.reconcile import reconcile_pending
    from boxoffice.payments.service import PaymentContext

    settings = get_settings()
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    minutes = settings.reconcile_after_minutes if older_than is None else older_than

    async def runner() -> dict[str, int]:
        application = create_app(settings)  # registers what a successful payment does
        ctx = PaymentContext.of(application)
        jobs = application.state.jobs
        await jobs.start()  # confirmations notify customers through jobs
        try:
            report = await reconcile_pending(
                application.state.db, ctx, older_than=dt.timedelta(minutes=minutes), since=since
            )
        finally:
            await jobs.stop()  # in-process: the mails of this run go out before we leave
            await ctx.registry.aclose()
            await application.state.db.dispose()
        return report.as_dict()

    report = asyncio.run(runner())
    typer.echo(" ".join(f"{name}={count}" for name, count in report.items()))
    if report["errors"]:
        raise typer.Exit(1)


@invoices_app.command("repair")
def invoices_repair(
    days: Annotated[
        int, typer.Option(min=1, help="Look at bookings confirmed in the last DAYS days.")
    ] = 7,
) -> None:
    """Issue the invoices of confirmed bookings that have none (their server stopped between
    the confirmation and its invoice). The periodic job looks one week back when a server
    starts; after a longer outage, run this with more days."""
    from boxoffice.documents.service import issue_missing_invoices

    settings = get_settings()
    configure_logging(settings)

    async def runner() -> int:
        database = Database.from_settings(settings)
        try:
            return await issue_missing_invoices(database, window=dt.timedelta(days=days))
        finally:
            await database.dispose()

    typer.echo(f"issued={asyncio.run(runner())}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
