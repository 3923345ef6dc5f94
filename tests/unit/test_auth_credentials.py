"""Parsing credentials out of headers and the query string (pure)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdrest.auth.credentials import MAX_CREDENTIAL_LENGTH, parse_credentials

KEY = "sdr_" + "k" * 43
JWT = "aaa.bbb.ccc"


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("headers", "kind", "value"),
    [
        ({}, "none", ""),
        ({"authorization": f"Bearer {JWT}"}, "token", JWT),
        ({"authorization": f"bearer   {KEY}"}, "api_key", KEY),
        ({"authorization": "Bearer sk-placeholder"}, "foreign", "sk-placeholder"),
        ({"authorization": "Bearer "}, "malformed", "the bearer credential is empty"),
        ({"authorization": "Digest abc"}, "malformed", "unsupported Authorization scheme"),
        ({"authorization": "Basic %%%"}, "malformed", "not base64"),
        ({"authorization": _basic("no-colon")}, "malformed", "has no ':'"),
        ({"x-api-key": KEY}, "api_key", KEY),
        ({"x-api-key": "nope"}, "malformed", "the API key is invalid"),
        ({"authorization": "x" * (MAX_CREDENTIAL_LENGTH + 1)}, "malformed", "too long"),
    ],
)
def test_header_credentials(headers: dict[str, str], kind: str, value: str) -> None:
    creds = parse_credentials(headers)
    assert creds.kind == kind
    assert value in creds.value


def test_basic_carries_name_and_password_with_colons() -> None:
    creds = parse_credentials({"authorization": _basic("alice:pa:ss")})
    assert (creds.kind, creds.username, creds.password) == ("basic", "alice", "pa:ss")


def test_authorization_wins_over_other_headers() -> None:
    creds = parse_credentials({"authorization": f"Bearer {JWT}", "x-api-key": KEY})
    assert creds.kind == "token"


def test_query_token_counts_on_websockets_only() -> None:
    assert parse_credentials({}, JWT).kind == "none"
    assert parse_credentials({}, JWT, websocket=True).kind == "token"
    assert parse_credentials({}, KEY, websocket=True).kind == "api_key"


def test_unix_user_header_needs_trust() -> None:
    headers = {"x-unix-user": " carol "}
    assert parse_credentials(headers).kind == "none"
    creds = parse_credentials(headers, trust_unix_user_header=True)
    assert (creds.kind, creds.username) == ("unix_user", "carol")


@settings(max_examples=300, deadline=None)
@given(
    authorization=st.one_of(st.none(), st.text(max_size=80)),
    api_key=st.one_of(st.none(), st.text(max_size=80)),
    token=st.one_of(st.none(), st.text(max_size=80)),
    scheme=st.sampled_from(["Bearer ", "Basic ", "basic ", ""]),
)
def test_any_header_values_parse_without_raising(
    authorization: str | None, api_key: str | None, token: str | None, scheme: str
) -> None:
    headers = {}
    if authorization is not None:
        headers["authorization"] = scheme + authorization
    if api_key is not None:
        headers["x-api-key"] = api_key
    creds = parse_credentials(headers, token, websocket=True, trust_unix_user_header=True)
    assert creds.kind in ("none", "token", "api_key", "basic", "unix_user", "foreign", "malformed")
