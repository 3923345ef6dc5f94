"""The /api utilities over HTTP, mounted in a small app of their own (fake engine).

The routes raise SdrestErrors; this app renders them minimally so these tests do not depend on
the /api family's renderer. ``test_rest_utilities_app.py`` runs the same routes through
``create_app``.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from sdrest.api.common import JSONResponse
from sdrest.api.rest.routes import ROUTES
from sdrest.auth.principal import SCOPE_KEY, Principal
from sdrest.errors import SdrestError
from sdrest.net.fetch import fetch_image
from sdrest.service import SdrestService
from sdrest.settings import Settings, load_settings
from tests.unit.support import PNG, LocalServer, only_loopback, redirect, respond

ROLES = {
    "anonymous": Principal(username="", role="anonymous"),
    "user": Principal(username="ann", role="user", authenticated=True),
}


class RoleFromHeader:
    """Stands in for the auth middleware: ``X-Test-Role`` picks the principal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        role = headers.get(b"x-test-role", b"").decode()
        if role in ROLES:
            scope = {**scope, SCOPE_KEY: ROLES[role]}
        await self.app(scope, receive, send)


async def render(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SdrestError)
    body = {"error": {"code": exc.code, "message": exc.message, "field": exc.field}}
    return JSONResponse(body, status_code=exc.status)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return load_settings(
        {
            "models_dir": str(models_dir),
            "data_dir": str(tmp_path / "data"),
            "output_dir": str(tmp_path / "outputs"),
            "allow_url_images": True,
            "fetch_timeout": 5.0,
            "max_size": 2048,
            "max_steps": 60,
            "max_batch": 4,
            "preload": False,  # "nothing loaded yet" is part of what is checked
        },
        env={},
    )


