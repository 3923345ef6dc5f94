"""What a stable-diffusion.cpp-rest user sends, as its documents send it (issue 12), and the
per-request model options other families use (A1111 ``tiling``, /sdcpp/v1 ``model_options``)."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from sdrest.cli import _parse, main
from sdrest.engine.base import ModelSpec
from sdrest.service import SdrestService
from sdrest.settings import load_settings
from tests.api.support import ADMIN, ALICE, assert_error, finished, text2img
from tests.fakes import FakeEngine, write_fake_checkpoint


async def test_v1_generate_waits_and_answers_the_readme_document(
    api: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    body = {
        "prompt": "a beautiful landscape", "negative_prompt": "blurry, low quality",
        "model": "tiny", "width": 64, "height": 64, "steps": 3, "cfg_scale": 7.5, "seed": 12345,
        "batch_size": 2, "sampler_hint": "x",
    }  # fmt: skip
    r = await api.post("/api/v1/generate", json=body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "completed" and result["generation_time"] >= 0
    assert result["warnings"] == ["unknown field `sampler_hint` ignored"]
    assert [image["seed"] for image in result["images"]] == [12345, 12346]
    parameters = result["images"][0]["parameters"]
    assert parameters == {
        "prompt": "a beautiful landscape", "negative_prompt": "blurry, low quality",
        "model": "tiny", "width": 64, "height": 64, "steps": 3, "cfg_scale": 7.5,
        "seed": 12345, "batch_size": 2,
    }  # fmt: skip
    png = base64.b64decode(result["images"][0]["data"])
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    assert fake_engine.calls[-1].request.batch_count == 2
    r = await api.get(f"/api/v1/generate/{result['job_id']}")
    assert r.json()["images"] == result["images"] and r.json()["status"] == "completed"
    # The same job is an ordinary /api job.
    r = await api.get(f"/api/queue/job/{result['job_id']}")
    assert r.json()["job"]["outputs"][0]["filename"] == "image_0.png"  # the spec's names
    r = await api.get("/api/v1/generate/job_1_ab")
    assert_error(r, 404, "JOB_NOT_FOUND")


async def test_v1_models_and_auth_names(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/models")
    assert "tiny" in {m["name"] for m in r.json()["models"]}
    r = await api.get("/api/v1/auth/profile")
    assert r.status_code == 200 and "role" in r.json()["user"]


async def test_old_output_names_keep_working(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    r = await api.post("/api/generate/text2img", json=text2img())
    job = await finished(service, r.json()["request_id"])
    folder = service.output_dir / job.id
    shutil.copy(folder / "image_0.png", folder / "0.png")  # as a job of an older version wrote
    r = await api.get(f"/api/queue/job/{job.id}/output/0.png")
    assert r.status_code == 200 and r.content == (folder / "image_0.png").read_bytes()


async def test_a1111_tiling_gets_its_own_context_and_says_so(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    body = {"prompt": "tiles", "width": 64, "height": 64, "steps": 2}
    r = await client.post("/sdapi/v1/txt2img", json=body)
    plain = fake_engine.calls[-1].model
    r = await client.post("/sdapi/v1/txt2img", json={**body, "tiling": True})
    assert r.status_code == 200, r.text
    tiled = fake_engine.calls[-1].model
    assert tiled.name == plain.name and tiled != plain
    assert tiled.options.circular_x and tiled.options.circular_y
    assert not plain.options.circular_x
    info = json.loads(r.json()["info"])
    assert "Tiling: True" in info["infotexts"][0]
    png = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert "Tiling: True" in png.info["parameters"]


async def test_sdcpp_model_options_and_unknown_fields(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    r = await client.post(
        "/sdcpp/v1/img_gen",
        json={
            "prompt": "x", "width": 64, "height": 64, "future_field": 1,
            "sample_params": {"sample_steps": 2, "future_knob": True},
            "model_options": {"circular_x": True, "clip_on_cpu": True},
        },
    )  # fmt: skip
    assert r.status_code == 202, r.text
    assert r.json()["warnings"] == [
        "unknown field `future_field` ignored",
        "unknown field `sample_params.future_knob` ignored",
    ]
    r = await client.get(f"/sdcpp/v1/jobs/{r.json()['id']}?wait=5")
    assert r.json()["status"] == "completed"
    options = fake_engine.calls[-1].model.options
    assert options.circular_x and not options.circular_y and options.clip_on_cpu
    r = await client.post(
        "/sdcpp/v1/img_gen", json={"prompt": "x", "model_options": {"vae": "/etc/passwd"}}
    )
    assert r.status_code == 400 and "outside the models folder" in r.json()["error"]


async def test_several_models_and_no_model_pick_a_default(
    client: httpx.AsyncClient, service: SdrestService, models_dir: Path, fake_engine: FakeEngine
) -> None:
    write_fake_checkpoint(models_dir / "checkpoints" / "aaa.safetensors")
    await service.models.refresh()
    await service.models.unload()  # the start-up preload loaded the one model there was
    # OpenAI clients send their own model names: the default model answers.
    r = await client.post("/v1/images/generations", json={"prompt": "x", "model": "dall-e-3"})
    assert r.status_code == 200, r.text
    assert fake_engine.calls[-1].model.name == "aaa"  # nothing loaded yet: the first by name
    r = await client.post("/sdcpp/v1/img_gen", json={"prompt": "x", "model": "tiny"})
    await service.wait(r.json()["id"], timeout=10)
    r = await client.get("/sdcpp/v1/capabilities")
    assert r.json()["model"]["name"] == "tiny"  # now the most recently loaded one
    r = await client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1})
    assert r.status_code == 200 and fake_engine.calls[-1].model.name == "tiny"


def test_the_readme_command_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, notes = _parse(
        ["--auth", "pam", "--models-dir", "/m", "--checkpoints", "checkpoints", "--verbose"]
    )
    assert args.command == "serve" and args.auth_mode == "pam" and args.log_level == "debug"
    assert args.checkpoints == "checkpoints" and notes == []
    args, _ = _parse(["serve", "--model-dir", "/m", "--auth-mode", "jwt"])
    assert (args.models_dir, args.auth_mode) == ("/m", "jwt")
    args, notes = _parse(["--enable-unix-auth"])
    assert args.auth_mode == "unix"
    assert notes == ["--enable-unix-auth is deprecated: use --auth unix"]
    # --config config.json (JSON as well as TOML)
    write_fake_checkpoint(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"models_dir": str(tmp_path / "models"), "port": 9000}))
    assert load_settings(config_file=config, env={}).port == 9000
    assert main(["models", "--config", str(config), "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["tiny"]
    config.write_text("[1, 2]")
    assert main(["models", "--config", str(config)]) == 2
    assert "JSON object" in capsys.readouterr().err


def test_ui_dir_serves_another_ui(tmp_path: Path, models_dir: Path) -> None:
    from starlette.testclient import TestClient

    from sdrest.app import create_app
    from tests.conftest import settings_in

    (tmp_path / "webui").mkdir()
    (tmp_path / "webui" / "index.html").write_text("<h1>the C++ server's UI</h1>")
    app = create_app(settings_in(tmp_path, models_dir, ui_dir=str(tmp_path / "webui")))
    with TestClient(app) as http:
        assert "C++ server" in http.get("/ui/").text


async def test_capabilities_hide_server_paths_from_non_admins(
    api: httpx.AsyncClient, models_dir: Path
) -> None:
    as_user = (await api.get("/sdcpp/v1/capabilities", headers=ALICE)).json()
    assert as_user["model"]["path"] == "checkpoints/tiny.safetensors"
    as_admin = (await api.get("/sdcpp/v1/capabilities", headers=ADMIN)).json()
    assert as_admin["model"]["path"] == str(models_dir / "checkpoints" / "tiny.safetensors")


class _RecordingEngine(FakeEngine):
    """The fake engine, recording the models it is asked to load."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []

    async def load(self, spec: ModelSpec) -> None:
        self.loads.append(spec.name)
        await super().load(spec)


