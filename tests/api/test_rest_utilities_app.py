"""The /api utilities through the real ``create_app``: the /api error shape, auth, mounting."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.conftest import settings_in
from tests.fakes import FakeEngine


def png_b64() -> str:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def rest_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["status_code"] == response.status_code
    assert error["request_id"] and error["timestamp"]
    return error


async def test_tables_are_mounted(client: httpx.AsyncClient) -> None:
    samplers = await client.get("/api/samplers")
    assert samplers.status_code == 200
    assert "euler" in samplers.json()["samplers"]
    assert "karras" in (await client.get("/api/schedulers")).json()["schedulers"]
    params = (await client.get("/api/parameters")).json()["parameters"]
    assert params["width"]["max"] == 4096


async def test_validate_and_estimate(client: httpx.AsyncClient) -> None:
    body = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2}
    result = (await client.post("/api/validate", json=body)).json()
    assert result["valid"] is True, result
    estimate = (await client.post("/api/estimate", json=body)).json()
    assert estimate["model"] == "tiny"
    assert estimate["time"]["basis"] == "heuristic"


async def test_errors_take_the_rest_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/validate", content=b"{oops")
    assert response.status_code == 400
    assert rest_error(response)["code"] == "INVALID_PARAMETERS"
    crop = await client.post(
        "/api/image/crop", json={"image": png_b64(), "x": 15, "width": 10, "height": 5}
    )
    assert crop.status_code == 400
    error = rest_error(crop)
    assert "does not fit inside the 20x10 image" in error["message"]
    assert error["field"] == "width"


async def test_download_is_403_when_url_images_are_off(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/image/download", params={"url": "http://example.com/a.png"})
    assert response.status_code == 403
    assert rest_error(response)["code"] == "URL_FETCH_DISABLED"


# --- with authentication on -------------------------------------------------------------------


@pytest.fixture
def auth_settings(tmp_path: Path, models_dir: Path) -> Settings:
    return settings_in(
        tmp_path, models_dir, auth_mode="jwt", jwt_secret="x" * 32, allow_url_images=True
    )


@pytest.fixture
async def auth_client(auth_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with SdrestService(auth_settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/samplers", None),
        ("GET", "/api/schedulers", None),
        ("GET", "/api/parameters", None),
        ("POST", "/api/estimate", {"prompt": "x"}),
        ("POST", "/api/image/resize", {"image": "x", "width": 8}),
        ("POST", "/api/image/crop", {"image": "x", "width": 8, "height": 8}),
    ],
)
async def test_protected_utilities_need_credentials(
    auth_client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await auth_client.request(method, path, json=body)
    assert response.status_code == 401
    assert rest_error(response)["code"] == "AUTH_REQUIRED"


async def test_public_utilities_answer_without_credentials(auth_client: httpx.AsyncClient) -> None:
    validate = await auth_client.post("/api/validate", json={"prompt": "x", "width": 64})
    assert validate.status_code == 200
    assert validate.json()["valid"] is True
    # Public, but still guarded: the loopback address is refused, not fetched.
    download = await auth_client.get(
        "/api/image/download", params={"url": "http://127.0.0.1:1/a.png"}
    )
    assert download.status_code == 400
    assert rest_error(download)["code"] == "URL_NOT_ALLOWED"
