"""Signed ticket tokens, the published public key, a booking's tickets and their QR images."""

from __future__ import annotations

import base64
import datetime as dt
import io
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import zxingcpp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import event, select, update

from boxoffice.accounts.models import User
from boxoffice.booking.models import Booking
from boxoffice.config import ConfigurationError, Settings
from boxoffice.core.clock import utcnow
from boxoffice.tickets import service
from boxoffice.tickets.models import Ticket
from boxoffice.tickets.signing import TicketSigner, ticket_signer
from tests.factories import seed_confirmed_booking
from tests.helpers import make_user

SECRET = "a-test-secret-that-is-long-enough-0123456789"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextmanager
def sql_statements(app: FastAPI) -> Iterator[list[str]]:
    """Every statement the app's engine sends while the block runs."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def app_signer(app: FastAPI) -> TicketSigner:
    return ticket_signer(app.state.settings, app.state.signing_key)


# ---------------------------------------------------------------------------------------------
# Tokens (no database)


def test_token_round_trip_is_compact_and_url_safe() -> None:
    signer = TicketSigner.from_secret(SECRET)
    ticket_id, showtime_id = uuid.uuid4(), uuid.uuid4()
    token = signer.sign(ticket_id, showtime_id)
    assert len(token) == 119
    assert set(token) <= set(ALPHABET)
    claims = signer.verify(token)
    assert claims is not None
    assert claims.ticket_id == ticket_id
    assert claims.showtime_prefix == showtime_id.bytes[:8]
    assert claims.is_for_showtime(showtime_id)
    assert not claims.is_for_showtime(uuid.uuid4())
    # Deterministic: the token shown later is the one issued.
    assert signer.sign(ticket_id, showtime_id) == token


def test_every_single_byte_alteration_is_rejected() -> None:
    signer = TicketSigner.from_secret(SECRET)
    raw = bytearray(b64decode(signer.sign(uuid.uuid4(), uuid.uuid4())))
    assert len(raw) == 89
    for index in range(len(raw)):
        for value in range(256):
            if value == raw[index]:
                continue
            altered = bytearray(raw)
            altered[index] = value
            assert signer.verify(b64encode(bytes(altered))) is None, (index, value)


def test_every_single_character_alteration_is_rejected() -> None:
    signer = TicketSigner.from_secret(SECRET)
    token = signer.sign(uuid.uuid4(), uuid.uuid4())
    for index, original in enumerate(token):
        for char in ALPHABET + "=+/.~ ":
            if char != original:
                altered = token[:index] + char + token[index + 1 :]
                assert signer.verify(altered) is None, (index, char)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-1], id="truncated"),
        pytest.param(lambda t: t[:60], id="half"),
        pytest.param(lambda t: t + "A", id="extended"),
        pytest.param(lambda t: t + "=", id="padded"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "not a token", id="text"),
        pytest.param(lambda t: "!" * 119, id="not-base64"),
        pytest.param(lambda t: t.upper(), id="case"),
        pytest.param(lambda t: base64.b64encode(b64decode(t)).decode(), id="standard-base64"),
    ],
)
def test_malformed_tokens_are_rejected(mangle: Any) -> None:
    signer = TicketSigner.from_secret(SECRET)
    assert signer.verify(mangle(signer.sign(uuid.uuid4(), uuid.uuid4()))) is None


def test_wrong_version_or_other_key_is_rejected() -> None:
    key = Ed25519PrivateKey.generate()
    signer = TicketSigner(key)
    payload = bytes([2]) + uuid.uuid4().bytes + uuid.uuid4().bytes[:8]
    assert signer.verify(b64encode(payload + key.sign(payload))) is None  # well signed, v2
    assert signer.verify(b64encode(bytes([1]) + payload[1:] + key.sign(bytes([1]) + payload[1:])))
    other = TicketSigner.from_secret(SECRET + "-other")
    assert TicketSigner.from_secret(SECRET).verify(other.sign(uuid.uuid4(), uuid.uuid4())) is None


def test_every_process_derives_the_same_key_and_a_seed_pins_it() -> None:
    token = TicketSigner.from_secret(SECRET).sign(uuid.uuid4(), uuid.uuid4())
    assert TicketSigner.from_secret(SECRET).verify(token) is not None  # another process
    assert (
        TicketSigner.from_secret(SECRET).public_key_bytes
        != TicketSigner.from_secret(SECRET + "x").public_key_bytes
    )

    seed = bytes(range(32))
    expected = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    for spelling in (b64encode(seed), b64encode(seed) + "="):
        settings = Settings(_env_file=None, ticket_signing_seed=spelling)  # type: ignore[call-arg]
        assert ticket_signer(settings, SECRET).public_key_bytes == expected
    assert ticket_signer(Settings(_env_file=None), SECRET).public_key_bytes != expected  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param("!" * 43, id="alphabet"),
        pytest.param("A" * 42 + "_", id="unused-bits-set"),
        pytest.param(base64.urlsafe_b64encode(bytes(32)).decode()[:-2], id="31-bytes"),
    ],
)
def test_a_malformed_seed_is_refused(seed: str) -> None:
    with pytest.raises(ConfigurationError):
        TicketSigner.from_seed(seed)


def test_a_seed_of_the_wrong_length_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="ticket_signing_seed"):
        Settings(_env_file=None, ticket_signing_seed="A" * 20)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------------------
# Public key


async def test_public_key_lets_a_scanner_verify_offline(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    customer = await make_user(app)
    seeded = await seed_confirmed_booking(app, customer.id, ["A1"])

    response = await client.get("/api/checkin/public-key")  # no sign-in needed
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["algorithm"] == "Ed25519"
    assert "119" in body["format"]
    assert "Cache-Control" in response.headers

    tickets = (
        await client.get(f"/api/bookings/{seeded.booking_id}/tickets", headers=customer.headers)
    ).json()["tickets"]
    token = tickets[0]["qrToken"]

    # The scanner: only the published key and the documented layout.
    public_key = Ed25519PublicKey.from_public_bytes(b64decode(body["publicKey"]))
    raw = b64decode(token)
    public_key.verify(raw[25:], raw[:25])  # raises if not signed by the server
    assert raw[0] == 1
    assert uuid.UUID(bytes=raw[1:17]) == seeded.ticket_ids[0]
    assert raw[17:25] == seeded.showtime_id.bytes[:8]
    altered = bytes([raw[0], raw[1] ^ 1]) + raw[2:]
    with pytest.raises(InvalidSignature):
        public_key.verify(altered[25:], altered[:25])


# ---------------------------------------------------------------------------------------------
# A booking's tickets


async def test_owner_lists_tickets_in_seat_order_with_tokens_and_images(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    customer = await make_user(app)
    seeded = await seed_confirmed_booking(app, customer.id, ["B10", "B2", "A3"], seats_per_row=12)

    response = await client.get(
        f"/api/bookings/{seeded.booking_id}/tickets", headers=customer.headers
    )
    assert response.status_code == 200, response.text
    tickets = response.json()["tickets"]
    assert [t["seatLabel"] for t in tickets] == ["A3", "B2", "B10"]
    assert {uuid.UUID(t["id"]) for t in tickets} == set(seeded.ticket_ids)
    signer = app_signer(app)
    for ticket in tickets:
        assert ticket["status"] == "valid"
        assert len(ticket["qrToken"]) <= 120
        claims = signer.verify(ticket["qrToken"])
        assert claims is not None
        assert str(claims.ticket_id) == ticket["id"]
        assert ticket["qrPngUrl"].endswith(f"/api/tickets/qr/{ticket['qrToken']}.png")
        assert ticket["qrSvgUrl"].endswith(f"/api/tickets/qr/{ticket['qrToken']}.svg")
        png = await client.get(ticket["qrPngUrl"])
        assert png.status_code == 200
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")

    # The same tokens every time (nothing stored, nothing random).
    again = await client.get(f"/api/bookings/{seeded.booking_id}/tickets", headers=customer.headers)
    assert [t["qrToken"] for t in again.json()["tickets"]] == [t["qrToken"] for t in tickets]


async def test_staff_read_any_booking_others_get_not_found(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await make_user(app)
    seeded = await seed_confirmed_booking(app, owner.id, ["A1", "A2"])
    url = f"/api/bookings/{seeded.booking_id}/tickets"

    for role in ("cashier", "operator", "admin"):
        staff = await make_user(app, role)
        response = await client.get(url, headers=staff.headers)
        assert response.status_code == 200, (role, response.text)
        assert len(response.json()["tickets"]) == 2

    stranger = await make_user(app)
    response = await client.get(url, headers=stranger.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    unknown = await client.get(f"/api/bookings/{uuid.uuid4()}/tickets", headers=owner.headers)
    assert unknown.status_code == 404
    assert unknown.json()["title"] == response.json()["title"]  # the same answer: no hint
    assert (await client.get(url)).status_code == 401
    bad_id = await client.get("/api/bookings/not-a-uuid/tickets", headers=owner.headers)
    assert bad_id.status_code == 422


@pytest.mark.parametrize(
    "change",
    [
        {"is_active": False},
        {"password_changed_at": "later"},
        {"sessions_revoked_at": "later"},
    ],
)
async def test_the_owner_with_a_stale_token_or_a_closed_account_lists_nothing(
    client: httpx.AsyncClient, app: FastAPI, change: dict[str, Any]
) -> None:
    # The owner's list checks the account inside its statement on PostgreSQL (no account
    # read): a deactivated account, or a token issued before a password change or a "sign out
    # everywhere", is refused as on every other signed-in route.
    owner = await make_user(app)
    seeded = await seed_confirmed_booking(app, owner.id, ["A1", "A2"])
    url = f"/api/bookings/{seeded.booking_id}/tickets"
    assert (await client.get(url, headers=owner.headers)).status_code == 200
    later = utcnow() + dt.timedelta(minutes=1)
    values = {key: later if value == "later" else value for key, value in change.items()}
    async with app.state.db.session() as session:
        await session.execute(update(User).where(User.id == owner.id).values(**values))

    response = await client.get(url, headers=owner.headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_token"


@pytest.mark.parametrize("status", ["pending", "expired", "cancelled"])
async def test_unpaid_bookings_have_no_tickets(
    client: httpx.AsyncClient, app: FastAPI, status: str
) -> None:
    customer = await make_user(app)
    seeded = await seed_confirmed_booking(app, customer.id, ["A1"])
    async with app.state.db.session() as session:
        await session.execute(
            update(Booking).where(Booking.id == seeded.booking_id).values(status=status)
        )
    response = await client.get(
        f"/api/bookings/{seeded.booking_id}/tickets", headers=customer.headers
    )
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "tickets_not_issued"


async def test_voided_tickets_show_as_void(client: httpx.AsyncClient, app: FastAPI) -> None:
    customer = await make_user(app)
    seeded = await seed_confirmed_booking(app, customer.id, ["A1", "A2", "A3"])
    async with app.state.db.session() as session:
        assert await service.void_tickets(session, seeded.booking_id, ["A1", "A3"]) == 2
        assert await service.void_tickets(session, seeded.booking_id, ["A1"]) == 0  # once
        assert await service.void_tickets(session, seeded.booking_id, []) == 0
        await session.execute(
            update(Booking).where(Booking.id == seeded.booking_id).values(status="refunded")
        )
    response = await client.get(
        f"/api/bookings/{seeded.booking_id}/tickets", headers=customer.headers
    )
    assert response.status_code == 200, response.text
    assert {t["seatLabel"]: t["status"] for t in response.json()["tickets"]} == {
        "A1": "void",
        "A2": "valid",
        "A3": "void",
    }


async def test_issue_tickets_makes_one_valid_ticket_per_seat(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    customer = await make_user(app)
    seeded = await seed_confirmed_booking(app, customer.id, ["C1", "C2", "C3", "C4"])
    async with app.state.db.session() as session:
        rows = (
            await session.execute(
                select(Ticket.seat_label, Ticket.status, Ticket.showtime_id).where(
                    Ticket.booking_id == seeded.booking_id
                )
            )
        ).all()
    assert sorted(rows) == [
        (label, "valid", seeded.showtime_id) for label in ("C1", "C2", "C3", "C4")
    ]


# ---------------------------------------------------------------------------------------------
# QR images


async def test_qr_images_render_the_token_without_sign_in_or_database(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    token = app_signer(app).sign(uuid.uuid4(), uuid.uuid4())
    with sql_statements(app) as statements:
        png = await client.get(f"/api/tickets/qr/{token}.png")
        svg = await client.get(f"/api/tickets/qr/{token}.svg")
    assert statements == []

    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert png.headers["cache-control"] == "private, max-age=86400"
    decoded = zxingcpp.read_barcode(Image.open(io.BytesIO(png.content)).convert("L"))
    assert decoded is not None
    assert decoded.text == token
    assert decoded.format == zxingcpp.BarcodeFormat.QRCode
    assert decoded.ec_level == "M"

    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.headers["cache-control"] == "private, max-age=86400"
    root = ET.parse(io.BytesIO(svg.content)).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # 8 px a module: version 7 (45 modules) plus the two 4-module quiet zones.
    assert root.get("width") == root.get("height") == str((45 + 8) * 8)


@pytest.mark.parametrize("kind", ["png", "svg"])
async def test_qr_image_of_a_forged_token_is_not_found(
    client: httpx.AsyncClient, app: FastAPI, kind: str
) -> None:
    token = app_signer(app).sign(uuid.uuid4(), uuid.uuid4())
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BA")
    for bad in (forged, "hello", "x" * 300):
        response = await client.get(f"/api/tickets/qr/{bad}.{kind}")
        assert response.status_code == 404, bad
        assert response.json()["code"] == "not_found"
