"""The auth matrix over EVERY route of every family (jwt mode): enumerated from the app itself,
so a route added later is covered (and must be classified here) automatically.

For each route and method: no credentials, a garbage token, an expired token and a revoked token
are 401 in that family's error shape, except the spec's public endpoints; a user is 403 on the
admin-only operations and passes auth elsewhere; an admin passes auth everywhere.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sdrest.settings import Settings
from tests.api.support import (
    ADMIN_ONLY,
    PASSWORDS,
    PUBLIC,
    all_routes,
    bearer,
    client_of,
    route_specs,
    token_for,
    url,
)

ROUTES = all_routes()
PROTECTED = [r for r in ROUTES if r not in PUBLIC]


def assert_auth_error(resp: httpx.Response, path: str, status: int) -> None:
    """``status`` in the shape of the family that owns ``path``."""
    assert resp.status_code == status, (path, resp.status_code, resp.text)
    body = resp.json()
    if path.startswith("/api/"):
        expected = "AUTH_REQUIRED" if status == 401 else "INSUFFICIENT_PERMISSIONS"
        assert body["error"]["code"] in (expected, "INVALID_CREDENTIALS"), body
    elif path.startswith("/v1/"):
        assert body["error"]["type"] in ("authentication_error", "permission_error"), body
    elif path.startswith("/sdapi/"):
        assert {"error", "detail"} <= set(body), body
    elif path == "/metrics":  # the app's own routes: {"error": {"message", "code"}}
        codes = {"AUTH_REQUIRED", "INVALID_CREDENTIALS"} if status == 401 else {"FORBIDDEN"}
        assert body["error"]["code"] in codes, body
    else:
        assert isinstance(body["error"], str) and body["code"], body


@pytest.fixture
async def http(jwt_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(jwt_settings) as client:
        yield client


def test_the_matrix_classifies_real_routes() -> None:
    assert len(ROUTES) > 80
    assert set(ROUTES) >= PUBLIC and set(ROUTES) >= ADMIN_ONLY


def test_routes_declare_the_access_the_spec_gives_them() -> None:
    """What each route declares (and enforces) is what the API documents say: the behaviour
    tests below then check the declaration against real credentials."""
    specs = route_specs()
    assert len(specs) == len(ROUTES)  # every route carries its spec
    public = {route for route, spec in specs.items() if spec.access == "public"}
    assert public == PUBLIC
    admin = {r for r, spec in specs.items() if spec.access in ("models:manage", "system:manage")}
    assert admin == ADMIN_ONLY


async def test_public_endpoints_need_no_credentials(http: httpx.AsyncClient) -> None:
    for method, path in sorted(PUBLIC):
        resp = await http.request(method, url(path), json={} if method == "POST" else None)
        assert resp.status_code not in (401, 403), (method, path, resp.text)


async def test_without_valid_credentials_everything_else_is_401(
    http: httpx.AsyncClient, jwt_settings: Settings
) -> None:
    expired = token_for(jwt_settings, "alice", now=time.time() - 10 * jwt_settings.auth.token_ttl)
    login = await http.post(
        "/api/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]}
    )
    revoked = login.json()["token"]
    assert (await http.post("/api/auth/logout", headers=bearer(revoked))).status_code == 200
    variants = {
        "none": {},
        "garbage": bearer("not-a-token"),
        "expired": bearer(expired),
        "revoked": bearer(revoked),
        "wrong scheme": {"Authorization": "Digest abc"},
    }
    for method, path in PROTECTED:
        for label, headers in variants.items():
            resp = await http.request(
                method, url(path), headers=headers, json={} if method == "POST" else None
            )
            assert resp.status_code == 401, (label, method, path, resp.text)
            assert_auth_error(resp, path, 401)


async def test_roles(http: httpx.AsyncClient, jwt_settings: Settings) -> None:
    user = bearer(token_for(jwt_settings, "alice"))
    admin = bearer(token_for(jwt_settings, "root"))
    # Logging out revokes the token: that route goes last.
    for method, path in sorted(PROTECTED, key=lambda r: r[1].endswith("/auth/logout")):
        body: dict[str, Any] | None = {} if method == "POST" else None
        as_user = await http.request(method, url(path), headers=user, json=body)
        if (method, path) in ADMIN_ONLY:
            assert_auth_error(as_user, path, 403)
        else:
            assert as_user.status_code not in (401, 403), (method, path, as_user.text)
        as_admin = await http.request(method, url(path), headers=admin, json=body)
        assert as_admin.status_code not in (401, 403), (method, path, as_admin.text)
        if path.endswith("/auth/logout"):  # both tokens are revoked now: new ones for the next
            user = bearer(token_for(jwt_settings, "alice"))
            admin = bearer(token_for(jwt_settings, "root"))
