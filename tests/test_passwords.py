"""The password policy (`password_problem`)."""

from __future__ import annotations

import pytest

from boxoffice.accounts.passwords import MAX_LENGTH, MIN_LENGTH, password_problem

GOOD = "Velvet-Seats-Popcorn-7"


def test_a_good_password_passes() -> None:
    assert password_problem(GOOD) is None
    assert password_problem(GOOD, "alice@example.com") is None


def test_length_bounds() -> None:
    assert MIN_LENGTH == 10
    problem = password_problem("Vx9-kq2Lm")  # 9 characters
    assert problem is not None
    assert "at least 10" in problem
    assert password_problem("Vx9-kq2Lmz") is None  # exactly 10

    assert password_problem(("Vx9-kq2Lmz" * 20)[:MAX_LENGTH]) is None
    too_long = password_problem(("Vx9-kq2Lmz" * 20)[: MAX_LENGTH + 1])
    assert too_long is not None
    assert f"at most {MAX_LENGTH}" in too_long


@pytest.mark.parametrize(
    "password", ["password123", "PASSWORD123", "Password123", "qwertyuiop", "password1234"]
)
def test_common_passwords_are_refused(password: str) -> None:
    problem = password_problem(password)
    assert problem is not None
    assert "common" in problem


@pytest.mark.parametrize("password", ["aaaaaaaaaaaa", "abababababab", "abcabcabcabc", "1111111111"])
def test_too_few_distinct_characters(password: str) -> None:
    assert password_problem(password) is not None


def test_four_distinct_characters_suffice() -> None:
    assert password_problem("wxyzwxyzwxyz") is None


@pytest.mark.parametrize(
    "password",
    [
        "zebracorn@example.com",  # the whole address
        "ZEBRACORN@EXAMPLE.COM",
        "zebracorn-rocks-42",  # contains the local part
        "I-am-ZebraCorn-99",
    ],
)
def test_passwords_containing_the_email_are_refused(password: str) -> None:
    problem = password_problem(password, "Zebracorn@Example.com")
    assert problem is not None
    assert "email" in problem
    assert password_problem(password, "someone.else@example.com") is None


def test_short_local_parts_may_appear() -> None:
    # A local part under four characters would refuse too many innocent passwords.
    assert password_problem("bob-likes-trains-7", "bob@example.com") is None
    assert password_problem("bob-likes-trains-7", "bobby@example.com") is None
    assert password_problem("bobby-likes-trains-7", "bobby@example.com") is not None


def test_no_email_skips_the_email_rule() -> None:
    assert password_problem("zebracorn-rocks-42", None) is None
    assert password_problem("zebracorn-rocks-42", "") is None
