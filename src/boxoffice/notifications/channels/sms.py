"""SMS: a `SmsSender` per app, chosen by `BOXOFFICE_SMS_PROVIDER`.

- `OutboxSms` (embedded default): writes `var/outbox/sms-<timestamp>-<id>.txt` and logs it.
- `TwilioSms`: Twilio's REST API over httpx, `POST {api_base}/2010-04-01/Accounts/{sid}/
  Messages.json` with the form fields `To`, `From`, `Body` and HTTP basic auth (account SID,
  auth token); 201 with the message's `sid` is a success.

Failures: `PermanentSmsError` (a 4xx: a bad number, an unverified sender, wrong credentials...
sending again cannot help, so the job gives up) and `TransientSmsError` (5xx, 429, timeouts,
connection errors: the job raises it and is retried with backoff).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Protocol

import httpx
import structlog

from boxoffice.config import Settings
from boxoffice.core.clock import utcnow

log = structlog.get_logger(__name__)


class SmsError(Exception):
    """The message was not sent."""


class PermanentSmsError(SmsError):
    """Sending it again would fail the same way (do not retry)."""


class TransientSmsError(SmsError):
    """The gateway may take it later (retry)."""


class SmsSender(Protocol):
    name: str

    async def send(self, to: str, body: str) -> str:
        """Send `body` to the number `to`; the provider's id of the message."""
        ...


def normalize_number(phone: str) -> str:
    """`+1 (555) 010-9999` -> `+15550109999`: the digits, with the leading + if it had one."""
    digits = re.sub(r"\D", "", phone)
    return f"+{digits}" if phone.strip().startswith("+") else digits


class OutboxSms:
    """The embedded sender: one text file per message in var/outbox (To, then the body)."""

    name = "outbox"

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    async def send(self, to: str, body: str) -> str:
        message_id = uuid.uuid4().hex[:12]
        path = await asyncio.to_thread(self._write, to, body, message_id)
        log.info("sms_written_to_outbox", path=str(path), to=to)
        return message_id

    def _write(self, to: str, body: str, message_id: str) -> Path:
        self.outbox.mkdir(parents=True, exist_ok=True)
        path = self.outbox / f"sms-{utcnow():%Y%m%dT%H%M%S%f}-{message_id}.txt"
        path.write_text(f"To: {to}\n\n{body}\n", encoding="utf-8")
        return path


class TwilioSms:
    """Twilio's Programmable Messaging REST API."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base: str = "https://api.twilio.com",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.url = f"{api_base.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.timeout = timeout
        self.transport = transport

    async def send(self, to: str, body: str) -> str:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
                response = await http.post(
                    self.url,
                    data={"To": to, "From": self.from_number, "Body": body},
                    auth=(self.account_sid, self.auth_token),
                    headers={"Accept": "application/json"},
                )
        except httpx.TransportError as exc:  # timeouts, refused connections
            raise TransientSmsError(f"Twilio unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (200, 201):
            sid = _json(response).get("sid")
            if not isinstance(sid, str) or not sid:
                raise TransientSmsError("Twilio answered without a message sid")
            log.info("sms_sent", provider=self.name, sid=sid)
            return sid
        problem = _json(response)
        detail = f"Twilio {response.status_code}: {problem.get('code')} {problem.get('message')}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSmsError(detail)
        raise PermanentSmsError(detail)


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def sms_sender_from_settings(settings: Settings) -> SmsSender:
    if settings.sms_provider == "twilio":
        sid, token, sender = (
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_from,
        )
        if not (sid and token and sender):  # the settings refuse this; a clear error anyway
            raise ValueError("Twilio needs an account SID, an auth token and a sender")
        return TwilioSms(
            account_sid=sid,
            auth_token=token.get_secret_value(),
            from_number=sender,
            api_base=settings.twilio_api_base,
        )
    return OutboxSms(settings.outbox_dir)
