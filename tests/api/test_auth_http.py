"""Authentication over HTTP: the auth matrix on /sdcpp/v1 and /api/auth/*, for each mode.

Accounts: alice and bob (role user), root (admin). ``/api/auth/*`` is tested on a small app that
mounts AUTH_ROUTES with the real middleware (the /api family renders errors in its own shape), and
again through the real ``create_app`` where the /api family mounts them.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from sdrest.api.common import JSONResponse, error_status
from sdrest.api.rest.routes import ROUTES
from sdrest.app import create_app
from sdrest.auth.authenticator import Authenticator
from sdrest.auth.middleware import AuthMiddleware
from sdrest.auth.users import AUTH_DB, UserStore
from sdrest.errors import SdrestError
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.api.support import PASSWORDS, add_accounts, bearer, make_settings, token_for
from tests.fakes import FakeEngine

AUTH_ROUTES = [r for r in ROUTES if r.path.startswith("/auth/")]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def code_of(resp: httpx.Response) -> str:
    """The error code in either shape: sdcpp ``{error, code}`` or /api ``{error: {code}}``."""
    body = resp.json()
    code = body["error"]["code"] if isinstance(body.get("error"), dict) else body["code"]
    return str(code).lower()


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[SdrestService, httpx.AsyncClient]]:
    """The real app (all families) over a fake-engine service."""
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield service, client


def _render(request: Request, exc: Exception) -> Response:
    status, code, message = error_status(exc)
    return JSONResponse({"error": message, "code": code}, status_code=status)


def auth_app(settings: Settings) -> Starlette:
    """AUTH_ROUTES at /api behind the real middleware, with a minimal error renderer."""
    return Starlette(
        routes=[Mount("/api", routes=AUTH_ROUTES)],
        middleware=[Middleware(AuthMiddleware, authenticator=Authenticator(settings))],
        exception_handlers={SdrestError: _render, Exception: _render},
    )


@asynccontextmanager
async def auth_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=auth_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def submit(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post(
        "/sdcpp/v1/img_gen", json={"prompt": "a cat", "width": 64, "height": 64}, headers=headers
    )


# -- /sdcpp/v1 matrix (jwt mode) -------------------------------------------------------------

SDCPP_CALLS = [
    ("GET", "/sdcpp/v1/capabilities"),
    ("POST", "/sdcpp/v1/img_gen"),
    ("POST", "/sdcpp/v1/vid_gen"),
    ("GET", "/sdcpp/v1/jobs/job_1_abc"),
    ("POST", "/sdcpp/v1/jobs/job_1_abc/cancel"),
]


@pytest.mark.parametrize(
    ("credential", "code"),
    [
        ("none", "auth_required"),
        ("garbage-jwt", "invalid_credentials"),
        ("expired", "invalid_credentials"),
        ("foreign", "invalid_credentials"),
        ("wrong-password", "invalid_credentials"),
        ("unknown-key", "invalid_credentials"),
        ("bad-scheme", "invalid_credentials"),
    ],
)
async def test_sdcpp_refuses_missing_and_bad_credentials(
    jwt_settings: Settings, credential: str, code: str
) -> None:
    headers = {
        "none": {},
        "garbage-jwt": bearer("aaa.bbb.ccc"),
        "expired": bearer(token_for(jwt_settings, "alice", now=time.time() - 90000)),
        "foreign": bearer("sk-placeholder"),
        "wrong-password": basic("alice", "nope"),
        "unknown-key": {"X-API-Key": "sdr_" + "x" * 43},
        "bad-scheme": {"Authorization": "Digest whatever"},
    }[credential]
    async with serve(jwt_settings) as (_, client):
        for method, path in SDCPP_CALLS:
            resp = await client.request(method, path, headers=headers, json={"prompt": "x"})
            assert resp.status_code == 401, (path, resp.text)
            assert code_of(resp) == code, (path, resp.text)
        if credential == "expired":
            assert "expired" in resp.json()["error"]


async def test_health_stays_public(jwt_settings: Settings) -> None:
    async with serve(jwt_settings) as (_, client):
        assert (await client.get("/api/health")).status_code == 200


async def test_users_see_only_their_own_jobs(jwt_settings: Settings) -> None:
    alice, bob, root = (bearer(token_for(jwt_settings, n)) for n in ("alice", "bob", "root"))
    async with serve(jwt_settings) as (service, client):
        assert (await client.get("/sdcpp/v1/capabilities", headers=alice)).status_code == 200
        created = await submit(client, alice)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        assert (await service.get(job_id)).owner == "alice"
        assert (await client.get(f"/sdcpp/v1/jobs/{job_id}", headers=alice)).status_code == 200

        # Another user's job answers exactly like an unknown one.
        theirs = await client.get(f"/sdcpp/v1/jobs/{job_id}", headers=bob)
        unknown = await client.get("/sdcpp/v1/jobs/job_0_0", headers=bob)
        assert theirs.status_code == unknown.status_code == 404
        assert code_of(theirs) == code_of(unknown) == "job_not_found"
        assert theirs.json()["error"] == f"job not found: {job_id}"
        cancel = await client.post(f"/sdcpp/v1/jobs/{job_id}/cancel", headers=bob)
        assert cancel.status_code == 404
        assert (await service.get(job_id)).status != "cancelled"

        # An admin sees and cancels everyone's jobs.
        assert (await client.get(f"/sdcpp/v1/jobs/{job_id}", headers=root)).status_code == 200
        cancelled = await client.post(f"/sdcpp/v1/jobs/{job_id}/cancel", headers=root)
        assert cancelled.status_code == 200, cancelled.text


async def test_api_keys_work_as_header_bearer_and_basic(jwt_settings: Settings) -> None:
    store = UserStore(jwt_settings.data_path / AUTH_DB)
    record, key = store.create_key("bob", "script")
    async with serve(jwt_settings) as (service, client):
        for headers in ({"X-API-Key": key}, bearer(key), basic("", key), basic("bob", key)):
            resp = await submit(client, headers)
            assert resp.status_code == 202, (headers, resp.text)
            assert (await service.get(resp.json()["id"])).owner == "bob"
        # the key's owner must match a Basic user name when one is given
        assert (await submit(client, basic("alice", key))).status_code == 401
        store.revoke_key(record.id)
        refused = await submit(client, {"X-API-Key": key})
        assert refused.status_code == 401 and "revoked" in refused.json()["error"]


async def test_basic_auth_with_a_password(jwt_settings: Settings) -> None:
    async with serve(jwt_settings) as (service, client):
        for _ in range(2):  # the second call is served from the short password cache
            resp = await submit(client, basic("alice", PASSWORDS["alice"]))
            assert resp.status_code == 202, resp.text
        assert (await service.get(resp.json()["id"])).owner == "alice"
        assert (await submit(client, basic("alice", PASSWORDS["bob"]))).status_code == 401
        assert (await submit(client, basic("nobody", "whatever-pw"))).status_code == 401


async def test_removed_user_loses_tokens_and_keys(jwt_settings: Settings) -> None:
    store = UserStore(jwt_settings.data_path / AUTH_DB)
    token = token_for(jwt_settings, "bob")
    _, key = store.create_key("bob")
    async with serve(jwt_settings) as (_, client):
        assert (await submit(client, bearer(token))).status_code == 202
        store.remove_user("bob")
        for headers in (bearer(token), {"X-API-Key": key}):
            resp = await submit(client, headers)
            assert resp.status_code == 401 and code_of(resp) == "invalid_credentials"


async def test_a_recreated_account_does_not_inherit_tokens(jwt_settings: Settings) -> None:
    token = token_for(jwt_settings, "root")
    store = UserStore(jwt_settings.data_path / AUTH_DB)
    async with serve(jwt_settings) as (_, client):
        created = await submit(client, bearer(token_for(jwt_settings, "alice")))
        job = f"/sdcpp/v1/jobs/{created.json()['id']}"
        assert (await client.get(job, headers=bearer(token))).status_code == 200
        store.remove_user("root")
        store.add_user("root", "user", None)  # same name, new account: the old token is dead
        assert (await client.get(job, headers=bearer(token))).status_code == 401


# -- other modes -----------------------------------------------------------------------------


async def test_optional_mode_lets_guests_generate(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path, models_dir, "optional")
    add_accounts(settings)
    alice = bearer(token_for(settings, "alice"))
    async with serve(settings) as (service, client):
        assert (await client.get("/sdcpp/v1/capabilities")).status_code == 200
        guest_job = (await submit(client, {})).json()["id"]
        assert (await service.get(guest_job)).owner == "guest"
        assert (await client.get(f"/sdcpp/v1/jobs/{guest_job}")).status_code == 200
        # an OpenAI client's placeholder key is no credential: still a guest
        assert (await submit(client, bearer("sk-no-key-required"))).status_code == 202
        alice_job = (await submit(client, alice)).json()["id"]
        assert (await service.get(alice_job)).owner == "alice"
        assert (await client.get(f"/sdcpp/v1/jobs/{alice_job}")).status_code == 404
        assert (await client.get(f"/sdcpp/v1/jobs/{guest_job}", headers=alice)).status_code == 404
        # credentials, when sent, are honoured: bad ones are a 401, not a silent guest
        for headers in (bearer("aaa.bbb.ccc"), basic("alice", "wrong-pass")):
            resp = await submit(client, headers)
            assert resp.status_code == 401 and code_of(resp) == "invalid_credentials"


async def test_api_key_mode(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path, models_dir, "api-key")
    store = add_accounts(settings)
    _, key = store.create_key("alice")
    async with serve(settings) as (_, client):
        assert (await submit(client, {})).status_code == 401
        assert (await submit(client, bearer(key))).status_code == 202


async def test_unix_mode_trusts_the_proxy_header(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(
        tmp_path, models_dir, "unix", trust_unix_user_header=True, auth_failure_delay=0.0
    )
    async with serve(settings) as (service, client):
        resp = await submit(client, {"X-Unix-User": "carol"})
        assert resp.status_code == 202, resp.text
        assert (await service.get(resp.json()["id"])).owner == "carol"
        for bad in ("guest", "../root", ""):
            assert (await submit(client, {"X-Unix-User": bad})).status_code == 401
        assert (await submit(client, {})).status_code == 401
    async with auth_client(settings) as client:  # without PAM the proxy vouches at login too
        body = {"username": "carol"}
        resp = await client.post("/api/auth/login", json=body, headers={"X-Unix-User": "carol"})
        assert resp.status_code == 200 and resp.json()["user"]["username"] == "carol"
        for headers in ({"X-Unix-User": "dave"}, {}):
            resp = await client.post("/api/auth/login", json=body, headers=headers)
            assert resp.status_code == 401, headers


class _FakePam:
    def authenticate(self, username: str, password: str, service: str = "login") -> bool:
        return password == f"{username}-system-pw"


async def test_pam_mode_checks_system_passwords(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pam", SimpleNamespace(pam=_FakePam))
    settings = make_settings(tmp_path, models_dir, "pam")
    UserStore(settings.data_path / AUTH_DB).add_user("dave", "admin", None)
    async with serve(settings) as (_, client):
        resp = await submit(client, basic("erin", "erin-system-pw"))
        assert resp.status_code == 202, resp.text
        assert (await submit(client, basic("erin", "erin-password"))).status_code == 401
        # an untrusted X-Unix-User header is ignored
        assert (await submit(client, {"X-Unix-User": "erin"})).status_code == 401
    async with auth_client(settings) as client:
        login = await client.post(
            "/api/auth/login", json={"username": "dave", "password": "dave-system-pw"}
        )
        assert login.status_code == 200, login.text
        assert login.json()["user"]["role"] == "admin"  # the role given beforehand with the CLI


# -- /api/auth/* on a test app ---------------------------------------------------------------


async def login(client: httpx.AsyncClient, name: str, password: str | None = None) -> str:
    resp = await client.post(
        "/api/auth/login", json={"username": name, "password": password or PASSWORDS[name]}
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["token"])


async def test_login_me_validate_refresh(jwt_settings: Settings) -> None:
    async with auth_client(jwt_settings) as client:
        resp = await client.post(
            "/api/auth/login", json={"username": "alice", "password": "alice-password"}
        )
        assert resp.status_code == 200
        body = resp.json()
        assert body["message"] == "Login successful"
        user = body["user"]
        assert (user["username"], user["role"]) == ("alice", "user")
        assert user["id"].isdigit() and user["permissions"] == [
            "generate",
            "jobs:own",
            "models:read",
        ]
        token = body["token"]
        me = await client.get("/api/auth/me", headers=bearer(token))
        assert me.status_code == 200 and me.json()["user"]["username"] == "alice"
        valid = await client.get("/api/auth/validate", headers=bearer(token))
        assert valid.json()["valid"] is True and valid.json()["user"]["role"] == "user"
        refreshed = await client.post("/api/auth/refresh", headers=bearer(token))
        assert refreshed.status_code == 200
        assert refreshed.json()["message"] == "Token refreshed successfully"
        new = refreshed.json()["token"]
        assert new != token
        assert (await client.get("/api/auth/me", headers=bearer(new))).status_code == 200
        admin = await login(client, "root")
        me = await client.get("/api/auth/me", headers=bearer(admin))
        assert "system:manage" in me.json()["user"]["permissions"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"username": "alice", "password": "wrong-password"}, 401, "invalid_credentials"),
        ({"username": "nobody", "password": "alice-password"}, 401, "invalid_credentials"),
        ({"username": "alice"}, 401, "invalid_credentials"),
        ({"username": "alice", "password": ""}, 401, "invalid_credentials"),
        ({"username": "../../etc/passwd", "password": "x"}, 401, "invalid_credentials"),
        ({"password": "alice-password"}, 400, "invalid_request"),
        ({"username": 5, "password": "x"}, 400, "invalid_request"),
        (b"{not json", 400, "invalid_request"),
        (b"", 400, "invalid_request"),
        (b"[]", 400, "invalid_request"),
        (b'{"username": "' + b"a" * 70000 + b'"}', 413, "payload_too_large"),
    ],
)
async def test_bad_logins(
    jwt_settings: Settings, body: dict[str, Any] | bytes, status: int, code: str
) -> None:
    async with auth_client(jwt_settings) as client:
        if isinstance(body, bytes):
            resp = await client.post(
                "/api/auth/login", content=body, headers={"content-type": "application/json"}
            )
        else:
            resp = await client.post("/api/auth/login", json=body)
        assert resp.status_code == status, resp.text
        assert code_of(resp) == code
        if status == 401:
            assert resp.json()["error"] == "invalid username or password"


async def test_failed_logins_wait_the_same_delay(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path, models_dir, "jwt", auth_failure_delay=0.4)
    add_accounts(settings)
    async with auth_client(settings) as client:
        for body in (
            {"username": "alice", "password": "wrong-password"},
            {"username": "nobody", "password": "wrong-password"},
        ):
            started = time.monotonic()
            resp = await client.post("/api/auth/login", json=body)
            assert resp.status_code == 401
            assert time.monotonic() - started >= 0.4
        started = time.monotonic()
        await login(client, "alice")
        assert time.monotonic() - started < 0.4  # success does not wait


async def test_failed_logins_do_not_block_the_loop(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path, models_dir, "jwt", auth_failure_delay=0.5)
    add_accounts(settings)
    async with auth_client(settings) as client:
        started = time.monotonic()
        bad = [
            client.post("/api/auth/login", json={"username": "alice", "password": f"bad-{i}"})
            for i in range(4)
        ]
        results = await asyncio.gather(*bad)
        assert all(r.status_code == 401 for r in results)
        assert time.monotonic() - started < 1.9  # four delays overlapped, not queued


@pytest.mark.parametrize("path", ["/api/auth/me", "/api/auth/validate"])
async def test_me_and_validate_need_credentials(jwt_settings: Settings, path: str) -> None:
    async with auth_client(jwt_settings) as client:
        resp = await client.get(path)
        assert resp.status_code == 401 and code_of(resp) == "auth_required"
        resp = await client.get(path, headers=bearer("aaa.bbb.ccc"))
        assert resp.status_code == 401 and code_of(resp) == "invalid_credentials"


@pytest.mark.parametrize("path", ["/api/auth/logout", "/api/auth/refresh"])
async def test_logout_and_refresh_need_credentials(jwt_settings: Settings, path: str) -> None:
    async with auth_client(jwt_settings) as client:
        resp = await client.post(path)
        assert resp.status_code == 401 and code_of(resp) == "auth_required"


async def test_logout_revokes_the_token_across_restarts(jwt_settings: Settings) -> None:
    async with auth_client(jwt_settings) as client:
        token = await login(client, "alice")
        other = await login(client, "alice")
        resp = await client.post("/api/auth/logout", headers=bearer(token))
        assert resp.status_code == 200 and resp.json() == {"message": "Logout successful"}
        after = await client.get("/api/auth/me", headers=bearer(token))
        assert after.status_code == 401 and "revoked" in after.json()["error"]
        # another session of the same user is untouched
        assert (await client.get("/api/auth/me", headers=bearer(other))).status_code == 200
    # a new app over the same data folder: a restart
    async with serve(jwt_settings) as (_, client):
        resp = await client.get("/sdcpp/v1/capabilities", headers=bearer(token))
        assert resp.status_code == 401 and code_of(resp) == "invalid_credentials"
        assert (
            await client.get("/sdcpp/v1/capabilities", headers=bearer(other))
        ).status_code == 200


async def test_logout_with_an_api_key_revokes_nothing(jwt_settings: Settings) -> None:
    _, key = UserStore(jwt_settings.data_path / AUTH_DB).create_key("alice")
    async with auth_client(jwt_settings) as client:
        resp = await client.post("/api/auth/logout", headers={"X-API-Key": key})
        assert resp.status_code == 200 and "no login token" in resp.json()["message"]
        assert (await client.get("/api/auth/me", headers={"X-API-Key": key})).status_code == 200
        # a key can be exchanged for a login token (what the web UI keeps)
        refreshed = await client.post("/api/auth/refresh", headers={"X-API-Key": key})
        token = refreshed.json()["token"]
        me = await client.get("/api/auth/me", headers=bearer(token))
        assert me.json()["user"]["username"] == "alice"


async def test_guest_in_optional_mode(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path, models_dir, "optional")
    add_accounts(settings)
    async with auth_client(settings) as client:
        me = await client.get("/api/auth/me")
        assert me.status_code == 200
        assert me.json()["user"] == {
            "id": "",
            "username": "guest",
            "role": "guest",
            "permissions": ["generate", "models:read"],
            "authenticated": False,
        }
        assert (await client.get("/api/auth/validate")).status_code == 401
        assert (await client.post("/api/auth/refresh")).status_code == 401
        token = await login(client, "bob")
        assert (await client.get("/api/auth/me", headers=bearer(token))).json()["user"][
            "username"
        ] == "bob"


# -- /api/auth/* through the real app (mounted by the /api family) ---------------------------


async def test_real_app_login_and_me(jwt_settings: Settings) -> None:
    async with serve(jwt_settings) as (_, client):
        resp = await client.post(
            "/api/auth/login", json={"username": "alice", "password": "alice-password"}
        )
        assert resp.status_code == 200, resp.text
        token = resp.json()["token"]
        me = await client.get("/api/auth/me", headers=bearer(token))
        assert me.json()["user"]["username"] == "alice"
        assert (await client.post("/api/auth/logout", headers=bearer(token))).status_code == 200
        assert (
            await client.get("/sdcpp/v1/capabilities", headers=bearer(token))
        ).status_code == 401


async def test_real_app_login_failure_shape(jwt_settings: Settings) -> None:
    async with serve(jwt_settings) as (_, client):
        resp = await client.post("/api/auth/login", json={"username": "alice", "password": "no"})
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "INVALID_CREDENTIALS"
        resp = await client.get("/api/auth/me")
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "AUTH_REQUIRED"


# -- real clients: the OpenAI SDK (key as Bearer) and webuiapi (HTTP Basic) -------------------


async def test_openai_sdk_sends_its_key_as_bearer(jwt_settings: Settings) -> None:
    import openai

    _, key = UserStore(jwt_settings.data_path / AUTH_DB).create_key("alice")
    async with SdrestService(jwt_settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            # openai 3.x types http_client as an httpx2 client; an httpx one serves it as well.
            good = openai.AsyncOpenAI(
                api_key=key,
                base_url="http://test/v1",
                http_client=http,  # type: ignore[arg-type]
            )
            assert "tiny" in [m.id async for m in good.models.list()]
            bad = openai.AsyncOpenAI(
                api_key="sdr_" + "0" * 43,
                base_url="http://test/v1",
                http_client=http,  # type: ignore[arg-type]
            )
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()


def test_webuiapi_basic_auth(jwt_settings: Settings) -> None:
    import webuiapi  # type: ignore[import-untyped]  # the package ships no type information

    from tests.live import live_server

    with live_server(jwt_settings) as live:
        api = webuiapi.WebUIApi(baseurl=f"{live.url}/sdapi/v1")
        api.set_auth("alice", PASSWORDS["alice"])
        assert any(m["model_name"] == "tiny" for m in api.get_sd_models())
        api.set_auth("alice", "wrong-password")
        with pytest.raises(RuntimeError) as info:
            api.txt2img(prompt="a cat", width=64, height=64, steps=1)
        assert info.value.args[0] == 401
