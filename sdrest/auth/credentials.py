"""What credentials a request carries: pure parsing of headers and the query string.

Accepted, first match wins (a bad first credential is not rescued by a later one):

1. ``Authorization: Bearer <login token or API key>`` (the OpenAI SDK sends its ``api_key`` so)
2. ``Authorization: Basic base64(user:password)`` (A1111 clients such as webuiapi); the password
   may also be an API key
3. ``X-API-Key: <key>``
4. ``?token=<login token or API key>`` on WebSocket connections only (browsers cannot set headers
   there; on plain HTTP a token in the URL would end up in access logs)
5. ``X-Unix-User: <name>`` only with ``--trust-unix-user-header``
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Literal

import msgspec

from sdrest.auth.users import looks_like_api_key

CredentialKind = Literal["none", "token", "api_key", "basic", "unix_user", "foreign", "malformed"]
MAX_CREDENTIAL_LENGTH = 4096
"""Longer header values are refused unread: no credential of ours is anywhere near this."""


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """One parsed credential. ``foreign`` is a bearer value that is neither a login token nor an
    API key (an OpenAI client's placeholder key); ``malformed`` carries why in ``value``."""

    kind: CredentialKind
    value: str = ""
    username: str = ""
    password: str = ""


NO_CREDENTIALS = Credentials(kind="none")


def _bearer(value: str) -> Credentials:
    value = value.strip()
    if not value:
        return Credentials(kind="malformed", value="the bearer credential is empty")
    if looks_like_api_key(value):
        return Credentials(kind="api_key", value=value)
    if value.count(".") == 2:
        return Credentials(kind="token", value=value)
    return Credentials(kind="foreign", value=value)


def _basic(value: str) -> Credentials:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return Credentials(kind="malformed", value="the Basic credential is not base64 user:pass")
    username, sep, password = decoded.partition(":")
    if not sep:
        return Credentials(kind="malformed", value="the Basic credential has no ':'")
    return Credentials(kind="basic", username=username, password=password)


def parse_credentials(
    headers: Mapping[str, str],
    query_token: str | None = None,
    *,
    websocket: bool = False,
    trust_unix_user_header: bool = False,
) -> Credentials:
    """The credential a request presents. ``headers`` has lower-case names."""
    authorization = headers.get("authorization")
    api_key = headers.get("x-api-key")
    unix_user = headers.get("x-unix-user")
    for value in (authorization, api_key, query_token, unix_user):
        if value is not None and len(value) > MAX_CREDENTIAL_LENGTH:
            return Credentials(kind="malformed", value="the credential is too long")
    if authorization is not None:
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            return _bearer(rest)
        if scheme.lower() == "basic":
            return _basic(rest)
        return Credentials(
            kind="malformed", value="unsupported Authorization scheme (use Bearer or Basic)"
        )
    if api_key is not None:
        if not looks_like_api_key(api_key.strip()):
            return Credentials(kind="malformed", value="the API key is invalid")
        return Credentials(kind="api_key", value=api_key.strip())
    if websocket and query_token:
        return _bearer(query_token)
    if trust_unix_user_header and unix_user is not None:
        return Credentials(kind="unix_user", username=unix_user.strip())
    return NO_CREDENTIALS
