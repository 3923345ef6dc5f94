"""/sdapi/v1 listings, model management, png-info and extras over HTTP with the fake engine.

The routes are mounted in a small app of the test's own (``INFO_ROUTES`` under /sdapi/v1 with a
minimal error renderer), so they are tested whatever state the family's main module is in.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdrest.api.common import JSONResponse, error_status
from sdrest.api.sdapi.routes import INFO_ROUTES
from sdrest.auth import SCOPE_KEY, Principal
from sdrest.engine.base import UpscalePlan
from sdrest.errors import EngineError, SdrestError
from sdrest.images import encode_image
from sdrest.service import SdrestService
from sdrest.settings import Settings
from sdrest.testing import write_garbage_model
from tests.conftest import settings_in
from tests.fakes import (
    ESRGAN_X2_TENSORS,
    FakeEngine,
    write_fake_checkpoint,
    write_safetensors_header,
)

ESRGAN_X2 = ESRGAN_X2_TENSORS


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_fake_checkpoint(root / "checkpoints" / "tiny.safetensors")
    write_safetensors_header(
        root / "lora" / "sub" / "style.safetensors",
        ["model.diffusion_model.img_in.lora_down.weight"],
    )
    write_safetensors_header(root / "esrgan" / "x2.safetensors", ESRGAN_X2)
    write_garbage_model(root / "esrgan" / "broken-esrgan.safetensors")
    write_safetensors_header(root / "vae" / "ae.safetensors", ["decoder.conv_in.weight"])
    write_safetensors_header(root / "embeddings" / "easyneg.safetensors", ["emb_params"])
    return root


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return settings_in(tmp_path, models_dir, max_queue=3, max_image_mb=0.25)  # cheap to cross


class _AsPrincipal:
    """Test-only auth: ``x-test-role: anonymous|guest|user`` puts that principal in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        role = headers.get(b"x-test-role", b"").decode()
        if role == "anonymous":
            scope[SCOPE_KEY] = Principal(username="", role="anonymous")
        elif role == "guest":
            scope[SCOPE_KEY] = Principal(username="guest", role="guest")
        elif role == "user":
            scope[SCOPE_KEY] = Principal(username="alice", role="user", authenticated=True)
        await self.app(scope, receive, send)


def _render(request: Request, exc: Exception) -> Response:
    status, code, message = error_status(exc)
    return JSONResponse(
        {"error": code, "detail": message, "field": getattr(exc, "field", None)},
        status_code=status,
    )


def _test_app(service: SdrestService, *, sub_app: bool = False) -> ASGIApp:
    if sub_app:  # as create_sdapi_app mounts it: request.app is the family's own app
        inner = Starlette(routes=INFO_ROUTES, exception_handlers={SdrestError: _render})
        inner.state.service = service
        mount = Mount("/sdapi/v1", app=inner)
    else:
        mount = Mount("/sdapi/v1", routes=INFO_ROUTES)
    app = Starlette(routes=[mount], exception_handlers={SdrestError: _render})
    app.state.service = service
    return _AsPrincipal(app)


@pytest.fixture
async def api(service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_test_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://test/sdapi/v1/") as http:
        yield http


def _png_b64(image: Image.Image, infotext: str | None = None) -> str:
    return base64.b64encode(encode_image(image, "png", infotext=infotext)).decode()


def _decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def _pattern(width: int = 16, height: int = 12) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 16 % 256, y * 20 % 256, 99) for y in range(height) for x in range(width)])
    return image


# -- listings ----------------------------------------------------------------------------------


