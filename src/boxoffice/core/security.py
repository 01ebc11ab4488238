"""Password hashing, JWT access tokens and opaque single-use tokens."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from boxoffice.core.clock import utcnow

_password_hash = PasswordHash((Argon2Hasher(),))  # argon2id with the library's parameters
_dummy_hash: str | None = None
JWT_ALGORITHM = "HS256"
ACCESS_AUDIENCE = "boxoffice:access"


def configure_password_hashing(*, time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Set the argon2id cost for new hashes. Existing hashes carry their own parameters and
    still verify; they are re-hashed with the new cost at the next successful login."""
    global _password_hash, _dummy_hash
    _password_hash = PasswordHash(
        (Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism),)
    )
    _dummy_hash = None


# argon2 takes a large fraction of a second of CPU by design and releases the GIL: hashing runs
# in a worker thread so one login does not stall every other request of the process.
async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_password_hash.hash, password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """(matches, new hash when the stored one uses outdated parameters)."""
    return await asyncio.to_thread(_password_hash.verify_and_update, password, password_hash)


async def verify_dummy_password(password: str) -> None:
    """Spend the time of a real check, so a login answers alike whether the account exists."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = await hash_password(secrets.token_urlsafe(16))
    await verify_password(password, _dummy_hash)


def new_token() -> str:
    """An opaque, URL-safe random token (refresh, verification, reset)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored hashed: a leaked table grants nothing. SHA-256 suffices for 256-bit
    random tokens (no dictionary to attack)."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    expires_at: dt.datetime
    issued_at: dt.datetime | None = None
    session_id: uuid.UUID | None = None  # the refresh-token family the token was issued for
    mfa: bool = False  # the session was signed in with a one-time code


def create_access_token(
    secret: str,
    user_id: uuid.UUID,
    role: str,
    ttl_seconds: int,
    *,
    session_id: uuid.UUID | None = None,
    mfa: bool = False,
) -> str:
    now = utcnow()
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "role": role,
        "aud": ACCESS_AUDIENCE,
        # With fractions: tokens issued before a password change in the same second are refused.
        "iat": now.timestamp(),
        "exp": now + dt.timedelta(seconds=ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    if session_id is not None:
        payload["sid"] = str(session_id)
    if mfa:
        payload["mfa"] = True
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM)


def decode_access_token(secret: str, token: str) -> AccessClaims | None:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            audience=ACCESS_AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
        return AccessClaims(
            user_id=uuid.UUID(payload["sub"]),
            role=str(payload.get("role", "")),
            expires_at=dt.datetime.fromtimestamp(payload["exp"], dt.UTC),
            issued_at=(
                dt.datetime.fromtimestamp(payload["iat"], dt.UTC) if "iat" in payload else None
            ),
            session_id=uuid.UUID(payload["sid"]) if "sid" in payload else None,
            mfa=payload.get("mfa") is True,
        )
    except (jwt.PyJWTError, ValueError, KeyError, TypeError):
        return None


class VerifiedTokens:
    """Access tokens this process has already verified, with their claims.

    Checking a token's signature and claims cost about 45 µs, a few percent of a small
    request, and a customer sends the same token with every request of a purchase. A hit is
    only served while the token has not expired; invalid tokens are never remembered.
    """

    def __init__(self, secret: str, capacity: int = 20_000) -> None:
        self._secret = secret
        self._capacity = capacity
        self._claims: dict[str, AccessClaims] = {}

    def claims(self, token: str) -> AccessClaims | None:
        claims = self._claims.get(token)
        if claims is None:
            claims = decode_access_token(self._secret, token)
            if claims is None:
                return None
            if len(self._claims) >= self._capacity:
                del self._claims[next(iter(self._claims))]  # the oldest entry
            self._claims[token] = claims
        if claims.expires_at <= utcnow():
            self._claims.pop(token, None)
            return None
        return claims