async def test_batch_load_of_several_models_within_the_budget(
    tmp_path: Path, models_dir: Path
) -> None:
    from sdrest.app import create_app
    from tests.conftest import settings_in

    write_fake_checkpoint(models_dir / "checkpoints" / "second.safetensors")
    body = {"operation": "load", "models": ["tiny", "second"]}
    for budget, loads in ((0.0, False), (1.0, True)):  # the fake files are a few hundred bytes
        engine = _RecordingEngine()
        settings = settings_in(tmp_path, models_dir, memory_budget_mb=budget)
        async with SdrestService(settings, engine=engine) as service:
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                r = await http.post("/api/models/batch", json=body)
        if loads:
            assert r.status_code == 200 and r.json()["succeeded"] == 2, r.text
            assert engine.loads == ["tiny", "second"]
        else:
            error = assert_error(r, 400, "INVALID_PARAMETERS")
            assert "one model at a time" in error["message"] and error["field"] == "models"


async def test_convert_takes_the_readme_names_and_absolute_paths_inside(
    api: httpx.AsyncClient, models_dir: Path
) -> None:
    target = models_dir / "checkpoints" / "tiny.q4_k.gguf"
    body = {"model_name": "tiny", "quantization_type": "Q4_K_S", "output_path": str(target)}
    r = await api.post("/api/models/convert", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["quantization_type"] == "q4_k"
    assert r.json()["output_path"] == "checkpoints/tiny.q4_k.gguf"
    r = await api.post("/api/models/convert", json={**body, "output_path": "/tmp/x.gguf"})
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "output_path"
    r = await api.post("/api/models/convert", json={**body, "quantization_type": "Q7_X"})
    assert "q4_k" in assert_error(r, 400, "INVALID_PARAMETERS")["message"]


async def test_url_images_are_fetched_safely_and_limited_per_client(
    tmp_path: Path, models_dir: Path
) -> None:
    from sdrest.app import create_app
    from tests.conftest import settings_in

    settings = settings_in(tmp_path, models_dir, allow_url_images=True, fetch_per_minute=3)
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            local = "http://127.0.0.1:9/x.png"  # a private address: refused before connecting
            r = await http.post("/api/generate/img2img", json=text2img(init_image=local))
            error = assert_error(r, 400, "URL_NOT_ALLOWED")
            assert error["field"] == "init_image" and "loopback" in error["message"]
            r = await http.get("/api/image/download", params={"url": local})
            assert r.status_code == 400
            body = text2img(init_image=local, mask_image=local)  # 2 more: past 3 a minute
            r = await http.post("/api/generate/inpainting", json=body)
            error = assert_error(r, 429, "RATE_LIMITED")
            assert "--fetch-per-minute" in error["message"] and int(r.headers["retry-after"]) > 0


def test_the_fetch_limiter_slides_over_a_minute() -> None:
    from sdrest.net.rate import FetchRateLimiter, UrlFetchRateLimitedError

    now = [0.0]
    limiter = FetchRateLimiter(2, clock=lambda: now[0])
    limiter.check("a")
    limiter.check("b", 2)  # another address has its own window
    now[0] = 30.0
    limiter.check("a")
    with pytest.raises(UrlFetchRateLimitedError) as caught:
        limiter.check("a")
    assert caught.value.status == 429 and caught.value.retry_after == 30
    now[0] = 60.5  # the first fetch left the window
    limiter.check("a")
    FetchRateLimiter(0).check("a", 1000)  # 0 = no limit


async def test_esrgan_type_and_the_readme_text_folders(
    api: httpx.AsyncClient, service: SdrestService, models_dir: Path
) -> None:
    from tests.fakes import write_safetensors_header

    names = ["conv_first.weight", "conv_body.weight", "conv_up1.weight", "conv_last.weight"]
    write_safetensors_header(models_dir / "esrgan" / "x2.safetensors", names)
    (models_dir / "prompts").mkdir()
    (models_dir / "prompts" / "castle.txt").write_text("a castle on a hill, golden hour")
    (models_dir / "neg_prompts").mkdir()
    (models_dir / "neg_prompts" / "common.txt").write_text("blurry, low quality")
    (models_dir / "presets").mkdir()
    (models_dir / "presets" / "fast.json").write_text('{"steps": 4}')
    (models_dir / "presets" / "notes.md").write_text("not a preset file")
    await service.models.refresh()
    listing = (await api.get("/api/models?limit=0")).json()["models"]
    types = {m["name"]: m["type"] for m in listing}
    assert types["x2"] == "esrgan"
    assert [types[n] for n in ("castle", "common", "fast")] == ["prompts", "neg_prompts", "presets"]
    assert "notes" not in types
    r = await api.get("/api/models?type=upscaler")  # the old name still filters
    assert [m["name"] for m in r.json()["models"]] == ["x2"]
    r = await api.get("/api/models/castle?type=prompts")
    assert r.json()["model"]["content"] == "a castle on a hill, golden hour"
    r = await api.get("/api/models/types")
    assert {"esrgan", "presets", "prompts", "neg_prompts"} <= set(r.json()["types"])
    r = await api.get("/api/models/ghost?type=prompts")
    assert_error(r, 404, "MODEL_NOT_FOUND")


async def test_sizes_left_out_take_the_models_native_size(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    r = await api.post("/api/generate/text2img", json={"prompt": "x", "steps": 1})
    await finished(service, r.json()["request_id"])
    request = fake_engine.calls[-1].request
    assert (request.width, request.height) == (1024, 1024)  # the fake model is a Flux.2
    r = await api.get("/api/parameters")
    assert r.json()["parameters"]["width"]["default"] == 1024
    assert r.json()["parameters"]["batch_count"]["max"] == 50  # the spec's limit