async def test_sd_models_lists_the_checkpoint_with_its_hash(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    assert service.registry.wait_for_hashes(30)
    resp = await api.get("sd-models")
    assert resp.status_code == 200
    [item] = resp.json()
    sha = service.registry.sha256("tiny")
    assert sha is not None
    assert item["model_name"] == "tiny"
    assert item["sha256"] == sha and item["hash"] == sha[:10]
    assert item["title"].endswith(f"[{sha[:10]}]") and item["title"].startswith("tiny")
    assert item["filename"] == "checkpoints/tiny.safetensors"
    assert item["config"] is None


async def test_component_listings(api: httpx.AsyncClient) -> None:
    upscalers = (await api.get("upscalers")).json()
    assert [u["name"] for u in upscalers] == ["None", "Lanczos", "Nearest", "x2"]
    assert upscalers[3]["scale"] == 2  # read from the tensor names
    assert (await api.get("realesrgan-models")).json() == [
        {"name": "x2", "path": "esrgan/x2.safetensors", "scale": 2}
    ]
    assert (await api.get("sd-vae")).json() == [
        {"model_name": "ae.safetensors", "filename": "vae/ae.safetensors"}
    ]
    assert (await api.get("loras")).json() == [
        {"name": "style", "alias": "style", "path": "sub/style.safetensors", "metadata": {}}
    ]
    embeddings = (await api.get("embeddings")).json()
    assert embeddings["loaded"] == {} and list(embeddings["skipped"]) == ["easyneg"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "latent-upscale-modes",
            [
                {"name": n}
                for n in (
                    "Latent",
                    "Latent (antialiased)",
                    "Latent (bicubic)",
                    "Latent (bicubic antialiased)",
                    "Latent (nearest)",
                    "Latent (nearest-exact)",
                )
            ],
        ),
        ("face-restorers", []),
        ("prompt-styles", []),
        ("hypernetworks", []),
        ("extensions", []),
    ],
)
async def test_features_sdrest_does_not_have_are_empty(
    api: httpx.AsyncClient, path: str, body: Any
) -> None:
    resp = await api.get(path)
    assert resp.status_code == 200
    assert resp.json() == body


async def test_memory(api: httpx.AsyncClient) -> None:
    body = (await api.get("memory")).json()
    assert body["ram"]["total"] > body["ram"]["used"] > 0
    assert "cuda" in body


