"""Accounts and API keys over HTTP (``/api/users``, ``/api/keys``, ``/api/auth/keys``,
``/api/auth/password``) on the real app with the real authenticator (jwt mode) and the FakeEngine.

Accounts: alice and bob (role user), root (admin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.api.support import (
    PASSWORDS,
    assert_error,
    bearer,
    client_of,
)
from tests.conftest import settings_in
from tests.fakes import FakeEngine


@pytest.fixture
async def http(jwt_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(jwt_settings) as client:
        yield client


async def login(http: httpx.AsyncClient, name: str, password: str | None = None) -> dict[str, str]:
    resp = await http.post(
        "/api/auth/login", json={"username": name, "password": password or PASSWORDS[name]}
    )
    assert resp.status_code == 200, resp.text
    return bearer(resp.json()["token"])


async def test_admin_manages_accounts(http: httpx.AsyncClient) -> None:
    root = await login(http, "root")
    listed = (await http.get("/api/users", headers=root)).json()["users"]
    assert [u["username"] for u in listed] == ["alice", "bob", "root"]
    assert all(u["local_password"] and "password_hash" not in u for u in listed)

    made = await http.post(
        "/api/users", headers=root, json={"username": "carol", "password": "carol-password"}
    )
    assert made.status_code == 201 and made.json()["role"] == "user", made.text
    assert_error(
        await http.post(
            "/api/users", headers=root, json={"username": "carol", "password": "x" * 9}
        ),
        409,
        "CONFLICT",
    )
    weak = await http.post("/api/users", headers=root, json={"username": "dan", "password": "x"})
    assert weak.status_code == 400 and weak.json()["error"]["field"] == "password"
    bad = await http.post("/api/users", headers=root, json={"username": "../x"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "username"

    carol = await login(http, "carol", "carol-password")
    assert (await http.get("/api/users", headers=carol)).status_code == 403
    promoted = await http.post("/api/users/carol/role", headers=root, json={"role": "admin"})
    assert promoted.json()["role"] == "admin"
    assert (await http.get("/api/users", headers=carol)).status_code == 200  # at once

    reset = await http.post(
        "/api/users/carol/password", headers=root, json={"password": "another-password"}
    )
    assert reset.status_code == 200, reset.text
    await login(http, "carol", "another-password")

    # No admin locks itself out; another admin may.
    assert_error(await http.delete("/api/users/root", headers=root), 409, "CONFLICT")
    demote = await http.post("/api/users/root/role", headers=root, json={"role": "user"})
    assert_error(demote, 409, "CONFLICT")
    assert (await http.delete("/api/users/carol", headers=root)).status_code == 200
    assert (await http.get("/api/auth/me", headers=carol)).status_code == 401  # token is dead
    assert_error(await http.delete("/api/users/carol", headers=root), 404, "NOT_FOUND")


async def test_admin_manages_keys(http: httpx.AsyncClient) -> None:
    root = await login(http, "root")
    created = await http.post("/api/keys", headers=root, json={"username": "bob", "name": "ci"})
    assert created.status_code == 201, created.text
    key, record = created.json()["key"], created.json()["record"]
    assert key.startswith(record["prefix"]) and record["username"] == "bob" and record["active"]
    me = await http.get("/api/auth/me", headers=bearer(key))
    assert me.json()["user"]["username"] == "bob"

    keys = (await http.get("/api/keys?username=bob", headers=root)).json()["keys"]
    assert [k["id"] for k in keys] == [record["id"]] and "key" not in keys[0]
    assert (await http.get("/api/keys?username=alice", headers=root)).json()["keys"] == []
    missing = await http.post("/api/keys", headers=root, json={"name": "x"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "username"

    assert (await http.delete(f"/api/keys/{record['id']}", headers=root)).status_code == 200
    assert (await http.get("/api/auth/me", headers=bearer(key))).status_code == 401
    assert_error(await http.delete(f"/api/keys/{record['id']}", headers=root), 404, "NOT_FOUND")


async def test_a_user_manages_only_their_own_keys_and_password(http: httpx.AsyncClient) -> None:
    alice, bob = await login(http, "alice"), await login(http, "bob")
    made = await http.post("/api/auth/keys", headers=alice, json={"name": "laptop"})
    assert made.status_code == 201 and made.json()["record"]["username"] == "alice"
    key_id = made.json()["record"]["id"]
    other = await http.post("/api/auth/keys", headers=alice, json={"username": "bob"})
    assert other.status_code == 400
    assert [k["id"] for k in (await http.get("/api/auth/keys", headers=alice)).json()["keys"]] == [
        key_id
    ]
    assert (await http.get("/api/auth/keys", headers=bob)).json()["keys"] == []
    # Bob cannot revoke Alice's key, nor reach the admin listing.
    assert_error(await http.delete(f"/api/auth/keys/{key_id}", headers=bob), 404, "NOT_FOUND")
    assert (await http.get("/api/keys", headers=bob)).status_code == 403
    assert (await http.delete(f"/api/auth/keys/{key_id}", headers=alice)).status_code == 200
    listed = (await http.get("/api/auth/keys", headers=alice)).json()["keys"]
    assert listed[0]["active"] is False and listed[0]["revoked"] is not None

    wrong = await http.post(
        "/api/auth/password",
        headers=alice,
        json={"current_password": "nope-nope", "new_password": "a-new-password"},
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "current_password"
    changed = await http.post(
        "/api/auth/password",
        headers=alice,
        json={"current_password": PASSWORDS["alice"], "new_password": "a-new-password"},
    )
    assert changed.status_code == 200, changed.text
    await login(http, "alice", "a-new-password")
    # Anonymous callers are refused before any of this runs.
    assert (await http.get("/api/auth/keys")).status_code == 401


async def test_with_auth_off_admins_still_prepare_accounts(
    tmp_path: Path, models_dir: Path
) -> None:
    settings = settings_in(tmp_path, models_dir)
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            made = await http.post("/api/users", json={"username": "eve", "role": "admin"})
            assert made.status_code == 201 and made.json()["local_password"] is False
            assert [u["username"] for u in (await http.get("/api/users")).json()["users"]] == [
                "eve"
            ]
            own = await http.get("/api/auth/keys")
            assert_error(own, 400, "AUTH_DISABLED")


async def test_a_changed_password_stops_working_over_basic_at_once(
    http: httpx.AsyncClient,
) -> None:
    """Basic-auth password checks are remembered for a minute; a password change (the user's
    own or an admin's reset) and a removal drop them, so the old password fails at once."""
    old = httpx.BasicAuth("alice", PASSWORDS["alice"])
    assert (await http.get("/api/auth/me", auth=old)).status_code == 200  # now remembered
    changed = await http.post(
        "/api/auth/password",
        auth=old,
        json={"current_password": PASSWORDS["alice"], "new_password": "a-new-password"},
    )
    assert changed.status_code == 200, changed.text
    assert (await http.get("/api/auth/me", auth=old)).status_code == 401
    new = httpx.BasicAuth("alice", "a-new-password")
    assert (await http.get("/api/auth/me", auth=new)).status_code == 200

    root = await login(http, "root")
    reset = await http.post(
        "/api/users/alice/password", headers=root, json={"password": "reset-by-root"}
    )
    assert reset.status_code == 200, reset.text
    assert (await http.get("/api/auth/me", auth=new)).status_code == 401
    bob = httpx.BasicAuth("bob", PASSWORDS["bob"])
    assert (await http.get("/api/auth/me", auth=bob)).status_code == 200
    assert (await http.delete("/api/users/bob", headers=root)).status_code == 200
    assert (await http.get("/api/auth/me", auth=bob)).status_code == 401
