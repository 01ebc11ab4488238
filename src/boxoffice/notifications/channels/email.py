"""Email: a rendered message (plain text with an HTML alternative, attachments) through the
app's `Mailer` (SMTP with aiosmtplib, or `.eml` files in var/outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from boxoffice.core.mail import Mailer
from boxoffice.notifications.rendering import Email

# Lets mail filters (and tests) tell the notifications apart.
KIND_HEADER = "X-Boxoffice-Notification"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "application/pdf", "text/calendar; method=PUBLISH"
    data: bytes


def compose(
    mailer: Mailer, to: str, kind: str, email: Email, attachments: Sequence[Attachment] = ()
) -> EmailMessage:
    """multipart/alternative (text, HTML), inside multipart/mixed when there are attachments.
    Attachments are base64, so their bytes (an .ics file's CRLF line ends) arrive unchanged."""
    message = mailer.compose(to, email.subject, email.text, email.html)
    message[KIND_HEADER] = kind
    for attachment in attachments:
        content_type, _, parameters = attachment.content_type.partition(";")
        maintype, _, subtype = content_type.strip().partition("/")
        params = {}
        for parameter in parameters.split(";"):
            key, _, value = parameter.strip().partition("=")
            if key:
                params[key] = value
        message.add_attachment(
            attachment.data,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            params=params,
        )
    return message


async def send(mailer: Mailer, message: EmailMessage) -> None:
    await mailer.send(message)