async def test_routes_work_inside_a_family_sub_app(service: SdrestService) -> None:
    transport = httpx.ASGITransport(app=_test_app(service, sub_app=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/sdapi/v1/loras")).json()[0]["name"] == "style"
        resp = await http.post("/sdapi/v1/png-info", json={"image": "%%%"})
        assert resp.status_code == 400 and resp.json()["field"] == "image"


# -- model management --------------------------------------------------------------------------


async def test_refresh_checkpoints_finds_new_files(
    api: httpx.AsyncClient, models_dir: Path
) -> None:
    write_fake_checkpoint(models_dir / "checkpoints" / "second.safetensors")
    assert [m["model_name"] for m in (await api.get("sd-models")).json()] == ["tiny"]
    for path in ("refresh-checkpoints", "refresh-vae", "refresh-loras"):
        resp = await api.post(path)
        assert resp.status_code == 200 and resp.json() is None
    names = [m["model_name"] for m in (await api.get("sd-models")).json()]
    assert sorted(names) == ["second", "tiny"]


async def test_unload_and_reload_checkpoint(api: httpx.AsyncClient, service: SdrestService) -> None:
    resp = await api.post("reload-checkpoint")
    assert resp.status_code == 200 and resp.json() == {}
    assert service.models.last_loaded == "tiny"
    assert (await api.post("unload-checkpoint")).json() == {}
    assert service.models.last_loaded is None


# -- permissions -------------------------------------------------------------------------------


async def test_permissions(api: httpx.AsyncClient) -> None:
    nobody, guest = {"x-test-role": "anonymous"}, {"x-test-role": "guest"}
    user = {"x-test-role": "user"}
    assert (await api.get("sd-models", headers=nobody)).status_code == 401
    assert (await api.get("scripts", headers=nobody)).status_code == 401
    assert (await api.get("sd-models", headers=guest)).status_code == 200
    assert (await api.get("memory", headers=user)).status_code == 200
    assert (await api.post("refresh-checkpoints", headers=user)).status_code == 403
    assert (await api.post("unload-checkpoint", headers=user)).status_code == 403
    assert (await api.post("reload-checkpoint", headers=guest)).status_code == 401
    assert (await api.post("png-info", headers=nobody, json={"image": ""})).status_code == 401
    body = {"image": _png_b64(_pattern()), "upscaler_1": "x2"}
    assert (await api.post("extra-single-image", headers=nobody, json=body)).status_code == 401


async def test_extras_job_is_owned_by_the_caller(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    body = {"image": _png_b64(_pattern()), "upscaler_1": "x2"}
    resp = await api.post("extra-single-image", headers={"x-test-role": "user"}, json=body)
    assert resp.status_code == 200
    [job] = await service.list_jobs()
    assert job.owner == "alice"


# -- png-info ----------------------------------------------------------------------------------

INFOTEXT = "a lovely cat\nNegative prompt: dog\nSteps: 4, Sampler: euler, Seed: 42, Size: 16x12"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
async def test_png_info_reads_the_infotext(api: httpx.AsyncClient, fmt: str) -> None:
    data = encode_image(_pattern(), fmt, quality=90, infotext=INFOTEXT)
    payload = f"data:image/{fmt};base64," + base64.b64encode(data).decode()
    resp = await api.post("png-info", json={"image": payload})
    assert resp.status_code == 200
    body = resp.json()
    assert body["info"] == INFOTEXT
    assert body["parameters"]["Prompt"] == "a lovely cat"
    assert body["parameters"]["Negative prompt"] == "dog"
    assert body["parameters"]["Seed"] == "42" and body["parameters"]["Size-1"] == "16"
    assert "parameters" not in body["items"]


async def test_png_info_of_an_image_without_infotext(api: httpx.AsyncClient) -> None:
    body = (await api.post("png-info", json={"image": _png_b64(_pattern())})).json()
    assert body == {
        "info": "",
        "items": {},
        "parameters": {"Prompt": "", "Negative prompt": ""},
    }


@pytest.mark.parametrize(
    "content",
    [
        b'{"image": "not base64 !!"}',
        b'{"image": ""}',
        b'{"image": "aGVsbG8gd29ybGQ="}',  # base64 of text, not an image
        b'{"image": "data:text/plain;base64,aGVsbG8="}',
        b'{"image": 42}',
        b"{}",
        b"{nope",
        b"",
    ],
)
async def test_png_info_bad_input_is_a_400(api: httpx.AsyncClient, content: bytes) -> None:
    resp = await api.post("png-info", content=content)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_request"


# -- extras ------------------------------------------------------------------------------------


async def test_extra_single_image_runs_an_upscale_job(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    source = _pattern()
    body = {"image": _png_b64(source, INFOTEXT), "upscaler_1": "X2", "upscaling_resize": 2}
    resp = await api.post("extra-single-image", json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: x2</p>"
    image = _decode(out["image"])
    assert (
        image.convert("RGB").tobytes()
        == source.resize((32, 24), Image.Resampling.NEAREST).tobytes()
    )
    assert image.info["parameters"] == INFOTEXT  # the input's infotext is kept
    assert image.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: x2"
    [job] = await service.list_jobs()
    assert (job.kind, job.family, job.status, job.model) == ("upscale", "sdapi", "completed", "x2")


async def test_extras_resizes_the_esrgan_result_to_the_exact_size(
    api: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    by = {"image": _png_b64(_pattern()), "upscaler_1": "x2", "upscaling_resize": 3}
    assert _decode((await api.post("extra-single-image", json=by)).json()["image"]).size == (48, 36)
    to = {
        "image": _png_b64(_pattern()),
        "upscaler_1": "x2",
        "resize_mode": 1,
        "upscaling_resize_w": 40,
        "upscaling_resize_h": 20,
    }
    assert _decode((await api.post("extra-single-image", json=to)).json()["image"]).size == (40, 20)


@pytest.mark.parametrize(
    ("upscaler", "size"), [("None", (16, 12)), ("Lanczos", (32, 24)), ("nearest", (32, 24))]
)
async def test_builtin_upscalers_run_without_a_job(
    api: httpx.AsyncClient, service: SdrestService, upscaler: str, size: tuple[int, int]
) -> None:
    source = _pattern()
    body = {"image": _png_b64(source), "upscaler_1": upscaler, "upscaling_resize": 2}
    image = _decode((await api.post("extra-single-image", json=body)).json()["image"])
    assert image.size == size
    if upscaler == "None":  # A1111: no upscaler, the image comes back as it was
        assert image.convert("RGB").tobytes() == source.tobytes()
    assert await service.list_jobs() == []


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"upscaler_1": "R-ESRGAN 4x+"}, 404, "upscaler_1"),
        ({"upscaler_1": "../x2"}, 404, "upscaler_1"),
        ({"upscaler_1": "broken-esrgan"}, 400, "upscaler_1"),
        ({"upscaler_1": "x2", "upscaling_resize": 8, "image": "BIG"}, 400, "upscaling_resize"),
        ({"upscaler_1": "x2", "image": "!!notbase64!!"}, 400, "image"),
        ({"upscaler_1": "x2", "image": "aGVsbG8="}, 400, "image"),
        ({"upscaler_1": "x2", "gfpgan_visibility": 1}, 400, "gfpgan_visibility"),
        (
            {"upscaler_1": "x2", "upscaler_2": "x2", "extras_upscaler_2_visibility": 1},
            400,
            "upscaler_2",
        ),
        ({"upscaler_1": "x2", "upscaling_resize": "two"}, 400, "upscaling_resize"),
        ({"upscaler_1": 3}, 400, "upscaler_1"),
    ],
)
async def test_extras_bad_input(
    api: httpx.AsyncClient,
    service: SdrestService,
    fields: dict[str, Any],
    status: int,
    field: str,
) -> None:
    body: dict[str, Any] = {"image": _png_b64(_pattern())}
    body.update(fields)
    if body["image"] == "BIG":
        body["image"] = _png_b64(Image.new("RGB", (600, 600)))  # 8x = 4800 > max_size 4096
    resp = await api.post("extra-single-image", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["field"] == field
    assert await service.list_jobs() == []  # refused before anything was queued


async def test_extras_engine_failure_is_reported_and_the_server_goes_on(
    api: httpx.AsyncClient, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(plan: object, on_progress: object) -> Image.Image:
        raise EngineError("native upscaler exploded")

    monkeypatch.setattr(fake_engine, "upscale", fail)
    body = {"image": _png_b64(_pattern()), "upscaler_1": "x2"}
    resp = await api.post("extra-single-image", json=body)
    assert resp.status_code == 500
    assert resp.json()["error"] == "generation_failed"
    assert "native upscaler exploded" in resp.json()["detail"]
    monkeypatch.undo()
    assert (await api.post("extra-single-image", json=body)).status_code == 200


async def test_extra_batch_images(api: httpx.AsyncClient, service: SdrestService) -> None:
    body = {
        "imageList": [
            {"data": _png_b64(_pattern()), "name": "a"},
            {"data": _png_b64(_pattern(8, 8)), "name": "b"},
        ],
        "upscaler_1": "x2",
        "upscaling_resize": 2,
    }
    resp = await api.post("extra-batch-images", json=body)
    assert resp.status_code == 200, resp.text
    sizes = [_decode(b).size for b in resp.json()["images"]]
    assert sizes == [(32, 24), (16, 16)]
    assert "Postprocess upscaler: x2" in resp.json()["html_info"]
    jobs = await service.list_jobs()
    assert len(jobs) == 2 and all(j.family == "sdapi" for j in jobs)


@pytest.mark.parametrize(
    ("image_list", "field"),
    [
        ([], "imageList"),
        ([{"data": "@@@"}], "imageList[0].data"),
        ([{"name": "no data"}], "imageList[0]"),  # msgspec: missing `data` in imageList[0]
    ],
)
async def test_extra_batch_bad_input(
    api: httpx.AsyncClient, image_list: list[dict[str, str]], field: str
) -> None:
    body = {"imageList": image_list, "upscaler_1": "Lanczos"}
    resp = await api.post("extra-batch-images", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == field


async def test_extra_batch_too_many_images(api: httpx.AsyncClient) -> None:
    tiny = _png_b64(Image.new("RGB", (2, 2)))
    body = {"imageList": [{"data": tiny}] * 65, "upscaler_1": "None"}
    resp = await api.post("extra-batch-images", json=body)
    assert resp.status_code == 400 and resp.json()["field"] == "imageList"


def _noise_png_b64(side: int) -> str:
    """A PNG that does not compress: side*side*3 bytes and more."""
    return _png_b64(Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)))


async def test_oversize_images_are_refused(api: httpx.AsyncClient) -> None:
    big = _noise_png_b64(400)  # ~480 KB > max_image_mb 0.25
    resp = await api.post("png-info", json={"image": big})
    assert resp.status_code == 400 and "larger than" in resp.json()["detail"]
    resp = await api.post("extra-single-image", json={"image": big, "upscaler_1": "Lanczos"})
    assert resp.status_code == 400 and resp.json()["field"] == "image"


async def test_client_disconnect_stops_the_extras_job(
    service: SdrestService, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(plan: UpscalePlan, on_progress: object) -> Image.Image:
        started.set()
        await release.wait()
        return plan.image

    monkeypatch.setattr(fake_engine, "upscale", slow)
    body = json.dumps({"image": _png_b64(_pattern()), "upscaler_1": "x2"}).encode()
    incoming: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    gone = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/sdapi/v1/extra-single-image",
        "raw_path": b"/sdapi/v1/extra-single-image",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "http_version": "1.1",
    }
    app = _test_app(service)

    async def call() -> None:
        await app(scope, receive, send)

    task = asyncio.create_task(call())
    await asyncio.wait_for(started.wait(), 10)
    gone.set()  # the client hangs up while its upscale runs
    await asyncio.wait_for(fake_engine.aborted.wait(), 10)  # the server stopped the job
    release.set()
    await asyncio.wait_for(task, 10)
    [job] = await service.list_jobs()
    assert job.status == "cancelled" and job.error is not None
    assert job.error.code == "interrupted"
    assert sent[0]["status"] == 499


async def test_the_family_app_renders_these_errors_in_its_shape(client: httpx.AsyncClient) -> None:
    # Through create_app: the /sdapi/v1 sub-app mounts INFO_ROUTES with its own renderer.
    body = {"image": _png_b64(_pattern()), "upscaler_1": "R-ESRGAN 4x+"}
    resp = await client.post("/sdapi/v1/extra-single-image", json=body)
    assert resp.status_code == 404
    assert resp.json()["field"] == "upscaler_1" and "upscalers" in resp.json()["detail"]
    resp = await client.post("/sdapi/v1/png-info", content=b"{oops")
    assert resp.status_code == 400
    assert (await client.get("/sdapi/v1/upscalers")).json()[-1]["name"] == "x2"


async def test_a1111_liveness_probe(client: httpx.AsyncClient) -> None:
    resp = await client.get("/internal/ping")
    assert resp.status_code == 200 and resp.json() == {}


async def test_loras_show_their_training_metadata(
    client: httpx.AsyncClient, models_dir: Path
) -> None:
    write_safetensors_header(
        models_dir / "lora" / "trained.safetensors",
        [
            "model.diffusion_model.img_in.lora_down.weight",
            "model.diffusion_model.img_in.lora_up.weight",
        ],
        metadata={"ss_output_name": "trained", "ss_tag_frequency": '{"d": {"cat": 2}}'},
    )
    assert (await client.post("/sdapi/v1/refresh-loras")).status_code == 200
    listed = {item["name"]: item for item in (await client.get("/sdapi/v1/loras")).json()}
    assert listed["trained"]["metadata"] == {
        "ss_output_name": "trained",
        "ss_tag_frequency": {"d": {"cat": 2}},
    }
    assert listed["style"]["metadata"] == {}
