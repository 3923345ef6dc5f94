"""/sdapi/v1 (A1111) over HTTP with the fake engine: shapes, errors, seeds, progress, options."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.types import ASGIApp, Receive, Scope, Send

from sdrest.app import create_app
from sdrest.auth.principal import SCOPE_KEY, Principal
from sdrest.service import SdrestService
from sdrest.settings import load_settings
from tests.fakes import FakeEngine

A1111_ERROR_KEYS = {"error", "detail", "body", "errors", "code"}


def png_b64(size: tuple[int, int], color: Any = (0, 0, 255), mode: str = "RGB") -> str:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def txt2img(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    payload = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, **body}
    return await client.post("/sdapi/v1/txt2img", json=payload)


async def test_txt2img_images_info_and_consecutive_seeds(
    client: httpx.AsyncClient, service: SdrestService
) -> None:
    resp = await txt2img(client, seed=20, batch_size=2, n_iter=2, sampler_name="Euler a")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"images", "parameters", "info"}
    assert isinstance(body["info"], str)
    info = json.loads(body["info"])
    assert info["all_seeds"] == [20, 21, 22, 23] and info["seed"] == 20
    assert info["sampler_name"] == "Euler a" and info["sd_model_name"] == "tiny"
    assert (info["batch_size"], info["n_iter"]) == (2, 2)
    images = [decode(b) for b in body["images"]]
    assert len(images) == 4 and images[0].format == "PNG"
    reds = [im.convert("RGB").getpixel((0, 0)) for im in images]
    assert [red[0] for red in reds if isinstance(red, tuple)] == [20, 21, 22, 23]  # seeds painted
    assert "Seed: 21" in images[1].info["parameters"]  # each PNG carries the A1111 infotext
    assert info["infotexts"][0] == images[0].info["parameters"]
    assert body["parameters"]["n_iter"] == 2 and body["parameters"]["prompt"] == "a cat"
    job = await service.get(info["job_id"])
    assert job.family == "sdapi" and job.status == "completed"


async def test_random_seed_is_resolved(client: httpx.AsyncClient) -> None:
    info = json.loads((await txt2img(client, seed=-1)).json()["info"])
    assert info["seed"] >= 0 and info["all_seeds"] == [info["seed"]]


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient) -> None:
    resp = await txt2img(
        client,
        alwayson_scripts={},
        script_args=[1, "x"],
        script_name=None,
        styles=["a"],
        restore_faces=False,
        tiling=False,
        do_not_save_grid=True,
        override_settings_restore_afterwards=True,
        refiner_checkpoint="x",
        s_churn=0.5,
        eta=0.3,
        comments={"a": 1},
        subseed=5,
        subseed_strength=0.5,
    )
    assert resp.status_code == 200, resp.text
    assert json.loads(resp.json()["info"])["subseed"] == 5


async def test_send_images_false(client: httpx.AsyncClient) -> None:
    resp = await txt2img(client, send_images=False, save_images=True)
    assert resp.status_code == 200 and resp.json()["images"] == []


async def test_samples_format_override(client: httpx.AsyncClient) -> None:
    resp = await txt2img(client, override_settings={"samples_format": "jpg"})
    assert decode(resp.json()["images"][0]).format == "JPEG"


async def test_checkpoint_override(client: httpx.AsyncClient, service: SdrestService) -> None:
    for title in ("tiny", "tiny.safetensors", "TINY.safetensors [0123abcd]", "checkpoints/tiny"):
        service.registry.hashes.sha256_of = lambda item: None  # type: ignore[method-assign]
        resp = await txt2img(client, override_settings={"sd_model_checkpoint": title})
        assert resp.status_code == 200, (title, resp.text)
        assert json.loads(resp.json()["info"])["sd_model_name"] == "tiny"


async def test_checkpoint_hash_must_match_when_known(
    client: httpx.AsyncClient, service: SdrestService
) -> None:
    entry = service.registry.get("tiny")
    sha = await asyncio.to_thread(service.registry.hashes.compute, entry.path)
    for by_hash in (sha[:10], f"[{sha[:10]}]", sha):
        ok = await txt2img(client, override_settings={"sd_model_checkpoint": by_hash})
        assert ok.status_code == 200, ok.text  # the hash alone names the file
    wrong = await txt2img(client, override_settings={"sd_model_checkpoint": f"x [{sha[:10]}]"})
    assert wrong.status_code == 404
    good = await txt2img(client, override_settings={"sd_model_checkpoint": f"tiny [{sha[:10]}]"})
    assert good.status_code == 200
    bad = await txt2img(client, override_settings={"sd_model_checkpoint": "tiny [ffffffffff]"})
    assert bad.status_code == 404 and "has hash" in bad.json()["detail"]
    options = (await client.get("/sdapi/v1/options")).json()
    assert options["sd_model_checkpoint"] == f"tiny.safetensors [{sha[:10]}]"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"steps": "lots"}, ["body", "steps"]),
        ({"width": None, "height": [64]}, ["body", "height"]),
        ({"batch_size": 0}, ["body", "batch_size"]),
        ({"override_settings": {"sd_model_checkpoint": 5}},
         ["body", "override_settings", "sd_model_checkpoint"]),
        ({"lora": {"path": "x"}}, ["body", "lora"]),
    ],
)  # fmt: skip
async def test_wrong_types_are_422_detail_lists(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[Any]
) -> None:
    resp = await client.post("/sdapi/v1/txt2img", json=body)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["msg"] and detail[0]["type"]


@pytest.mark.parametrize("raw", [b"{nope", b"", b"[]", b'"text"'])
async def test_malformed_json_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    resp = await client.post(
        "/sdapi/v1/img2img", content=raw, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422 and "detail" in resp.json()


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"sampler_name": "DPM++ SDE"}, 400, "no equivalent"),
        ({"sampler_name": "Nope"}, 400, "Euler a"),
        ({"scheduler": "Beta"}, 400, "scheduler 'Beta'"),
        ({"enable_hr": True, "hr_resize_x": 100000}, 400, "hires fix size"),
        ({"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}, 404, "R-ESRGAN"),
        ({"override_settings": {"sd_model_checkpoint": "missing [00000000]"}}, 404, "tiny"),
        ({"width": 100000}, 400, "width"),
        ({"batch_size": 8, "n_iter": 8}, 400, "batch_count"),  # 64 > --max-batch 50
        ({"lora": [{"path": "../../etc/passwd"}]}, 400, "lora[0].path"),
        ({"lora": [{"path": "nope"}]}, 404, "unknown LoRA"),
        ({"override_settings": {"sd_model_checkpoint": "../../etc/passwd"}}, 404, "unknown"),
        ({"override_settings": {"sd_model_checkpoint": "style"}}, 404, "checkpoint"),
        ({"extra_images": ["http://example.com/a.png"]}, 400, "--allow-url-images"),
        ({"prompt": "<sd_cpp_extra_args>{oops</sd_cpp_extra_args>"}, 400, "sd_cpp_extra_args"),
    ],
)
async def test_errors_in_a1111_shape(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, needle: str
) -> None:
    resp = await txt2img(client, **body)
    assert resp.status_code == status, resp.text
    payload = resp.json()
    assert set(payload) - {"field"} == A1111_ERROR_KEYS
    assert needle in payload["detail"]
    assert payload["errors"] == f"{status}: {payload['detail']}"


async def test_unknown_route_and_method_in_family_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/sdapi/v1/nope")
    assert missing.status_code == 404 and set(missing.json()) == A1111_ERROR_KEYS
    wrong = await client.get("/sdapi/v1/txt2img")
    assert wrong.status_code == 405 and set(wrong.json()) == A1111_ERROR_KEYS


async def test_img2img_resizes_and_processes_the_mask(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    resp = await client.post(
        "/sdapi/v1/img2img",
        json={
            "prompt": "x",
            "init_images": ["data:image/png;base64," + png_b64((32, 48))],
            "mask": png_b64((32, 48), 255, "L"),
            "inpainting_mask_invert": 1,
            "inpaint_full_res": False,  # whole picture: the image is resized to the request
            "mask_blur": 0,
            "denoising_strength": 0.3,
            "resize_mode": 1,
            "width": 64,
            "height": 64,
            "steps": 1,
            "include_init_images": False,
        },
    )
    assert resp.status_code == 200, resp.text
    plan = fake_engine.calls[-1]
    assert plan.init_image is not None and plan.init_image.size == (64, 64)
    assert plan.mask_image is not None and plan.mask_image.getextrema() == (0, 0)
    assert plan.request.strength == 0.3
    info = json.loads(resp.json()["info"])
    assert info["denoising_strength"] == 0.3
    assert resp.json()["parameters"]["init_images"] is None  # not echoed back


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "init_images"),
        ({"init_images": ["%%%"]}, "init_images"),
        ({"init_images": ["https://example.com/x.png"]}, "URL images are disabled"),
        ({"init_images": [png_b64((8, 8))], "mask": "AAAA"}, "mask"),
    ],
)
async def test_img2img_bad_images(
    client: httpx.AsyncClient, body: dict[str, Any], needle: str
) -> None:
    resp = await client.post("/sdapi/v1/img2img", json={"width": 64, "height": 64, **body})
    assert resp.status_code == 400, resp.text
    assert needle in resp.json()["detail"]


async def _hold(fake_engine: FakeEngine) -> asyncio.Event:
    fake_engine.hold = asyncio.Event()
    fake_engine.started.clear()
    return fake_engine.hold


async def test_progress_and_interrupt(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    idle = (await client.get("/sdapi/v1/progress")).json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    hold = await _hold(fake_engine)
    task = asyncio.create_task(txt2img(client, steps=4))
    await asyncio.wait_for(fake_engine.holding.wait(), 5)
    running = (await client.get("/sdapi/v1/progress")).json()
    assert running["progress"] == 1.0 and running["state"]["sampling_step"] == 4
    assert running["state"]["job"].startswith("job_") and running["state"]["job_count"] == 1
    assert running["textinfo"] == "Sampling step 4/4"
    preview = Image.open(io.BytesIO(base64.b64decode(running["current_image"])))
    assert preview.format == "PNG" and preview.getpixel((0, 0)) == (0, 4, 0)  # step 4's preview
    skipped = (await client.get("/sdapi/v1/progress?skip_current_image=true")).json()
    assert skipped["current_image"] is None
    stop = await client.post("/sdapi/v1/interrupt")
    assert stop.status_code == 200 and stop.json() == {}
    flagged = (await client.get("/sdapi/v1/progress")).json()
    assert flagged["state"]["interrupted"] is True
    hold.set()
    resp = await asyncio.wait_for(task, 5)
    assert resp.status_code == 200
    assert resp.json()["images"] == [] and json.loads(resp.json()["info"])["interrupted"] is True


async def test_progress_shows_other_families_jobs(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    hold = await _hold(fake_engine)
    created = await client.post("/sdcpp/v1/img_gen", json={"prompt": "x", "width": 64,
                                                         "height": 64})  # fmt: skip
    await asyncio.wait_for(fake_engine.holding.wait(), 5)
    progress = (await client.get("/sdapi/v1/progress")).json()
    assert progress["state"]["job"] == created.json()["id"]
    assert (await client.post("/sdapi/v1/skip")).status_code == 200  # skip stops it too
    hold.set()
    for _ in range(200):
        job = (await client.get(f"/sdcpp/v1/jobs/{created.json()['id']}")).json()
        if job["status"] != "generating":
            break
        await asyncio.sleep(0.01)
    assert job["status"] == "cancelled" and job["error"]["code"] == "interrupted"


async def test_engine_failure_is_a_500_in_family_shape(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.fail_with = "out of memory"
    resp = await txt2img(client)
    assert resp.status_code == 500
    assert resp.json()["detail"] == "out of memory" and resp.json()["code"] == "generation_failed"


async def test_samplers_and_schedulers(client: httpx.AsyncClient) -> None:
    samplers = (await client.get("/sdapi/v1/samplers")).json()
    names = [s["name"] for s in samplers]
    assert "Euler a" in names and "DPM++ 2M" in names and "LMS" not in names
    assert all(set(s) == {"name", "aliases", "options"} for s in samplers)
    schedulers = (await client.get("/sdapi/v1/schedulers")).json()
    assert {"automatic", "karras", "sgm_uniform"} <= {s["name"] for s in schedulers}
    assert all(
        set(s) == {"name", "label", "aliases", "default_rho", "need_inner_model"}
        for s in schedulers
    )


async def test_options_get_and_set(client: httpx.AsyncClient, service: SdrestService) -> None:
    options = (await client.get("/sdapi/v1/options")).json()
    assert options["sd_model_checkpoint"].startswith("tiny.safetensors")
    assert options["samples_format"] == "png" and options["CLIP_stop_at_last_layers"] == 1
    resp = await client.post(
        "/sdapi/v1/options",
        json={"sd_model_checkpoint": "tiny", "samples_format": "webp", "my_option": [1]},
    )
    assert resp.status_code == 200 and resp.json() is None
    assert service.models.default() == "tiny"
    options = (await client.get("/sdapi/v1/options")).json()
    assert options["samples_format"] == "webp" and options["my_option"] == [1]
    image = (await txt2img(client)).json()["images"][0]
    assert decode(image).format == "WEBP"  # stored options apply to later generations


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"sd_model_checkpoint": "nope.safetensors"}, 404),
        ({"sd_model_checkpoint": "style"}, 404),  # a LoRA is not a checkpoint
        ({"CLIP_stop_at_last_layers": "two"}, 422),
        ({"CLIP_stop_at_last_layers": 40}, 422),
        ({"samples_format": "tiff"}, 400),
        ([1, 2], 422),
    ],
)
async def test_options_bad_values(
    client: httpx.AsyncClient, service: SdrestService, body: Any, status: int
) -> None:
    resp = await client.post("/sdapi/v1/options", json=body)
    assert resp.status_code == status, resp.text
    assert service.models.default() == "tiny"
    assert (await client.get("/sdapi/v1/options")).json()["samples_format"] == "png"


async def test_cmd_flags(client: httpx.AsyncClient, service: SdrestService) -> None:
    flags = (await client.get("/sdapi/v1/cmd-flags")).json()
    assert flags["api"] is True and flags["models_dir"] == service.settings.models_dir
    assert "jwt_secret" not in flags


# -- auth and settings variants ------------------------------------------------------------------


class _As:
    """Puts a fixed principal in the scope, as the auth middleware would."""

    def __init__(self, app: ASGIApp, principal: Principal) -> None:
        self.app, self.principal = app, principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_KEY] = self.principal
        await self.app(scope, receive, send)


def _client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_permissions(service: SdrestService) -> None:
    user = Principal(username="bob", role="user", authenticated=True)
    anonymous = Principal(username="", role="anonymous")
    async with _client(_As(create_app(service), user)) as as_user:
        resp = await txt2img(as_user)
        assert resp.status_code == 200
        job = await service.get(json.loads(resp.json()["info"])["job_id"])
        assert job.owner == "bob"
        denied = await as_user.post("/sdapi/v1/options", json={"samples_format": "jpg"})
        assert denied.status_code == 403 and set(denied.json()) - {"field"} == A1111_ERROR_KEYS
    async with _client(_As(create_app(service), anonymous)) as as_nobody:
        refused = await txt2img(as_nobody)
        assert refused.status_code == 401 and refused.json()["code"] == "auth_required"


@pytest.fixture
async def lora_tags_client(tmp_path: Path, models_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        {
            "models_dir": str(models_dir),
            "data_dir": str(tmp_path / "data2"),
            "a1111_prompt_loras": True,
        },
        env={},
    )
    engine = FakeEngine()
    async with (
        SdrestService(settings, engine=engine) as service,
        _client(create_app(service)) as http,
    ):
        http.engine = engine  # type: ignore[attr-defined]
        yield http


async def test_prompt_lora_tags_when_enabled(lora_tags_client: httpx.AsyncClient) -> None:
    resp = await txt2img(lora_tags_client, prompt="a cat <lora:style:0.6>")
    assert resp.status_code == 200, resp.text
    plan = lora_tags_client.engine.calls[-1]  # type: ignore[attr-defined]
    assert plan.request.prompt == "a cat"
    assert [(Path(lora.path).stem, lora.multiplier) for lora in plan.loras] == [("style", 0.6)]
    missing = await txt2img(lora_tags_client, prompt="<lora:nope:1>")
    assert missing.status_code == 404 and "unknown LoRA 'nope'" in missing.json()["detail"]


async def test_prompt_lora_tags_are_text_by_default(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    resp = await txt2img(client, prompt="a cat <lora:style:0.6>")
    assert resp.status_code == 200
    assert fake_engine.calls[-1].request.prompt == "a cat <lora:style:0.6>"
    assert fake_engine.calls[-1].loras == ()


async def test_url_images_when_allowed(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[tuple[str, int]] = []
    image = base64.b64decode(png_b64((64, 64), (9, 9, 9)))

    async def fake_fetch(url: str, settings: Any, *, max_bytes: int) -> bytes:
        assert settings.allow_url_images is True
        fetched.append((url, max_bytes))
        return image

    monkeypatch.setattr("sdrest.net.fetch.fetch_image_bytes", fake_fetch)
    settings = load_settings(
        {
            "models_dir": str(models_dir),
            "data_dir": str(tmp_path / "data3"),
            "allow_url_images": True,
            "fetch_per_minute": 3,
        },
        env={},
    )
    engine = FakeEngine()
    async with (
        SdrestService(settings, engine=engine) as service,
        _client(create_app(service)) as http,
    ):
        resp = await http.post(
            "/sdapi/v1/img2img",
            json={"init_images": ["https://example.com/a.png"], "width": 64, "height": 64,
                  "extra_images": ["HTTP://example.com/b.png"], "steps": 1},
        )  # fmt: skip
        # Two more URLs would pass --fetch-per-minute 3: A1111's error shape, nothing fetched.
        limited = await http.post(
            "/sdapi/v1/img2img",
            json={"init_images": ["https://example.com/c.png"], "mask": "https://example.com/d.png"},
        )
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    error = limited.json()
    assert error["code"] == "rate_limited" and "--fetch-per-minute" in error["detail"]
    assert resp.status_code == 200, resp.text
    assert [url for url, _ in fetched] == ["HTTP://example.com/b.png", "https://example.com/a.png"]
    assert fetched[0][1] == settings.limits.max_image_bytes
    plan = engine.calls[-1]
    assert plan.init_image is not None and plan.init_image.getpixel((0, 0)) == (9, 9, 9)
    assert len(plan.ref_images) == 1


async def test_error_bodies_are_pinned_byte_for_byte(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    # Today's A1111 error bodies, keys in wire order (the typed renderer must not change them).
    bad = await txt2img(client, sampler_name="Nope")
    assert bad.status_code == 400
    assert list(bad.json()) == ["error", "detail", "body", "errors", "code", "field"]
    assert bad.json()["error"] == "SamplerNameError" and bad.json()["body"] == ""
    assert bad.json()["code"] == "unknown_sampler" and bad.json()["field"] == "sampler_name"
    missing = await client.get("/sdapi/v1/nope")
    assert missing.content == (
        b'{"error":"HTTPException","detail":"Not Found","body":"","errors":"404: Not Found",'
        b'"code":"not_found"}'
    )
    invalid = await client.post("/sdapi/v1/txt2img", json={"steps": "lots"})
    assert invalid.content == (
        b'{"detail":[{"loc":["body","steps"],"msg":"Expected `int | null`, got `str`",'
        b'"type":"type_error"}]}'
    )
    options = await client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": "two"})
    assert options.json() == {
        "detail": [
            {
                "loc": ["body", "CLIP_stop_at_last_layers"],
                "msg": "Expected `int | null`, got `str` - at `$.CLIP_stop_at_last_layers`",
                "type": "type_error",
            }
        ]
    }
    fake_engine.fail_with = "out of memory"
    failed = await txt2img(client)
    assert failed.status_code == 500
    assert failed.json() == {
        "error": "JobFailedError",
        "detail": "out of memory",
        "body": "",
        "errors": "500: out of memory",
        "code": "generation_failed",
    }


async def test_answers_keep_their_wire_order(client: httpx.AsyncClient) -> None:
    body = (await txt2img(client, seed=3)).json()
    assert list(body) == ["images", "parameters", "info"]
    info = json.loads(body["info"])
    assert list(info)[:4] == ["prompt", "all_prompts", "negative_prompt", "all_negative_prompts"]
    assert list(info)[-4:] == ["is_using_inpainting_conditioning", "version", "job_id",
                               "interrupted"]  # fmt: skip
    assert len(info) == 36 and info["extra_generation_params"] == {} and info["styles"] == []
    progress = (await client.get("/sdapi/v1/progress")).json()
    assert list(progress) == ["progress", "eta_relative", "state", "current_image", "textinfo"]
    assert list(progress["state"]) == [
        "skipped", "interrupted", "stopping_generation", "job", "job_count", "job_timestamp",
        "job_no", "sampling_step", "sampling_steps",
    ]  # fmt: skip
    memory = (await client.get("/sdapi/v1/memory")).json()
    assert list(memory) == ["ram", "cuda"] and list(memory["ram"]) == ["free", "used", "total"]
    upscalers = (await client.get("/sdapi/v1/upscalers")).json()
    assert list(upscalers[0]) == ["name", "model_name", "model_path", "model_url", "scale"]
    models = (await client.get("/sdapi/v1/sd-models")).json()
    assert list(models[0]) == ["title", "model_name", "hash", "sha256", "filename", "config"]
    embeddings = (await client.get("/sdapi/v1/embeddings")).json()
    assert list(embeddings) == ["loaded", "skipped"]
