"""Mail through a real SMTP server (aiosmtpd on loopback) and structured logs."""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from asgi_lifespan import LifespanManager

from boxoffice.app import create_app
from tests.conftest import Backend, make_settings
from tests.helpers import DEFAULT_PASSWORD


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.mark.backends("sqlite", "postgres")
async def test_mail_goes_through_smtp_when_configured(
    make_client: Callable[..., Awaitable[httpx.AsyncClient]],
    smtp_server: tuple[Inbox, int],
    tmp_path: Path,
) -> None:
    inbox, port = smtp_server
    client = await make_client(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        mail_from="Kino <tickets@kino.example>",
    )
    response = await client.post(
        "/api/auth/register",
        json={"email": "mia@example.com", "password": DEFAULT_PASSWORD, "fullName": "Mia"},
    )
    assert response.status_code == 201
    assert len(inbox.messages) == 1
    sender, recipients, message = inbox.messages[0]
    assert sender == "tickets@kino.example"
    assert recipients == ["mia@example.com"]
    assert message["Subject"] == "Confirm your email address"
    # Plain text with an HTML alternative: the link is in the text part.
    [plain] = [part for part in message.walk() if part.get_content_type() == "text/plain"]
    assert "verify-email?token=" in plain.get_payload(decode=True).decode()
    assert not (tmp_path / "var" / "outbox").exists()  # nothing went to the file outbox


@pytest.mark.backends("sqlite")
async def test_production_logs_are_json_lines_with_the_request_id(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(
        backend,
        tmp_path,
        env="production",
        secret_key="p" * 48,
        log_level="INFO",
        argon2_time_cost=2,
        argon2_memory_kib=19 * 1024,
    )
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        capsys.readouterr()
        await http.get("/healthz", headers={"X-Request-ID": "log-check-1"})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    request_lines = [r for r in records if r.get("event") == "request"]
    assert request_lines, lines
    assert request_lines[-1]["request_id"] == "log-check-1"
    assert request_lines[-1]["route"] == "/healthz"
    assert request_lines[-1]["status"] == 200
