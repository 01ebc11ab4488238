"""Application factory: settings, database, middleware, error handlers and routers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry
from redis.asyncio import BlockingConnectionPool, Redis

from boxoffice import __version__
from boxoffice.accounts import lockout as accounts_lockout
from boxoffice.accounts.router import admin_router as accounts_admin_router
from boxoffice.accounts.router import router as accounts_router
from boxoffice.audit.router import router as audit_router
from boxoffice.booking import service as booking_service
from boxoffice.booking.expiry import expire_once
from boxoffice.booking.router import router as booking_router
from boxoffice.catalog.router import admin_router as catalog_admin_router
from boxoffice.catalog.router import router as catalog_router
from boxoffice.concessions.router import admin_router as concessions_admin_router
from boxoffice.concessions.router import router as concessions_router
from boxoffice.config import Settings, get_settings
from boxoffice.core.db import Database
from boxoffice.core.errors import install_error_handlers
from boxoffice.core.hardening import Hardening
from boxoffice.core.logging import configure_logging
from boxoffice.core.mail import Mailer
from boxoffice.core.middleware import HttpMetrics, RequestContextMiddleware
from boxoffice.core.openapi import install_problem_responses
from boxoffice.core.periodic import PeriodicJobs
from boxoffice.core.ratelimit import GeneralLimitMiddleware
from boxoffice.core.routing import add_routes
from boxoffice.core.security import VerifiedTokens, configure_password_hashing
from boxoffice.distribution import jobs as distribution_jobs
from boxoffice.distribution.router import admin_router as distribution_admin_router
from boxoffice.documents import jobs as documents_jobs
from boxoffice.documents.router import router as documents_router
from boxoffice.jobs import create_runner
from boxoffice.loyalty import jobs as loyalty_jobs
from boxoffice.loyalty.router import router as loyalty_router
from boxoffice.notifications import jobs as notifications_jobs
from boxoffice.notifications.router import router as notifications_router
from boxoffice.ops.router import router as ops_router
from boxoffice.payments import service as payments_service
from boxoffice.payments.reconcile import reconcile_once
from boxoffice.payments.router import router as payments_router
from boxoffice.payments.service import PaymentContext
from boxoffice.pricing.router import admin_router as pricing_admin_router
from boxoffice.pricing.router import router as pricing_router
from boxoffice.privacy import jobs as privacy_jobs
from boxoffice.privacy.router import router as privacy_router
from boxoffice.promotions.router import admin_router as promotions_admin_router
from boxoffice.promotions.router import router as promotions_router
from boxoffice.reporting import jobs as reporting_jobs  # noqa: F401  (registers its job)
from boxoffice.reporting.router import router as reporting_router
from boxoffice.reviews.router import admin_router as reviews_admin_router
from boxoffice.reviews.router import router as reviews_router
from boxoffice.scheduling.router import admin_router as scheduling_admin_router
from boxoffice.scheduling.router import router as scheduling_router
from boxoffice.scheduling.seat_map import SeatMapRenderer
from boxoffice.storage import storage_from_settings
from boxoffice.tickets.router import router as tickets_router
from boxoffice.venues.router import admin_router as venues_admin_router
from boxoffice.venues.router import router as venues_router

log = structlog.get_logger(__name__)


def _tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the long-lived startup objects.

    Each request allocates thousands of short-lived objects; with the default thresholds the
    collector ran so often, and over every module, route and mapper object, that it took
    about an eighth of a small request's CPU (measured with py-spy). Objects alive at startup
    are frozen out of its scans and the youngest generation collects less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    signing_key = settings.signing_key()  # refuses to start in production without a secret
    configure_password_hashing(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )

    # Payments report a success back to the booking use case (payments never imports booking).
    payments_service.set_success_handler(booking_service.confirm_paid_booking)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("startup", env=settings.env, database=app.state.db.backend)
        if settings.env != "test":  # a test session starts many apps in one process
            _tune_garbage_collector()
        notifications_jobs.install(app)  # the SMS sender; tier upgrades are notified
        await app.state.jobs.start()
        # Periodic jobs: each runs once per interval across all processes (a lease per job).
        periodic = PeriodicJobs(app.state.db)
        periodic.start(
            "booking-expiry", settings.expiry_interval_seconds, partial(expire_once, app)
        )
        periodic.start(
            "invoice-repair",
            settings.invoice_repair_interval_seconds,
            partial(documents_jobs.issue_missing_once, app),
        )
        periodic.start(
            "payment-reconciliation",
            settings.reconcile_interval_seconds,
            partial(reconcile_once, app),
        )
        periodic.start(
            "loyalty-earning",
            settings.loyalty_interval_seconds,
            partial(loyalty_jobs.earn_once, app),
        )
        periodic.start(
            "show-reminders",
            settings.reminder_interval_seconds,
            partial(notifications_jobs.remind_once, app),
        )
        periodic.start(
            "distribution-settlements",
            settings.settlement_interval_seconds,
            partial(distribution_jobs.record_once, app),
        )
        periodic.start(
            "login-failures-purge",
            settings.login_failure_window_seconds,
            partial(accounts_lockout.purge_once, app),
        )
        periodic.start(
            "unverified-account-retention",
            settings.retention_interval_seconds,
            partial(privacy_jobs.retention_once, app),
        )
        yield
        await periodic.stop()
        await app.state.jobs.stop()  # drains running jobs (BOXOFFICE_JOBS_SHUTDOWN_GRACE_SECONDS)
        await PaymentContext.of(app).registry.aclose()
        await app.state.storage.aclose()
        if app.state.redis is not None:
            await app.state.redis.aclose()
        await app.state.db.dispose()

    app = FastAPI(
        title="boxoffice",
        version=__version__,
        summary="Cinema booking backend: films, schedules, seats, orders, payments and tickets.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.signing_key = signing_key
    app.state.access_tokens = VerifiedTokens(signing_key)
    app.state.db = Database.from_settings(settings)
    app.state.mailer = Mailer(settings)
    app.state.storage = storage_from_settings(settings)
    app.state.redis = (
        # A blocking pool waits for a free connection instead of failing under load.
        Redis.from_pool(BlockingConnectionPool.from_url(settings.redis_url, timeout=5))
        if settings.redis_url
        else None
    )
    app.state.metrics = HttpMetrics(CollectorRegistry())
    app.state.seat_maps = SeatMapRenderer()
    app.state.jobs = create_runner(app)  # in-process, or the Redis queue (settings)

    install_error_handlers(app)
    if settings.rate_limit_enabled:  # innermost: its 429s get CORS headers and a request id
        app.add_middleware(GeneralLimitMiddleware)
    if settings.cors_origins:  # no layer at all (and no CORS headers) unless configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Location"],
            allow_credentials=settings.cors_allow_credentials,
            max_age=settings.cors_max_age,
        )
    docs_paths = (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=app.state.metrics,
        hardening=Hardening(settings, docs_paths),
    )

    # Starlette tries the routes in order, one regex match each: the onsale's (seat maps,
    # holds) go first. No two routes match the same request (tests/test_routes.py), so the
    # order changes nothing else.
    add_routes(
        app,
        scheduling_router,
        booking_router,
        ops_router,
        accounts_router,
        venues_router,
        catalog_router,
        tickets_router,
        documents_router,
        payments_router,
        concessions_router,
        loyalty_router,
        notifications_router,
        accounts_admin_router,
        venues_admin_router,
        catalog_admin_router,
        scheduling_admin_router,
        concessions_admin_router,
        promotions_router,
        promotions_admin_router,
        pricing_router,
        pricing_admin_router,
        audit_router,
        distribution_admin_router,
        reviews_router,
        reviews_admin_router,
        reporting_router,
        privacy_router,
    )
    install_problem_responses(app)
    return app
