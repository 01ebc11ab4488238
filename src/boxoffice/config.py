"""Settings from `BOXOFFICE_*` environment variables (or a `.env` file)."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from limits import parse as parse_rate_limit
from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "changethis", "dev", "test"}
MIN_SECRET_LENGTH = 32


class ConfigurationError(RuntimeError):
    """The settings cannot run the server (e.g. production without a secret key)."""


def _check_rate_limit(value: str) -> str:
    value = value.strip()
    if value:
        parse_rate_limit(value)  # ValueError: not a limit
    return value


RateLimitValue = Annotated[str, AfterValidator(_check_rate_limit)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BOXOFFICE_", env_file=".env", extra="ignore", validate_default=True
    )

    env: Literal["development", "production", "test"] = "development"
    var_dir: Path = Path("var")
    database_url: str = ""
    database_pool_size: int = Field(default=10, ge=1, le=200)
    # PostgreSQL: asyncpg's own pool for the one-statement hot paths (hold, release, seat
    # map; core.pgdriver), besides the engine's, opened by the first such request.
    database_hot_pool_size: int = Field(default=10, ge=1, le=200)
    # Units of work (database sessions) a process runs at once; more wait for a place
    # (core.admission). 0: as many as the pool has connections.
    database_concurrency: int = Field(default=3, ge=0, le=200)
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    log_level: str = "INFO"
    log_json: bool | None = None  # default: JSON in production, readable otherwise
    public_base_url: str = "http://127.0.0.1:8000"

    # HTTP hardening (`boxoffice.core.hardening`). CORS: browser origins allowed to call the
    # API (JSON list or comma-separated; empty: no CORS headers at all).
    cors_origins: Annotated[list[str], NoDecode] = []
    cors_allow_credentials: bool = False
    cors_max_age: int = Field(default=600, ge=0, le=86400)  # seconds a preflight is cached
    # Strict-Transport-Security max-age (0: header off; set it only when served over HTTPS).
    hsts_seconds: int = Field(default=0, ge=0)
    hsts_include_subdomains: bool = False
    # Larger request bodies are refused with 413 `body_too_large` (the largest legitimate one,
    # a 3,000-seat screen layout with every seat spelled out, is 190 KB; 425 KB pretty-printed).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Accounts
    access_token_ttl: int = Field(default=900, gt=0)  # seconds
    refresh_token_ttl: int = Field(default=30 * 24 * 3600, gt=0)
    email_token_ttl: int = Field(default=24 * 3600, gt=0)
    password_reset_ttl: int = Field(default=3600, gt=0)
    require_verified_email: bool = False
    # argon2id cost (OWASP minimum: 19 MiB, 2 passes); production refuses less than that.
    argon2_time_cost: int = Field(default=3, ge=1, le=20)
    argon2_memory_kib: int = Field(default=65536, ge=1024, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(default=2, ge=1, le=16)
    # Failed-login protection (`boxoffice.accounts.lockout`). Failures are counted per
    # (account, IP), per account across IPs and per IP across accounts, within a window that
    # restarts after it has passed. At a threshold the key is locked, first for the base time,
    # doubling with each further failure up to the cap; locks always expire.
    login_lockout_enabled: bool = True
    login_max_failures: int = Field(default=5, ge=1)  # one account from one IP
    login_account_max_failures: int = Field(default=50, ge=1)  # one account, all IPs
    login_ip_max_failures: int = Field(default=100, ge=1)  # one IP, all accounts
    login_failure_window_seconds: int = Field(default=3600, ge=1)
    login_lockout_base_seconds: int = Field(default=30, ge=1)
    login_lockout_max_seconds: int = Field(default=900, ge=1)  # (account, IP) and IP locks
    login_account_lockout_max_seconds: int = Field(default=300, ge=1)  # account-wide locks
    # An IP the account signed in from within this many days ignores account-wide locks.
    login_trusted_ip_days: int = Field(default=30, ge=0)
    # Admins must sign in with a one-time code to use any permission (and may not turn MFA off).
    require_admin_mfa: bool = False

    # File storage: with an S3 bucket, generated files (PDFs) go there and are handed out by
    # presigned URLs; without one, to var/files, served by the API. The endpoint URL points
    # at an S3-compatible service (MinIO, a local moto server); unset, AWS itself.
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_presign_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)

    # The seller named on invoices (each theater adds its own name and address).
    company_name: str = "boxoffice cinemas"
    company_address: str = ""
    company_vat_id: str = ""

    # Mail: with no SMTP host, messages are written to var/outbox as .eml files
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_use_tls: bool = False
    mail_from: str = "boxoffice <no-reply@boxoffice.local>"

    # Booking
    payment_provider: Literal["local", "stripe", "paypal"] = "local"
    hold_ttl: int = Field(default=600, gt=0)
    booking_ttl: int = Field(default=900, gt=0)
    max_seats_per_hold: int = Field(default=10, ge=1, le=100)
    # Live held seats per customer over all showtimes (anti-hoarding); 0: no cap. Staff exempt.
    max_held_seats_per_customer: int = Field(default=20, ge=0)
    sales_close_minutes: int = Field(default=0, ge=0)
    doors_open_minutes: int = Field(default=45, ge=0)
    ticket_signing_seed: SecretStr | None = Field(default=None, min_length=43, max_length=44)
    rate_limit_enabled: bool = True  # false: every rate limit below is off
    # Rate limits (boxoffice.core.ratelimit): "<count>/<second|minute|hour|day>", "" for none.
    # Each counts per signed-in caller (or per submitted email) and, higher, per client IP
    # (many customers may share one address). Guessing is stopped by the failed sign-in locks
    # (accounts.lockout), so these only cap floods: a school's NAT or a test suite signing up
    # and in from one address must not be refused (loopback peers have no per-IP windows at
    # all, see ratelimit.counted_ip). The default covers every /api request but the
    # payment webhooks; staff (cashier, operator, admin) are exempt from it and from holds.
    rate_limit_default: RateLimitValue = "6000/minute"
    rate_limit_default_per_ip: RateLimitValue = "12000/minute"
    rate_limit_login_per_email: RateLimitValue = "30/minute"
    rate_limit_login_per_ip: RateLimitValue = "60/minute"
    rate_limit_register_per_ip: RateLimitValue = "120/hour"
    rate_limit_password_per_email: RateLimitValue = "5/hour"  # forgot
    rate_limit_password_per_ip: RateLimitValue = "60/hour"  # forgot and reset together
    rate_limit_email_verification: RateLimitValue = "10/hour"  # verify and resend
    rate_limit_email_verification_per_ip: RateLimitValue = "120/hour"
    rate_limit_mfa: RateLimitValue = "10/minute"  # setup, enable, disable
    rate_limit_mfa_per_ip: RateLimitValue = "30/minute"
    rate_limit_promo_check: RateLimitValue = "10/minute"
    rate_limit_promo_check_per_ip: RateLimitValue = "60/minute"
    rate_limit_holds: RateLimitValue = "120/minute"  # lock-seats and lock-best
    rate_limit_holds_per_ip: RateLimitValue = "1200/minute"
    # Reverse proxies (IPs or CIDRs, comma-separated or a JSON list) whose X-Forwarded-For
    # names the client; a request from any other peer is that peer's.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    # Customers may refund until this long before the start; staff at any time.
    refund_cutoff_minutes: int = Field(default=60, ge=0)
    # Inside this many hours before the start, a customer's refund pays this fee (percent).
    cancellation_fee_hours: int = Field(default=24, ge=0)
    cancellation_fee_percent: int = Field(default=0, ge=0, le=100)
    # How often expired bookings are recorded (in one process per interval; 0: job off).
    expiry_interval_seconds: int = Field(default=30, ge=0)
    # How often confirmed bookings without an invoice get theirs (one process; 0: off; see
    # documents.jobs). Only a process stopped between a confirmation's commit and its invoice
    # leaves one.
    invoice_repair_interval_seconds: int = Field(default=60, ge=0)
    # How long a process's seat maps reuse a showtime's rule prices (0: re-read every time).
    # Rule changes made through this process apply at once; other processes' within this time.
    # Booking always prices fresh.
    price_cache_seconds: float = Field(default=5, ge=0, le=3600)
    # How often loyalty points are credited for shows that are over (one process; 0: off).
    loyalty_interval_seconds: int = Field(default=300, ge=0)

    # Payment providers. A provider is available (for new payments when it is
    # `payment_provider`, and for the webhooks and refunds of earlier ones) when its keys are set.
    # The API bases are the providers' live hosts; tests and sandboxes point them elsewhere.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_tolerance: int = Field(default=300, ge=1)
    paypal_client_id: str | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_webhook_id: str | None = None
    paypal_api_base: str = "https://api-m.paypal.com"
    # Where PayPal sends the customer after approving (or cancelling) the payment: the
    # cinema's checkout page, which then calls `POST /api/payments/paypal/capture`.
    paypal_return_url: str = "http://localhost:8000/checkout/paypal/return"
    paypal_cancel_url: str = "http://localhost:8000/checkout/paypal/cancel"
    # Each call to a provider: its timeout, and how often a timeout or 5xx is retried (with the
    # same idempotency key, so a retry never charges twice).
    payment_provider_timeout: float = Field(default=10.0, gt=0)
    payment_provider_retries: int = Field(default=2, ge=0, le=10)
    # Reconciliation: payments still pending this long are checked with their provider, by
    # `boxoffice payments reconcile` and by a job every `reconcile_interval_seconds` (0: off).
    reconcile_after_minutes: int = Field(default=15, ge=1)
    reconcile_interval_seconds: int = Field(default=600, ge=0)

    # Jobs (`boxoffice.jobs`): work enqueued to run after a commit, retried with backoff.
    # Backend: "redis" (a queue in Redis, run by `boxoffice worker`) or "inprocess" (tasks of
    # each server process); unset, redis when `redis_url` is set.
    jobs_backend: Literal["inprocess", "redis"] | None = None
    jobs_queue: str = Field(default="boxoffice:jobs", min_length=1, max_length=200)  # Redis key
    jobs_concurrency: int = Field(default=8, ge=1, le=1000)  # jobs at once per process
    jobs_max_attempts: int = Field(default=5, ge=1, le=100)  # unless the job says otherwise
    # Wait before attempt n+1: between half and all of base x 2^(n-1) seconds, at most cap.
    jobs_retry_base_seconds: float = Field(default=1.0, gt=0)
    jobs_retry_cap_seconds: float = Field(default=300.0, gt=0)
    # At shutdown, running (and in-process: queued and retrying) jobs get this long to finish.
    jobs_shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    # Notifications (`boxoffice.notifications`). SMS go through "outbox" (text files in
    # var/outbox, and a log line) or "twilio" (its REST API; needs the SID, token and sender).
    sms_provider: Literal["outbox", "twilio"] = "outbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None  # the sending number (E.164) or messaging sender id
    twilio_api_base: str = "https://api.twilio.com"
    # Show reminders go out this many hours before the start, checked every interval (0: off).
    reminder_hours_before: int = Field(default=24, ge=1, le=24 * 14)
    reminder_interval_seconds: int = Field(default=600, ge=0)

    # Reports (`boxoffice.reporting`): one with more rows than this, or over a longer range
    # (days), is generated by a job into storage and fetched when ready; smaller ones at once.
    report_inline_max_rows: int = Field(default=5000, ge=0)
    report_inline_max_days: int = Field(default=366, ge=1)

    # Distribution (`boxoffice.distribution`). With contracts required, every movie needs an
    # active rental contract covering a showtime's local date and format to be scheduled;
    # off (the default), only movies that have a contract are held to it, so cinemas that do
    # not track rentals yet schedule as before. Completed contract-weeks are recorded as
    # settlements due every interval (one process; 0: off).
    require_film_contracts: bool = False
    settlement_interval_seconds: int = Field(default=3600, ge=0)

    # Privacy (`boxoffice.privacy`): customer accounts whose email was never verified are
    # purged this many days after sign-up (deleted, or anonymised when bookings must be kept),
    # checked every interval (one process; 0: off).
    unverified_account_retention_days: int = Field(default=30, ge=1)
    retention_interval_seconds: int = Field(default=3600, ge=0)

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """A JSON list, or comma-separated values (what an environment variable holds)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(entry, strict=False)) for entry in value]

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.var_dir / 'boxoffice.db').as_posix()}"
        return self

    @model_validator(mode="after")
    def _redis_jobs_need_redis(self) -> Settings:
        if self.jobs_backend == "redis" and not self.redis_url:
            raise ValueError("BOXOFFICE_JOBS_BACKEND=redis needs BOXOFFICE_REDIS_URL")
        return self

    @model_validator(mode="after")
    def _twilio_needs_credentials(self) -> Settings:
        if self.sms_provider == "twilio" and not (
            self.twilio_account_sid and self.twilio_auth_token and self.twilio_from
        ):
            raise ValueError(
                "BOXOFFICE_SMS_PROVIDER=twilio needs BOXOFFICE_TWILIO_ACCOUNT_SID, "
                "BOXOFFICE_TWILIO_AUTH_TOKEN and BOXOFFICE_TWILIO_FROM"
            )
        return self

    @model_validator(mode="after")
    def _strong_hashing_in_production(self) -> Settings:
        if self.env == "production" and (
            self.argon2_memory_kib < 19 * 1024 or self.argon2_time_cost < 2
        ):
            raise ValueError("argon2 cost below the OWASP minimum (19 MiB, 2 passes)")
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def jobs_use_redis(self) -> bool:
        """Jobs go to the Redis queue (else they run in the server processes)."""
        if self.jobs_backend is None:
            return bool(self.redis_url)
        return self.jobs_backend == "redis"

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.is_production

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"

    @property
    def files_dir(self) -> Path:
        """Generated files (PDFs) when no S3 bucket is configured."""
        return self.var_dir / "files"

    def signing_key(self) -> str:
        """The secret used for JWTs and other signatures.

        Production refuses to run without a real one; development generates one once and keeps
        it under var/ so tokens survive restarts.
        """
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if self.is_production and (
                value.lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_LENGTH
            ):
                raise ConfigurationError(
                    f"BOXOFFICE_SECRET_KEY must be a random string of at least "
                    f"{MIN_SECRET_LENGTH} characters in production"
                )
            return value
        if self.is_production:
            raise ConfigurationError(
                "BOXOFFICE_SECRET_KEY is required when BOXOFFICE_ENV=production"
            )
        return _development_secret(self.var_dir / "secret_key")


def _development_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # Write a private temp file, then link it into place: link fails if another process won
    # the race, and a reader never sees a half-written key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    try:
        os.link(tmp, path)
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        tmp.unlink()
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
