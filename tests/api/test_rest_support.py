"""Shared helpers for the /api tests: callers with a given role, images, job waiting.

The auth middleware is another piece; these tests put a principal in the scope themselves (the
same key the middleware fills), so visibility rules are tested whatever the auth mode.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.types import ASGIApp, Receive, Scope, Send

from sdrest.app import create_app
from sdrest.auth import SCOPE_KEY, Principal
from sdrest.schemas import Job
from sdrest.service import SdrestService


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
                        role=role,
                        authenticated=role not in ("guest", "anonymous"),  # type: ignore[arg-type]
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


@pytest.fixture
async def api(service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose requests may name their caller with ``X-Test-User``."""
    transport = httpx.ASGITransport(app=TestUsers(create_app(service)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


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