@pytest.fixture
async def http(service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[Mount("/api", routes=ROUTES)],
        exception_handlers={SdrestError: render},
    )
    app.state.service = service
    transport = httpx.ASGITransport(app=RoleFromHeader(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def png_b64(size: tuple[int, int] = (32, 16)) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, (0, 200, 0)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


# --- samplers, schedulers, parameters ---------------------------------------------------------


async def test_samplers_lists_the_spec_names_with_details(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/samplers")
    assert response.status_code == 200
    body = response.json()
    assert body["samplers"][:6] == ["euler", "euler_a", "heun", "dpm2", "dpmpp2s_a", "dpmpp2m"]
    details = {d["name"]: d for d in body["details"]}
    assert details["dpmpp2m"]["aliases"] == ["dpm++2m"]  # the library's spelling
    assert details["heun"]["model_calls_per_step"] == 2
    assert all(d["description"] for d in body["details"])


async def test_schedulers_lists_library_names(http: httpx.AsyncClient) -> None:
    body = (await http.get("/api/schedulers")).json()
    assert {"discrete", "karras", "exponential", "ays", "gits"} <= set(body["schedulers"])
    assert all(d["description"] for d in body["details"])


async def test_parameters_follow_the_configured_limits(http: httpx.AsyncClient) -> None:
    body = (await http.get("/api/parameters")).json()
    params = body["parameters"]
    assert params["width"] == {
        "type": "integer",
        "min": 64,
        "max": 2048,
        "default": 1024,  # the model is a Flux.2: its native size
        "step": 16,
        "note": "rounded up to a multiple of 16 by the library",
    }
    assert (params["steps"]["min"], params["steps"]["max"], params["steps"]["default"]) == (
        1,
        60,
        20,
    )
    assert params["batch_count"]["max"] == 4
    assert (params["cfg_scale"]["min"], params["cfg_scale"]["max"]) == (0.0, 100.0)
    assert body["model"] == "tiny"


@pytest.mark.parametrize(
    "path", ["/api/samplers", "/api/schedulers", "/api/parameters"]
)  # fmt: skip
async def test_tables_need_models_read(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path, headers={"X-Test-Role": "anonymous"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "auth_required"
    assert (await http.get(path, headers={"X-Test-Role": "user"})).status_code == 200


# --- validate ---------------------------------------------------------------------------------


async def test_validate_accepts_a_good_body_without_queueing(
    http: httpx.AsyncClient, service: SdrestService
) -> None:
    body = {"prompt": "a cat", "width": 64, "height": 72, "steps": 2, "sampling_method": "dpmpp2m"}
    response = await http.post("/api/validate", json=body, headers={"X-Test-Role": "anonymous"})
    assert response.status_code == 200
    result = response.json()
    assert result["valid"] is True, result
    assert result["errors"] == []
    assert result["model"] == "tiny"
    codes = {w["code"] for w in result["warnings"]}
    assert codes == {"SIZE_ROUNDED", "MODEL_NOT_LOADED"}  # 72 -> 80; nothing loaded yet
    assert await service.list_jobs() == []


async def test_validate_reports_every_limit_broken(http: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "width": 8, "height": 9999, "steps": 61, "batch_count": 9}
    result = (await http.post("/api/validate", json=body)).json()
    assert result["valid"] is False
    fields = [e["field"] for e in result["errors"]]
    assert fields[:4] == ["width", "height", "steps", "batch_count"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "sampling_method": "nope"}, "sampling_method"),
        ({"prompt": "x", "scheduler": "nope"}, "scheduler"),
        ({"prompt": "x", "model_name": "missing"}, "model_name"),
        ({"prompt": "x", "width": "wide"}, "width"),
        ({"prompt": "x", "init_image": "not an image!"}, "init_image"),
        ({"prompt": "x", "seed": "lucky"}, "seed"),
    ],
)
async def test_validate_reports_bad_fields(
    http: httpx.AsyncClient, body: dict[str, Any], field: str | None
) -> None:
    response = await http.post("/api/validate", json=body)
    assert response.status_code == 200
    result = response.json()
    assert result["valid"] is False
    if field is not None:
        assert field in [e["field"] for e in result["errors"]], result
    assert all(e["message"] for e in result["errors"])


async def test_validate_warns_of_unknown_fields(http: httpx.AsyncClient) -> None:
    result = (await http.post("/api/validate", json={"prompt": "x", "typo_field": 1})).json()
    assert result["valid"] is True, result
    assert {"field": "typo_field", "code": "UNKNOWN_FIELD"}.items() <= result["warnings"][0].items()


async def test_validate_checks_images(http: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "init_image": png_b64(), "strength": 0.5}
    result = (await http.post("/api/validate", json=body)).json()
    assert result["valid"] is True, result


async def test_validate_decodes_images_only_for_callers_who_may_generate(
    http: httpx.AsyncClient,
) -> None:
    body = {"prompt": "x", "init_image": "bm90IGFuIGltYWdl"}  # base64 of "not an image"
    anonymous = await http.post("/api/validate", json=body, headers={"X-Test-Role": "anonymous"})
    result = anonymous.json()
    assert result["valid"] is True
    assert "IMAGES_NOT_CHECKED" in [w["code"] for w in result["warnings"]]
    user = (await http.post("/api/validate", json=body, headers={"X-Test-Role": "user"})).json()
    assert user["valid"] is False
    assert user["errors"][0]["field"] == "init_image"
    assert "not a usable image" in user["errors"][0]["message"]


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]"])
async def test_validate_refuses_what_is_not_a_json_object(
    http: httpx.AsyncClient, raw: bytes
) -> None:
    response = await http.post("/api/validate", content=raw)
    # A non-object is a wrong type (an answer), malformed JSON a 400.
    if raw == b"[1, 2]":
        assert response.json()["valid"] is False
    else:
        assert response.status_code == 400


async def test_validate_unknown_mode_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/validate?mode=dream", json={"prompt": "x"})
    assert response.status_code == 400
    assert error_of(response)["field"] == "mode"


# --- estimate ---------------------------------------------------------------------------------


async def test_estimate_is_heuristic_without_history(http: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "width": 512, "height": 512, "steps": 10}
    response = await http.post("/api/estimate", json=body)
    assert response.status_code == 200
    result = response.json()
    assert result["time"]["basis"] == "heuristic"
    assert result["time"]["samples"] == 0
    assert result["estimated_time_seconds"] == result["time"]["seconds"] > 0
    memory = result["memory"]
    assert memory["weights"]["model"] > 0  # the checkpoint's file size
    assert memory["latent_bytes"] == 16 * 4 * 64 * 64
    assert (
        memory["bytes"]
        == memory["weights_bytes"] + memory["latent_bytes"] + memory["vae_decode_bytes"]
    )


async def test_estimate_uses_measured_step_times(
    http: httpx.AsyncClient, service: SdrestService
) -> None:
    from sdrest.schemas import ImgGenRequest, SampleParams

    job = await service.submit(
        ImgGenRequest(prompt="x", width=64, height=64, sample_params=SampleParams(sample_steps=2))
    )
    await service.wait(job.id, timeout=10)
    body = {"prompt": "x", "width": 128, "height": 64, "steps": 10, "sampling_method": "heun"}
    result = (await http.post("/api/estimate", json=body)).json()
    time = result["time"]
    assert time["basis"] == "measured"
    assert time["samples"] == 1
    # The fake engine reports 0.01 s/step at 64x64: twice the pixels, two calls a step (heun).
    assert time["seconds_per_step"] == pytest.approx(0.04)
    assert result["model_loaded"] is True


async def test_estimate_refuses_bad_bodies(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/estimate", json={"prompt": "x", "steps": 1000})
    assert response.status_code == 400
    assert (await http.post("/api/estimate", content=b"{")).status_code == 400
    guest = await http.post(
        "/api/estimate", json={"prompt": "x"}, headers={"X-Test-Role": "anonymous"}
    )
    assert guest.status_code == 401


# --- image download ---------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    srv = LocalServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The route's fetcher with the test policy (127.0.0.1 only); everything else as in prod."""
    monkeypatch.setattr(
        "sdrest.net.fetch.fetch_image", functools.partial(fetch_image, allow=only_loopback)
    )


async def test_download_refuses_the_local_server_by_default(
    http: httpx.AsyncClient, server: LocalServer
) -> None:
    server.routes["/a.png"] = respond("200 OK", PNG)
    response = await http.get("/api/image/download", params={"url": server.base + "/a.png"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "url_not_allowed"
    assert "loopback" in error_of(response)["message"]
    assert server.requests == []


@pytest.mark.usefixtures("loopback_allowed")
async def test_download_returns_image_bytes(http: httpx.AsyncClient, server: LocalServer) -> None:
    server.routes["/a.png"] = respond("200 OK", PNG, {"Content-Type": "text/html"})
    response = await http.get(
        "/api/image/download",
        params={"url": server.base + "/a.png"},
        headers={"X-Test-Role": "anonymous"},
    )
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"  # what it is, not what it claimed
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.usefixtures("loopback_allowed")
async def test_download_as_base64(http: httpx.AsyncClient, server: LocalServer) -> None:
    server.routes["/a.png"] = respond("200 OK", PNG)
    response = await http.get(
        "/api/image/download", params={"url": server.base + "/a.png", "encoding": "base64"}
    )
    body = response.json()
    assert base64.b64decode(body["image"]) == PNG
    assert body["data_url"].startswith("data:image/png;base64,")
    assert (body["width"], body["height"], body["format"]) == (8, 6, "png")


@pytest.mark.usefixtures("loopback_allowed")
async def test_download_redirect_into_private_range_is_refused(
    http: httpx.AsyncClient, server: LocalServer
) -> None:
    server.routes["/r"] = redirect("http://169.254.169.254/latest/meta-data/")
    response = await http.get("/api/image/download", params={"url": server.base + "/r"})
    assert response.status_code == 400
    assert "cloud metadata" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 400, "invalid_request"),
        ({"url": "file:///etc/passwd"}, 400, "url_not_allowed"),
        ({"url": "http://u:p@example.com/a.png"}, 400, "url_not_allowed"),
        ({"url": "http://2130706433/"}, 400, "url_not_allowed"),
        ({"url": "http://example.com/", "encoding": "hex"}, 400, "invalid_request"),
    ],
)
async def test_download_bad_urls(
    http: httpx.AsyncClient, params: dict[str, str], status: int, code: str
) -> None:
    response = await http.get("/api/image/download", params=params)
    assert response.status_code == status
    assert error_of(response)["code"] == code


async def test_download_disabled_is_403(service: SdrestService, tmp_path: Path) -> None:
    off = load_settings({"data_dir": str(tmp_path / "d2"), "allow_url_images": False}, env={})
    app = Starlette(
        routes=[Mount("/api", routes=ROUTES)],
        exception_handlers={SdrestError: render},
    )
    app.state.service = SdrestService(off)  # never started: the route only reads its settings
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/api/image/download", params={"url": "http://example.com/a.png"})
    assert response.status_code == 403
    assert error_of(response)["code"] == "url_fetch_disabled"


# --- resize and crop --------------------------------------------------------------------------


async def test_resize_over_http(http: httpx.AsyncClient) -> None:
    body = {"image": png_b64(), "width": 16, "output_format": "jpeg"}
    response = await http.post("/api/image/resize", json=body)
    assert response.status_code == 200
    result = response.json()
    assert (result["width"], result["height"], result["mime_type"]) == (16, 8, "image/jpeg")


async def test_crop_over_http(http: httpx.AsyncClient) -> None:
    body = {"image": png_b64(), "x": 4, "y": 4, "width": 8, "height": 8}
    result = (await http.post("/api/image/crop", json=body)).json()
    assert (result["width"], result["height"]) == (8, 8)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/image/crop", {"image": png_b64(), "x": 30, "width": 8, "height": 8}, 400),
        ("/api/image/crop", {"image": png_b64(), "width": 8}, 400),
        ("/api/image/resize", {"image": png_b64(), "width": 99999}, 400),
        ("/api/image/resize", {"image": "AAAA", "width": 8}, 400),
        ("/api/image/resize", {"image": png_b64(), "width": 8, "output_format": "bmp"}, 400),
        ("/api/image/resize", {"image": png_b64()}, 400),
    ],
)
async def test_image_tools_bad_input_is_400(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], status: int
) -> None:
    response = await http.post(path, json=body)
    assert response.status_code == status
    assert error_of(response)["message"]


async def test_image_tools_need_generate(http: httpx.AsyncClient) -> None:
    body = {"image": png_b64(), "width": 8}
    guest = await http.post("/api/image/resize", json=body, headers={"X-Test-Role": "anonymous"})
    assert guest.status_code == 401
    user = await http.post("/api/image/resize", json=body, headers={"X-Test-Role": "user"})
    assert user.status_code == 200


async def test_image_tools_refuse_huge_bodies(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/image/crop",
        content=b"{}",
        headers={"Content-Length": str(1 << 30), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
