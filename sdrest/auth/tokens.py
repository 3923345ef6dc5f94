"""Login tokens: HS256 JWTs signed with a server secret.

Claims: ``sub`` (the account id), ``name``, ``role`` (informational: the role is read from the
account on every request, so a change applies at once), ``iat``, ``exp`` and a random ``jti`` that
logout revokes. The secret is ``--jwt-secret`` when given, else one generated on first use and
kept in ``{data_dir}/jwt_secret`` (mode 0600) so tokens outlive a restart.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import msgspec

from sdrest.auth.pam import AuthSetupError
from sdrest.auth.principal import InvalidCredentialsError
from sdrest.auth.users import User

with warnings.catch_warnings():
    # authlib >= 1.7 marks authlib.jose deprecated in favour of joserfc; it keeps working
    # through 1.x, which is what pyproject pins.
    from authlib.deprecate import AuthlibDeprecationWarning  # type: ignore[import-untyped]

    # after that import: it installs an "always" filter of its own that would win otherwise
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.jose import JsonWebToken  # type: ignore[import-untyped]
    from authlib.jose.errors import ExpiredTokenError, JoseError  # type: ignore[import-untyped]

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "sdrest"
SECRET_FILE = "jwt_secret"
_MIN_SECRET_LENGTH = 32
_CLAIMS_OPTIONS = {
    "iss": {"essential": True, "value": ISSUER},
    "sub": {"essential": True},
    "exp": {"essential": True},
    "jti": {"essential": True},
}


class TokenClaims(msgspec.Struct, frozen=True, kw_only=True):
    """What a valid token says."""

    user_id: int
    username: str
    role: str
    jti: str
    issued_at: float
    expires: float


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret kept at ``path``, created (0600, exclusively) when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
    else:
        secret = secrets.token_urlsafe(48).encode("ascii")
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret)
        logger.info("generated a new token signing secret in %s", path)
    if len(secret) < _MIN_SECRET_LENGTH:
        # A concurrent first start may still be writing it; an empty or short file is an error.
        raise AuthSetupError(f"{path} holds no usable secret; delete it to make a new one")
    return secret


class TokenIssuer:
    """Issues and checks login tokens. The secret is read lazily (first use, off the loop)."""

    def __init__(self, secret: str, secret_path: Path, ttl: float) -> None:
        self._configured = secret.encode("utf-8")
        self._secret_path = secret_path
        self.ttl = ttl
        self._secret: bytes | None = None
        self._lock = threading.Lock()
        self._jwt = JsonWebToken([ALGORITHM])  # HS256 only: "none" and RSA tricks are refused
        if secret and len(secret) < _MIN_SECRET_LENGTH:
            logger.warning(
                "--jwt-secret is shorter than %d characters: tokens are easier to forge",
                _MIN_SECRET_LENGTH,
            )

    def _key(self) -> bytes:
        with self._lock:
            if self._secret is None:
                self._secret = self._configured or load_or_create_secret(self._secret_path)
            return self._secret

    def issue(self, user: User, *, now: float | None = None) -> tuple[str, TokenClaims]:
        """A new token for ``user`` and its claims."""
        issued = int(time.time() if now is None else now)
        expires = issued + max(1, int(self.ttl))
        jti = secrets.token_hex(16)
        payload = {
            "iss": ISSUER,
            "sub": str(user.id),
            "name": user.username,
            "role": user.role,
            "iat": issued,
            "exp": expires,
            "jti": jti,
        }
        token: bytes = self._jwt.encode({"alg": ALGORITHM, "typ": "JWT"}, payload, self._key())
        claims = TokenClaims(
            user_id=user.id,
            username=user.username,
            role=user.role,
            jti=jti,
            issued_at=issued,
            expires=expires,
        )
        return token.decode("ascii"), claims

    def decode(self, token: str, *, now: float | None = None) -> TokenClaims:
        """The claims of a valid token; 401 ``invalid_credentials`` saying why otherwise."""
        try:
            raw: Any = self._jwt.decode(token, self._key(), claims_options=_CLAIMS_OPTIONS)
            raw.validate(now=int(time.time() if now is None else now), leeway=0)
            return TokenClaims(
                user_id=int(raw["sub"]),
                username=str(raw.get("name", "")),
                role=str(raw.get("role", "")),
                jti=str(raw["jti"]),
                issued_at=float(raw.get("iat", 0)),
                expires=float(raw["exp"]),
            )
        except ExpiredTokenError:
            raise InvalidCredentialsError("the token has expired; log in again") from None
        except (JoseError, ValueError, TypeError, KeyError, UnicodeError, RecursionError) as exc:
            # Garbage in a header must be a 401, never a 500: authlib raises several types (a
            # JSON header or payload nested too deeply for its json.loads: RecursionError).
            logger.debug("token refused: %r", exc)
            raise InvalidCredentialsError("the token is invalid") from None
