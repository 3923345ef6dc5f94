"""Issue 18 "Bounded everywhere": every operation's output size is checked before anything is
queued or decoded (ESRGAN upscales on every route, resize, crop, the hires fix), and JSON nested
past the max depth is a 400 in each family's shape on every JSON route, the connection serving
the next request."""

from __future__ import annotations

import base64
import http.client
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from sdrest.api.json_limits import MAX_JSON_DEPTH, json_depth_exceeds
from sdrest.api.routing import Multipart, NoBody
from sdrest.app import create_app
from sdrest.errors import InvalidRequestError
from sdrest.schemas import UpscaleRequest
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.api.support import ADMIN, PASSWORDS, TestUsers, make_settings, route_specs, url
from tests.conftest import settings_in
from tests.fakes import FakeEngine, write_fake_esrgan


def declared_png_b64(width: int, height: int) -> str:
    """A small PNG (a few KiB) whose header declares ``width`` x ``height``."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG", optimize=True)
    data = out.getvalue()
    assert len(data) < 128 * 1024
    return base64.b64encode(data).decode()


HOSTILE = declared_png_b64(4096, 4096)


@pytest.fixture
def esrgan_models(models_dir: Path) -> Path:
    write_fake_esrgan(models_dir / "esrgan" / "x2.safetensors")
    return models_dir


@pytest.fixture
async def upscaling(
    tmp_path: Path, esrgan_models: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, SdrestService]]:
    settings = settings_in(tmp_path, esrgan_models, max_queue=3)
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=TestUsers(create_app(service)))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, service


# -- output sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/generate/upscale", {"image": HOSTILE, "esrgan_model": "x2"}, "image"),
        ("/api/generate/upscale", {"image": HOSTILE, "esrgan_model": "x2", "repeats": 2}, "image"),
        (
            "/sdapi/v1/extra-single-image",
            {"image": HOSTILE, "upscaler_1": "x2", "upscaling_resize": 1},
            "upscaler_1",
        ),
        (
            "/sdapi/v1/extra-batch-images",
            {
                "imageList": [{"data": HOSTILE, "name": "a"}],
                "upscaler_1": "x2",
                "upscaling_resize": 1,
            },
            "upscaler_1",
        ),
    ],
)
async def test_an_upscale_past_the_max_size_is_refused_before_any_job(
    upscaling: tuple[httpx.AsyncClient, SdrestService],
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    client, service = upscaling
    resp = await client.post(path, json=body, headers=ADMIN)
    assert resp.status_code == 400, resp.text
    answer = resp.json()
    error = answer["error"] if isinstance(answer["error"], dict) else answer
    assert error["field"] == field
    assert "largest" in str(error.get("message") or error.get("detail"))
    assert await service.list_jobs() == []


async def test_the_library_path_is_refused_in_planning(
    upscaling: tuple[httpx.AsyncClient, SdrestService],
) -> None:
    """``Generator.upscale`` and every family queue through ``submit_upscale``: the check."""
    _, service = upscaling
    with pytest.raises(InvalidRequestError) as info:
        await service.submit_upscale(UpscaleRequest(image=HOSTILE, upscaler="x2"), owner="a")
    assert info.value.field == "image" and "8192x8192" in info.value.message
    small = declared_png_b64(2048, 1024)  # exactly 4096 wide after the 2x pass: allowed
    job = await service.submit_upscale(UpscaleRequest(image=small, upscaler="x2"), owner="a")
    assert (await service.wait(job.id, timeout=30)).status == "completed"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/image/resize", {"image": HOSTILE, "width": 8192}, "width"),
        ("/api/image/resize", {"image": HOSTILE, "height": 5000, "width": 64}, "height"),
        ("/api/image/crop", {"image": HOSTILE, "width": 64, "height": 64, "x": 4090}, "width"),
    ],
)
async def test_resize_and_crop_sizes_are_checked_from_the_header(
    upscaling: tuple[httpx.AsyncClient, SdrestService],
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    client, _ = upscaling
    resp = await client.post(path, json=body, headers=ADMIN)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["field"] == field


async def test_the_hires_fix_size_is_checked(
    upscaling: tuple[httpx.AsyncClient, SdrestService],
) -> None:
    client, service = upscaling
    body = {"prompt": "x", "width": 2048, "height": 2048, "hires": {"enabled": True, "scale": 4}}
    resp = await client.post("/sdcpp/v1/img_gen", json=body, headers=ADMIN)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == "hires" and "8192x8192" in resp.json()["error"]
    assert await service.list_jobs() == []


# -- JSON nesting ----------------------------------------------------------------------------------


def _deep(depth: int) -> dict[str, bytes]:
    return {
        "arrays": b"[" * depth + b"]" * depth,
        "objects": b'{"a":' * depth + b"1" + b"}" * depth,
        "ignored field": b'{"prompt": "x", "zzz": ' + b"[" * depth + b"]" * depth + b"}",
    }


JSON_ROUTES = [
    (method, path)
    for (method, path), spec in route_specs().items()
    if method != "GET" and spec.body is not None and not isinstance(spec.body, Multipart | NoBody)
]
# Login decodes its body only with authentication on: test_deep_json_login_is_a_400 covers it.
SWEPT_ROUTES = [
    route for route in JSON_ROUTES if route[1] not in ("/api/auth/login", "/api/v1/auth/login")
]


def family_message(path: str, resp: httpx.Response) -> str:
    """The error message of a family's error body, checking the family's shape on the way."""
    body = resp.json()
    if path.startswith("/sdcpp/"):
        assert body["code"] == "invalid_request"
        return str(body["error"])
    if path.startswith("/v1/"):
        assert body["error"]["type"] == "invalid_request_error"
        return str(body["error"]["message"])
    if path.startswith("/sdapi/"):
        assert body["error"] == "InvalidRequestError" and body["errors"].startswith("400: ")
        return str(body["detail"])
    assert path.startswith("/api/"), path
    assert body["error"]["status_code"] == 400 and body["error"]["code"]
    return str(body["error"]["message"])


def test_every_json_route_is_enumerated() -> None:
    paths = {path for _, path in JSON_ROUTES}
    assert {"/sdapi/v1/options", "/sdapi/v1/png-info", "/sdapi/v1/txt2img"} <= paths
    assert {"/sdcpp/v1/img_gen", "/v1/images/generations", "/api/generate/upscale"} <= paths


@pytest.mark.parametrize(("method", "path"), SWEPT_ROUTES)
async def test_deep_json_is_a_400_in_the_family_shape(
    upscaling: tuple[httpx.AsyncClient, SdrestService], method: str, path: str
) -> None:
    client, _ = upscaling
    for depth in (1_500, 10_000):
        for shape, body in _deep(depth).items():
            resp = await client.request(
                method,
                url(path),
                content=body,
                headers={"content-type": "application/json", **ADMIN},
            )
            if resp.status_code == 413:  # a route that reads a small body refuses it unread
                assert depth == 10_000, (path, shape)
                continue
            assert resp.status_code == 400, (path, shape, depth, resp.text)
            assert "max depth" in family_message(path, resp), (path, shape)


async def test_deep_json_login_is_a_400(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path, models_dir, "jwt")
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for body in _deep(1_500).values():
                resp = await client.post("/api/auth/login", content=body)
                assert resp.status_code == 400, resp.text
                assert "max depth" in resp.json()["error"]["message"]
            ok = {"username": "alice", "password": PASSWORDS["alice"]}
            assert (await client.post("/api/auth/login", json=ok)).status_code == 401


async def test_deep_json_in_extra_args_and_a_jwt_are_refused(
    upscaling: tuple[httpx.AsyncClient, SdrestService],
) -> None:
    client, _ = upscaling
    block = '{"seed": ' + "[" * 2000 + "]" * 2000 + "}"
    body = {"prompt": f"a cat <sd_cpp_extra_args>{block}</sd_cpp_extra_args>", "size": "64x64"}
    resp = await client.post("/v1/images/generations", json=body, headers=ADMIN)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "prompt"
    assert "max depth" in resp.json()["error"]["message"]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_deeply_nested_token_is_a_401(tmp_path: Path, models_dir: Path) -> None:
    from sdrest.auth.authenticator import Authenticator

    settings = make_settings(tmp_path, models_dir, "jwt")
    header = b'{"alg": "HS256", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    token = f"{_b64url(header)}.{_b64url(b'{}')}.{_b64url(b'sig')}"
    principal = Authenticator(settings)._token_principal(token)
    assert not principal.authenticated


def test_the_connection_serves_the_next_request(settings: Settings) -> None:
    """Over a real socket: a deep body on every JSON route, then a request on the SAME
    connection (an unhandled error made uvicorn close it)."""
    from tests.live import live_server

    with live_server(settings) as live:
        conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
        conn.connect()
        sock = conn.sock
        for method, path in JSON_ROUTES:
            conn.request(method, url(path), body=_deep(1_500)["objects"])
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 400, (path, resp.status)
            conn.request("GET", "/api/health")
            health = conn.getresponse()
            health.read()
            assert health.status == 200 and conn.sock is sock, path
        conn.close()


# -- the depth scan ---------------------------------------------------------------------------


def _reference_depth(text: str) -> int:
    depth = best = 0
    inside = escaped = False
    for char in text:
        if inside:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                inside = False
        elif char == '"':
            inside = True
        elif char in "[{":
            depth += 1
            best = max(best, depth)
        elif char in "]}":
            depth -= 1
    return best


_JSON = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=80,
)


@given(value=_JSON, limit=st.integers(0, 12))
def test_the_scan_agrees_with_a_reference(value: object, limit: int) -> None:
    import json

    text = json.dumps(value)
    assert json_depth_exceeds(text, limit) == (_reference_depth(text) > limit)


def test_the_limit_itself() -> None:
    assert not json_depth_exceeds(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert json_depth_exceeds(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    prompt = b'{"prompt": "' + b"[" * 5000 + b'"}'  # brackets in strings do not count
    assert not json_depth_exceeds(prompt)


async def test_a_deep_ws_message_is_ignored_and_the_socket_stays(service: SdrestService) -> None:
    from tests.api.test_rest_ws import _open

    client = await _open(service)
    await client.say('{"type": ' + "[" * 2000 + "]" * 2000 + "}")  # within the 4 KiB message cap
    await client.say('{"type": "ping"}')
    assert (await client.until("pong"))["data"] == {}
    await client.disconnect()
