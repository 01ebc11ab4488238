"""Ed25519-signed ticket tokens that a door scanner can check offline.

Token = base64url, no padding, of 89 bytes:
    version (1 byte, = 1) | ticket id (16 bytes) | first 8 bytes of the showtime id | signature (64)
The signature covers the first 25 bytes. That gives 119 URL-safe characters, short enough for a
small QR code. Ed25519 signatures are deterministic, so a ticket's token can be recomputed at any
time and needs no column of its own.

Every server process derives the same key pair from the app's signing secret (HKDF-SHA256), so
no key file has to be shared; `BOXOFFICE_TICKET_SIGNING_SEED` (base64url of 32 bytes) pins the
key instead, e.g. to keep printed tickets valid across a rotation of the secret key.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from functools import lru_cache
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from boxoffice.config import ConfigurationError, Settings

TOKEN_VERSION = 1
HKDF_INFO = b"boxoffice ticket signing v1"
SHOWTIME_PREFIX_BYTES = 8
PAYLOAD_BYTES = 1 + 16 + SHOWTIME_PREFIX_BYTES
SIGNATURE_BYTES = 64
TOKEN_BYTES = PAYLOAD_BYTES + SIGNATURE_BYTES
TOKEN_LENGTH = -(-TOKEN_BYTES * 4 // 3)  # unpadded base64: 119 characters
_TOKEN_CHARS = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")

TOKEN_FORMAT = (
    f"base64url without padding ({TOKEN_LENGTH} characters) of {TOKEN_BYTES} bytes: "
    f"version byte {TOKEN_VERSION}, ticket id (16 bytes, UUID), first {SHOWTIME_PREFIX_BYTES} "
    f"bytes of the showtime id (UUID), then the Ed25519 signature (64 bytes) of the first "
    f"{PAYLOAD_BYTES} bytes"
)


class TicketClaims(NamedTuple):
    ticket_id: uuid.UUID
    showtime_prefix: bytes  # first 8 bytes of the showtime id

    def is_for_showtime(self, showtime_id: uuid.UUID) -> bool:
        return showtime_id.bytes[:SHOWTIME_PREFIX_BYTES] == self.showtime_prefix


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TicketSigner:
    """Signs and verifies ticket tokens with one Ed25519 key pair."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.public_key_bytes = self._public_key.public_bytes_raw()

    @classmethod
    def from_secret(cls, secret: str) -> TicketSigner:
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
            secret.encode("utf-8")
        )
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_seed(cls, seed_b64url: str) -> TicketSigner:
        text = seed_b64url.rstrip("=")
        try:
            seed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            seed = b""
        if len(seed) != 32 or b64url(seed) != text:
            raise ConfigurationError("BOXOFFICE_TICKET_SIGNING_SEED must be 32 bytes in base64url")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, ticket_id: uuid.UUID, showtime_id: uuid.UUID) -> str:
        payload = (
            bytes([TOKEN_VERSION]) + ticket_id.bytes + showtime_id.bytes[:SHOWTIME_PREFIX_BYTES]
        )
        return b64url(payload + self._private_key.sign(payload))

    def verify(self, token: str) -> TicketClaims | None:
        """The token's claims, or None if it is not exactly a token this key signed."""
        if not _TOKEN_CHARS.fullmatch(token):
            return None
        raw = base64.urlsafe_b64decode(token + "=")
        # Only the canonical spelling: the last character has two unused bits, and a token
        # differing there would otherwise decode to the same bytes.
        if b64url(raw) != token or raw[0] != TOKEN_VERSION:
            return None
        payload, signature = raw[:PAYLOAD_BYTES], raw[PAYLOAD_BYTES:]
        try:
            self._public_key.verify(signature, payload)
        except InvalidSignature:
            return None
        return TicketClaims(uuid.UUID(bytes=payload[1:17]), payload[17:PAYLOAD_BYTES])


@lru_cache(maxsize=8)
def _signer(secret: str, seed: str | None) -> TicketSigner:
    return TicketSigner.from_seed(seed) if seed else TicketSigner.from_secret(secret)


def ticket_signer(settings: Settings, signing_key: str) -> TicketSigner:
    """The signer of an app: from `settings.ticket_signing_seed`, else from its signing secret."""
    seed = settings.ticket_signing_seed
    return _signer(signing_key, seed.get_secret_value() if seed is not None else None)
