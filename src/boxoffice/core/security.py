"""Password hashing, JWT access tokens and opaque single-use tokens."""

from __future__ import annotations

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
JWT_ALGORITHM = "HS256"
ACCESS_AUDIENCE = "boxoffice:access"


def hash_password(password: str) -> str:
    return _password_hash.hash(password)


def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """(matches, new hash when the stored one uses outdated parameters)."""
    return _password_hash.verify_and_update(password, password_hash)


# Spent on unknown emails so a login answers in the same time whether the account exists.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_urlsafe(16))


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


def create_access_token(secret: str, user_id: uuid.UUID, role: str, ttl_seconds: int) -> str:
    now = utcnow()
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "role": role,
        "aud": ACCESS_AUDIENCE,
        "iat": now,
        "exp": now + dt.timedelta(seconds=ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
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
        )
    except (jwt.PyJWTError, ValueError, KeyError, TypeError):
        return None
