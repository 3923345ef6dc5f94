"""Login tokens: HS256 only, expiry, tampering, the generated secret file."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdrest.auth.pam import AuthSetupError
from sdrest.auth.principal import InvalidCredentialsError
from sdrest.auth.tokens import TokenIssuer, load_or_create_secret
from sdrest.auth.users import User

ALICE = User(id=7, username="alice", role="user", created=0.0)


def _issuer(tmp_path: Path, secret: str = "", ttl: float = 60) -> TokenIssuer:
    return TokenIssuer(secret, tmp_path / "jwt_secret", ttl)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_issue_and_decode(tmp_path: Path) -> None:
    issuer = _issuer(tmp_path)
    token, claims = issuer.issue(ALICE)
    decoded = issuer.decode(token)
    assert decoded == claims
    assert (decoded.user_id, decoded.username, decoded.role) == (7, "alice", "user")
    assert decoded.expires - decoded.issued_at == 60
    assert issuer.issue(ALICE)[1].jti != claims.jti


def test_expired_token_is_refused_with_a_reason(tmp_path: Path) -> None:
    issuer = _issuer(tmp_path, ttl=10)
    token, _ = issuer.issue(ALICE, now=time.time() - 11)
    with pytest.raises(InvalidCredentialsError, match="expired"):
        issuer.decode(token)


def test_tampered_payload_is_refused(tmp_path: Path) -> None:
    issuer = _issuer(tmp_path)
    token, _ = issuer.issue(ALICE)
    header, _payload, signature = token.split(".")
    forged = _b64({"iss": "sdrest", "sub": "1", "role": "admin", "jti": "x", "exp": 2**40})
    with pytest.raises(InvalidCredentialsError, match="invalid"):
        issuer.decode(f"{header}.{forged}.{signature}")


def test_alg_none_is_refused(tmp_path: Path) -> None:
    issuer = _issuer(tmp_path)
    header = _b64({"alg": "none", "typ": "JWT"})
    payload = _b64({"iss": "sdrest", "sub": "7", "jti": "x", "exp": 2**40, "iat": 1})
    with pytest.raises(InvalidCredentialsError):
        issuer.decode(f"{header}.{payload}.")


def test_another_servers_secret_is_refused(tmp_path: Path) -> None:
    token, _ = _issuer(tmp_path, secret="s" * 40).issue(ALICE)
    with pytest.raises(InvalidCredentialsError):
        _issuer(tmp_path, secret="t" * 40).decode(token)


@pytest.mark.parametrize("garbage", ["a.b.c", "...", "x" * 300, "eyJ9.eyJ9.e30", "é.é.é"])
def test_garbage_is_a_401_not_a_crash(tmp_path: Path, garbage: str) -> None:
    with pytest.raises(InvalidCredentialsError):
        _issuer(tmp_path).decode(garbage)


def test_generated_secret_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "jwt_secret"
    first = load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_or_create_secret(path) == first
    # a token outlives a "restart" (a new issuer reading the same file)
    token, _ = TokenIssuer("", path, 60).issue(ALICE)
    assert TokenIssuer("", path, 60).decode(token).user_id == 7


def test_an_empty_secret_file_is_a_setup_error(tmp_path: Path) -> None:
    path = tmp_path / "jwt_secret"
    path.write_text("")
    with pytest.raises(AuthSetupError, match="no usable secret"):
        load_or_create_secret(path)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.lists(st.text(max_size=40), max_size=4).map(".".join))
def test_any_text_decodes_or_is_refused(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    issuer = TokenIssuer("s" * 40, tmp_path_factory.getbasetemp() / "unused", 60)
    with pytest.raises(InvalidCredentialsError):
        issuer.decode(text)
