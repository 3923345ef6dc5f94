"""Password hashing with scrypt (memory-hard, in the standard library), salted per password.

A hash is stored as ``scrypt$n$r$p$salt$digest`` (base64 fields) so the cost can be raised later
without invalidating older hashes. These functions are CPU-bound (tens of milliseconds by design):
call them off the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sdrest.errors import InvalidRequestError

_N, _R, _P = 2**14, 8, 1
_DKLEN = 32
_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
"""Longer input only costs CPU: no one types a kilobyte of password."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_DKLEN
    )


def check_password_policy(password: str) -> None:
    """400 for a password too short or too long to accept for a new account."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequestError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidRequestError(
            f"the password must have at most {MAX_PASSWORD_LENGTH} characters", field="password"
        )


def hash_password(password: str) -> str:
    """A new salted scrypt hash of ``password``."""
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``, in time independent of where they differ.

    ``stored`` None (an unknown user, or an account without a local password) still costs one
    full derivation, so a caller cannot tell unknown names from wrong passwords by timing.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        if stored is None:
            raise ValueError("no hash")
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = base64.b64decode(digest)
        actual = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        _derive(password, b"\0" * 16, _N, _R, _P)  # same cost as a real check
        return False
    return hmac.compare_digest(actual, expected)
