"""Password hashing: scrypt, salted, constant-time checks, a policy for new passwords."""

from __future__ import annotations

import pytest

from sdrest.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    check_password_policy,
    hash_password,
    verify_password,
)
from sdrest.errors import InvalidRequestError


def test_hash_verifies_the_right_password_only() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)
    assert not verify_password("", stored)


def test_hashes_are_salted() -> None:
    assert hash_password("same password") != hash_password("same password")


@pytest.mark.parametrize(
    "stored", [None, "", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$1$2"]
)
def test_unusable_hashes_never_match(stored: str | None) -> None:
    assert not verify_password("anything", stored)


def test_overlong_passwords_are_refused_without_hashing() -> None:
    stored = hash_password("x" * 8)
    assert not verify_password("x" * (MAX_PASSWORD_LENGTH + 1), stored)


@pytest.mark.parametrize("password", ["", "short", "x" * (MAX_PASSWORD_LENGTH + 1)])
def test_policy_refuses_weak_or_absurd_passwords(password: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_password_policy(password)
    assert info.value.field == "password"


def test_policy_accepts_a_reasonable_password() -> None:
    check_password_policy("eight ch")
