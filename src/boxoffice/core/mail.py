"""Outgoing mail: SMTP when configured, otherwise `.eml` files in var/outbox."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import aiosmtplib
import structlog

from boxoffice.config import Settings
from boxoffice.core.clock import utcnow

log = structlog.get_logger(__name__)


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def compose(self, to: str, subject: str, text: str, html: str | None = None) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = make_msgid(domain="boxoffice.local")
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
        return message

    async def send(self, message: EmailMessage) -> None:
        settings = self.settings
        if settings.smtp_host:
            await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=(
                    settings.smtp_password.get_secret_value() if settings.smtp_password else None
                ),
                start_tls=settings.smtp_starttls and not settings.smtp_use_tls,
                use_tls=settings.smtp_use_tls,
                timeout=15,
            )
        else:
            path = await asyncio.to_thread(_write_outbox, settings.outbox_dir, message)
            log.info("mail_written_to_outbox", path=str(path), subject=message["Subject"])


def _write_outbox(outbox: Path, message: EmailMessage) -> Path:
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
    path.write_bytes(message.as_bytes())
    return path
