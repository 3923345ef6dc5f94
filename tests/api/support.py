"""Helpers the HTTP tests share: callers with a given role, images, job waiting, accounts and
tokens, and the table of every route with its auth class.

The auth middleware is another piece; the /api tests put a principal in the scope themselves (the
same key the middleware fills), so visibility rules are tested whatever the auth mode.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
from PIL import Image
from starlette.types import ASGIApp, Receive, Scope, Send

from sdrest.api.openapi import operations
from sdrest.api.routing import RouteSpec
from sdrest.app import create_app
from sdrest.auth import SCOPE_KEY, Principal
from sdrest.auth.authenticator import Authenticator
from sdrest.auth.passwords import hash_password
from sdrest.auth.principal import Role
from sdrest.auth.users import AUTH_DB, UserStore
from sdrest.schemas import Job
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.conftest import settings_in
from tests.fakes import FakeEngine


class TestUsers:
    """Sets the principal from an ``X-Test-User: name:role`` header."""

    __test__ = False

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            for key, value in scope.get("headers", []):
                if key == b"x-test-user":
                    name, role = value.decode().split(":")
                    scope[SCOPE_KEY] = Principal(
                        username=name,
                        role=cast(Role, role),  # whatever the test sends: no check here
                        authenticated=role not in ("guest", "anonymous"),
                    )
        await self.app(scope, receive, send)


def user(name: str, role: str = "user") -> dict[str, str]:
    return {"x-test-user": f"{name}:{role}"}


ALICE = user("alice")
BOB = user("bob")
ADMIN = user("root", "admin")
GUEST = user("guest", "guest")
ANONYMOUS = user("", "anonymous")


def png_b64(width: int = 64, height: int = 64, colour: tuple[int, int, int] = (10, 200, 30)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def text2img(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": "a lovely cat", "width": 64, "height": 64, "steps": 2}
    body.update(fields)
    return body


async def finished(service: SdrestService, job_id: str) -> Job:
    return await service.wait(job_id, timeout=10)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    error = body["error"]
    assert error["code"] == code, error
    assert error["status_code"] == status
    assert error["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == error["request_id"]
    assert isinstance(error["timestamp"], int)
    assert error["message"]
    return dict(error)


# -- accounts and tokens (auth modes) ---------------------------------------------------------

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "root": "root-password"}
"""Accounts: alice and bob (role user), root (admin)."""


@functools.cache
def _hash(password: str) -> str:
    return hash_password(password)


def make_settings(tmp_path: Path, models_dir: Path, mode: str, **extra: Any) -> Settings:
    """Settings in ``tmp_path`` for auth ``mode``, without the failed-login delay."""
    return settings_in(
        tmp_path, models_dir, **{"auth_mode": mode, "auth_failure_delay": 0.0, **extra}
    )


def add_accounts(settings: Settings) -> UserStore:
    """Create the :data:`PASSWORDS` accounts in the settings' user database."""
    store = UserStore(settings.data_path / AUTH_DB)
    for name, password in PASSWORDS.items():
        store.add_user(name, "admin" if name == "root" else "user", _hash(password))
    return store


def token_for(settings: Settings, name: str, *, now: float | None = None) -> str:
    """A session token for account ``name`` (issued at ``now``)."""
    auth = Authenticator(settings)
    account = auth.users.get_user(name)
    assert account is not None
    return auth.tokens.issue(account, now=now)[0]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- every route, classified for auth ----------------------------------------------------------

PUBLIC = {
    ("GET", "/"),
    ("GET", "/api/health"),
    ("GET", "/internal/ping"),
    ("GET", "/openapi.json"),
    ("GET", "/api/status"),
    ("GET", "/api/version"),
    ("GET", "/api/queue/job/{job_id}/output/{filename}"),
    ("GET", "/api/v1/jobs/{job_id}/output/{filename}"),
    ("GET", "/api/image/download"),
    ("POST", "/api/validate"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/v1/auth/login"),
}
"""(method, path) of the routes that need no credentials in any auth mode."""
ADMIN_ONLY = {
    ("GET", "/metrics"),
    ("POST", "/api/system/restart"),
    ("GET", "/api/users"),
    ("POST", "/api/users"),
    ("DELETE", "/api/users/{username}"),
    ("POST", "/api/users/{username}/role"),
    ("POST", "/api/users/{username}/password"),
    ("GET", "/api/keys"),
    ("POST", "/api/keys"),
    ("DELETE", "/api/keys/{key_id}"),
    ("POST", "/api/models/refresh"),
    ("POST", "/api/models/batch"),
    ("POST", "/api/models/hash"),
    ("POST", "/api/models/convert"),
    ("POST", "/api/models/download"),
    ("POST", "/api/models/{model_id}/load"),
    ("POST", "/api/models/{model_id}/unload"),
    ("POST", "/sdapi/v1/options"),
    ("POST", "/sdapi/v1/refresh-checkpoints"),
    ("POST", "/sdapi/v1/refresh-vae"),
    ("POST", "/sdapi/v1/refresh-loras"),
    ("POST", "/sdapi/v1/refresh-embeddings"),
    ("POST", "/sdapi/v1/unload-checkpoint"),
    ("POST", "/sdapi/v1/reload-checkpoint"),
}
"""(method, path) of the routes a user is refused (403) and an admin may call."""


@functools.cache
def route_specs() -> dict[tuple[str, str], RouteSpec]:
    """(method, path) -> the spec of every HTTP route of the real app, enumerated from the app
    itself with the walker the OpenAPI builder uses (built once, on first use)."""
    app = create_app(make_settings(Path("/nonexistent"), Path("/nonexistent"), "jwt"))
    return {(op.method, op.path): op.spec for op in operations(app) if op.spec is not None}


def all_routes() -> list[tuple[str, str]]:
    """(method, path) of every HTTP route of the real app."""
    return list(route_specs())


def url(path: str) -> str:
    """A route path with its parameters filled in."""
    return (
        path.replace("{job_id}", "job_1_ab")
        .replace("{filename}", "0.png")
        .replace("{model_id}", "tiny")
        .replace("{model}", "tiny")
    )


@contextlib.asynccontextmanager
async def client_of(settings: Settings, **transport: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A started service with ``settings`` over the FakeEngine, and an HTTP client of its app
    (``transport``: more options of the ASGI transport)."""
    async with SdrestService(settings, engine=FakeEngine()) as service:
        asgi = httpx.ASGITransport(app=create_app(service), **transport)
        async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
            yield client
