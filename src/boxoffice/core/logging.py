"""structlog set-up: JSON lines in production, readable console output in development.

Secrets never reach the log: `redact` replaces the values of sensitive keys (passwords,
tokens, secrets, one-time codes, card numbers, authorization headers) at any depth, and
scrubs strings (messages, paths, URLs, exception texts) of bearer tokens, JWTs, token query
parameters, QR ticket tokens in paths, card numbers and the parameters SQLAlchemy puts into
its error messages. The standard library's records get the same scrubbing.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import orjson
import structlog

from boxoffice.config import Settings

REDACTED = "[REDACTED]"

# Keys (compared lower-cased without "_" and "-") whose values are never logged.
_SENSITIVE_KEYS = frozenset(
    {
        "password",
        "newpassword",
        "currentpassword",
        "oldpassword",
        "passwordhash",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "qrtoken",
        "tokenhash",
        "secret",
        "clientsecret",
        "paymentclientsecret",
        "mfasecret",
        "secretkey",
        "apikey",
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "otp",
        "pickupcode",
        "card",
        "cardnumber",
        "pan",
        "cvc",
        "cvv",
        "signature",
        "stripesignature",
    }
)
_SENSITIVE_SUFFIXES = ("password", "token", "secret", "apikey")

_SCRUBBERS: tuple[tuple[re.Pattern[str], str], ...] = (
    # SQLAlchemy appends the statement's parameters (emails, hashes) to its error messages.
    (re.compile(r"\[parameters: .*?\](?=\n|$)", re.DOTALL), "[parameters: " + REDACTED + "]"),
    # A database's "Key (column)=(value) already exists".
    (re.compile(r"(Key \([^)]*\)=\()[^)]*(\))"), r"\1" + REDACTED + r"\2"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    # JSON Web Tokens wherever they appear.
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # Query parameters and form fields carrying credentials: ?token=..., &password=...
    (
        re.compile(
            r"(?i)([?&;\s\"'](?:[a-z_]*token|[a-z_]*secret|[a-z_]*password|otp|code|key|sig"
            r"|signature)=)[^&\s\"'#]+"
        ),
        r"\1" + REDACTED,
    ),
    # A ticket's QR token is the credential in its image URLs.
    (
        re.compile(r"(/tickets/qr/)(?!\{)[^/?#\s]+?(\.(?:png|svg))?(?=$|[?#\s])"),
        r"\1" + REDACTED + r"\2",
    ),
    # Card numbers: 13 to 19 digits, optionally grouped by spaces or dashes.
    (re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])"), REDACTED),
)
# Cheap pre-check: most strings (event names, ids, routes, paths) need no scrubbing at all.
# Substring tests and one digit pattern (the shortest card number the scrubber replaces)
# rather than one case-insensitive alternation: redacting a request's log line went from ~23 to
# ~8 µs.
_CARD_LIKE = re.compile(r"\d(?:[ -]?\d){12}")


def _maybe_sensitive(text: str) -> bool:
    if "=" in text or "eyJ" in text:
        return True
    folded = text.lower()
    return (
        "parameters" in folded
        or "key (" in folded
        or "bearer" in folded
        or "/tickets/qr/" in folded
        or _CARD_LIKE.search(text) is not None
    )


@lru_cache(maxsize=1024)
def is_sensitive_key(key: str) -> bool:
    folded = key.lower().replace("_", "").replace("-", "")
    return folded in _SENSITIVE_KEYS or folded.endswith(_SENSITIVE_SUFFIXES)


def scrub(text: str) -> str:
    """The text with credentials replaced by [REDACTED]."""
    if not _maybe_sensitive(text):
        return text
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and is_sensitive_key(key) and item is not None
            else _clean(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(item, depth + 1) for item in value]
    return value


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: no password, token, secret or card number reaches the output."""
    for key, value in event_dict.items():
        if is_sensitive_key(key) and value is not None:
            event_dict[key] = REDACTED
        elif isinstance(value, str | dict | list | tuple):
            event_dict[key] = _clean(value)
    return event_dict


class RedactingFilter(logging.Filter):
    """The same scrubbing for records of the standard library's loggers (libraries)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if settings.json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,  # after the exception is formatted: its text is scrubbed too
            # Ours, added after `redact`: nothing in them to scrub.
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Look up sys.stderr at each use: whoever replaced it (a test runner) may close it later.
        logger_factory=lambda *_: structlog.WriteLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library end up in the same stream.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(message)s")
    # The root's handlers, and uvicorn's own (its loggers do not propagate to the root).
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def _json_line(event: object, **_: object) -> str:
    # orjson: the access log renders one line per request; the standard library's json took
    # a noticeable share of a small request's CPU.
    return orjson.dumps(event, default=str).decode()
