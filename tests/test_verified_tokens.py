"""The per-process cache of verified access tokens: hits only while the token is valid."""

from __future__ import annotations

import time
import uuid

from boxoffice.core.security import VerifiedTokens, create_access_token

SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123456789"


def test_a_verified_token_is_answered_from_memory_until_it_expires() -> None:
    tokens = VerifiedTokens(SECRET)
    user = uuid.uuid4()
    token = create_access_token(SECRET, user, "customer", ttl_seconds=2)
    first = tokens.claims(token)
    assert first is not None
    assert first.user_id == user
    assert tokens.claims(token) is first  # the cached claims, not a second decode
    time.sleep(2.1)
    assert tokens.claims(token) is None


def test_bad_tokens_are_refused_and_not_remembered() -> None:
    tokens = VerifiedTokens(SECRET, capacity=2)
    forged = create_access_token(
        "another-secret-that-is-long-enough-0123456789", uuid.uuid4(), "admin", 60
    )
    assert tokens.claims(forged) is None
    assert tokens.claims("not.a.token") is None
    good = [create_access_token(SECRET, uuid.uuid4(), "customer", 60) for _ in range(3)]
    assert all(tokens.claims(token) is not None for token in good)
    assert len(tokens._claims) == 2  # bounded: the oldest entry made room
