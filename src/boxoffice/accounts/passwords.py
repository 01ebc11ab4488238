"""The password policy: long enough, not common, not the email."""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

MIN_LENGTH = 10
MAX_LENGTH = 128


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    # 20,000 common passwords (Royce Williams' list, as shipped by Django, BSD licence).
    data = resources.files("boxoffice.accounts").joinpath("data/common-passwords.txt.gz")
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip().lower() for line in lines if line.strip())


def password_problem(password: str, email: str | None = None) -> str | None:
    """Why the password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"The password must have at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"The password must have at most {MAX_LENGTH} characters."
    lowered = password.lower()
    if lowered in _common_passwords():
        return "This password is too common; choose another."
    if len(set(lowered)) < 4:
        return "The password repeats too few characters; choose another."
    if email:
        address = email.lower()
        local = address.split("@", 1)[0]
        if lowered in {address, local} or (len(local) >= 4 and local in lowered):
            return "The password must not contain your email address."
    return None
