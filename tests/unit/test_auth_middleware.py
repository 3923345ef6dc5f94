"""The middleware on small apps: WebSocket credentials, lifespan passthrough, auth off."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from sdrest.api.common import JSONResponse, error_status
from sdrest.api.rest.routes import ROUTES
from sdrest.auth import principal_of
from sdrest.auth.authenticator import Authenticator
from sdrest.auth.middleware import AuthMiddleware
from sdrest.errors import SdrestError
from sdrest.settings import Settings, load_settings

AUTH_ROUTES = [r for r in ROUTES if r.path.startswith("/auth/")]


def _settings(tmp_path: Path, mode: str) -> Settings:
    return load_settings({"data_dir": str(tmp_path), "auth_mode": mode}, env={})


async def _whoami(websocket: WebSocket) -> None:
    await websocket.accept()
    principal = principal_of(websocket)
    await websocket.send_json({"username": principal.username, "role": principal.role})
    await websocket.close()


def _render(request: Request, exc: Exception) -> Response:
    status, code, message = error_status(exc)
    return JSONResponse({"error": message, "code": code}, status_code=status)


def test_websocket_credentials(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "jwt")
    authenticator = Authenticator(settings)
    alice = authenticator.users.add_user("alice", "user", None)
    token, _ = authenticator.tokens.issue(alice)
    _, key = authenticator.users.create_key("alice")
    app = Starlette(
        routes=[WebSocketRoute("/ws", _whoami)],
        middleware=[Middleware(AuthMiddleware, authenticator=authenticator)],
    )
    with TestClient(app) as client:  # also runs the lifespan through the middleware
        for url, headers in (
            (f"/ws?token={token}", {}),
            (f"/ws?token={key}", {}),
            ("/ws", {"Authorization": f"Bearer {token}"}),
        ):
            with client.websocket_connect(url, headers=headers) as ws:
                assert ws.receive_json() == {"username": "alice", "role": "user"}
        for url in ("/ws?token=aaa.bbb.ccc", "/ws"):
            with client.websocket_connect(url) as ws:
                assert ws.receive_json()["role"] == "anonymous"


async def test_auth_routes_when_auth_is_off(tmp_path: Path) -> None:
    app = Starlette(
        routes=[Mount("/api", routes=AUTH_ROUTES)], exception_handlers={SdrestError: _render}
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        me = await client.get("/api/auth/me")
        assert me.json()["user"]["role"] == "admin"
        assert "system:manage" in me.json()["user"]["permissions"]
        assert (await client.get("/api/auth/validate")).json()["valid"] is True
        resp = await client.post("/api/auth/login", json={"username": "a", "password": "b"})
        assert resp.status_code == 400 and resp.json()["code"] == "auth_disabled"
        assert (await client.post("/api/auth/refresh")).status_code == 400
        assert (await client.post("/api/auth/logout")).status_code == 200
