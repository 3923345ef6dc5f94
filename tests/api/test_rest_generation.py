"""/api/generate/* over HTTP with the fake engine: queued jobs, translation, refusals."""

from __future__ import annotations

from pathlib import Path

import httpx

from sdrest.app import create_app
from sdrest.service import SdrestService
from tests.api.support import (
    ALICE,
    ANONYMOUS,
    GUEST,
    assert_error,
    finished,
    png_b64,
    text2img,
)
from tests.conftest import settings_in
from tests.fakes import FakeEngine, write_fake_checkpoint


async def test_text2img_queues_a_job_owned_by_the_caller(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    response = await api.post(
        "/api/generate/text2img",
        json=text2img(
            cfg_scale=3.5, sampling_method="dpmpp2m", scheduler="Karras", seed="42", batch_count=2
        ),
        headers=ALICE,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["request_id"].startswith("job_") and body["job_id"] == body["request_id"]
    assert response.headers["x-request-id"].startswith("req_")
    job = await finished(service, body["request_id"])
    assert job.status == "completed" and job.owner == "alice" and job.family == "rest"
    plan = fake_engine.calls[-1]
    sample = plan.request.sample_params
    assert (sample.sample_method, sample.scheduler, sample.sample_steps) == ("dpm++2m", "karras", 2)
    assert sample.guidance.txt_cfg == 3.5
    assert plan.seed == 42 and plan.request.batch_count == 2
    assert job.result is not None and len(job.result.images) == 2


async def test_random_seed_and_model_by_file_name(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    response = await api.post(
        "/api/generate/text2img",
        json=text2img(seed="random", model_name="tiny.safetensors"),
    )
    assert response.status_code == 202, response.text
    job = await finished(service, response.json()["request_id"])
    assert job.model == "tiny" and job.request is not None and job.request.seed >= 0


async def test_img2img_and_inpainting_carry_their_images(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    response = await api.post(
        "/api/generate/img2img", json=text2img(init_image=png_b64(), strength=0.4)
    )
    assert response.status_code == 202, response.text
    await finished(service, response.json()["request_id"])
    plan = fake_engine.calls[-1]
    assert plan.init_image is not None and plan.mask_image is None
    assert plan.request.strength == 0.4
    response = await api.post(
        "/api/generate/inpainting",
        json=text2img(source_image=png_b64(), mask_image=png_b64(colour=(255, 255, 255))),
    )
    assert response.status_code == 202, response.text
    await finished(service, response.json()["request_id"])
    assert fake_engine.calls[-1].mask_image is not None


async def test_mode_requirements(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/generate/img2img", json=text2img())
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "init_image"
    r = await api.post("/api/generate/inpainting", json=text2img(init_image=png_b64()))
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "mask_image"
    r = await api.post("/api/generate/text2img", json=text2img(init_image=png_b64()))
    assert_error(r, 400, "INVALID_PARAMETERS")
    r = await api.post("/api/generate/text2img", json=text2img(prompt="  "))
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "prompt"


async def test_bad_values_name_the_field_as_sent(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/generate/text2img", json=text2img(steps=0))
    assert assert_error(r, 400, "VALIDATION_ERROR")["field"] == "steps"
    r = await api.post("/api/generate/text2img", json=text2img(steps=500))
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "steps"
    r = await api.post("/api/generate/text2img", json=text2img(width=8192))
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "width"
    r = await api.post("/api/generate/text2img", json=text2img(sampling_method="warp_drive"))
    error = assert_error(r, 400, "VALIDATION_ERROR")
    assert "warp_drive" in error["message"]
    r = await api.post("/api/generate/text2img", json=text2img(seed="lucky"))
    assert assert_error(r, 400, "VALIDATION_ERROR")["field"] == "seed"
    r = await api.post("/api/generate/text2img", json=text2img(width="wide"))
    assert assert_error(r, 400, "VALIDATION_ERROR")["field"] == "width"
    r = await api.post("/api/generate/text2img", json=text2img(stepz=3))
    assert r.status_code == 202 and r.json()["warnings"] == ["unknown field `stepz` ignored"]
    r = await api.post("/api/generate/img2img", json=text2img(init_image="not an image!"))
    assert_error(r, 400, "INVALID_PARAMETERS")


async def test_malformed_and_empty_bodies(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/generate/text2img", content=b"{nope")
    assert "malformed JSON" in assert_error(r, 400, "INVALID_PARAMETERS")["message"]
    r = await api.post("/api/generate/text2img", content=b"")
    assert_error(r, 400, "INVALID_PARAMETERS")
    r = await api.post("/api/generate/text2img", content=b"[1, 2]")
    assert_error(r, 400, "VALIDATION_ERROR")


async def test_unknown_model_is_model_not_found(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/generate/text2img", json=text2img(model_name="nope"))
    assert_error(r, 404, "MODEL_NOT_FOUND")
    r = await api.post("/api/generate/text2img", json=text2img(model_name="style"))
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "model_name"  # a LoRA


async def test_component_paths_stay_inside_the_models_folder(api: httpx.AsyncClient) -> None:
    for value in ("../../etc/passwd", "/etc/passwd", "vae/../../secret.safetensors"):
        r = await api.post("/api/generate/text2img", json=text2img(vae_path=value))
        assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "vae_path", value
    r = await api.post("/api/generate/text2img", json=text2img(vae_path="missing-vae"))
    assert_error(r, 404, "MODEL_NOT_FOUND")
    r = await api.post("/api/generate/text2img", json=text2img(lora_model_dir="/tmp"))
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "lora_model_dir"


async def test_paths_the_os_refuses_are_client_errors(api: httpx.AsyncClient) -> None:
    # Regression: a NUL byte in a folder field raised ValueError (found by schemathesis) and a
    # name longer than the OS allows raised ENAMETOOLONG; both were a 500.
    for field in ("lora_model_dir", "embedding_dir"):
        r = await api.post("/api/generate/text2img", json=text2img(**{field: "a\x00b"}))
        assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == field
    for field in ("vae_path", "taesd_path", "clip_l_path"):
        r = await api.post("/api/generate/text2img", json=text2img(**{field: "x" * 300}))
        assert_error(r, 404, "MODEL_NOT_FOUND")
    r = await api.post("/api/models/validate", json={"path": "x" * 1000})
    assert_error(r, 404, "MODEL_NOT_FOUND")


async def test_load_options_and_components_make_the_request_its_own_model_spec(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine, models_dir: Path
) -> None:
    write_fake_checkpoint(models_dir / "vae" / "ae.safetensors")
    await service.models.refresh()
    r = await api.post("/api/generate/text2img", json=text2img())
    base = (await finished(service, r.json()["request_id"])).model
    plain = fake_engine.calls[-1].model
    r = await api.post(
        "/api/generate/text2img",
        json=text2img(
            clip_on_cpu=True,
            vae_conv_direct=True,
            vae_path=str(models_dir / "vae" / "ae.safetensors"),  # absolute, inside the folder
            n_threads=4,
            lora_model_dir="lora",
        ),
    )
    assert r.status_code == 202, r.text
    assert any("n_threads" in w for w in r.json()["warnings"])
    assert (await finished(service, r.json()["request_id"])).model == base
    spec = fake_engine.calls[-1].model
    assert spec != plain and spec.name == plain.name
    assert spec.options.clip_on_cpu and spec.options.vae_conv_direct
    assert not plain.options.clip_on_cpu
    assert Path(spec.vae_path) == (models_dir / "vae" / "ae.safetensors").resolve()
    # Options equal to the model's own share its spec (and so its context).
    r = await api.post("/api/generate/text2img", json=text2img(clip_on_cpu=False))
    await finished(service, r.json()["request_id"])
    assert fake_engine.calls[-1].model == plain


async def test_the_spec_text2img_example_body_is_accepted(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine, models_dir: Path
) -> None:
    # rest-api.txt's text2img body, its placeholder values ("string") replaced by real names.
    write_fake_checkpoint(models_dir / "vae" / "ae.safetensors")
    write_fake_checkpoint(models_dir / "taesd" / "taesd.safetensors")
    write_fake_checkpoint(models_dir / "clip" / "clip_l.safetensors")
    write_fake_checkpoint(models_dir / "clip" / "clip_g.safetensors")
    await service.models.refresh()
    body = {
        "model_name": "tiny", "prompt": "a lovely cat", "negative_prompt": "blurry",
        "width": 64, "height": 64, "steps": 2, "cfg_scale": 7.0, "sampling_method": "euler",
        "scheduler": "karras", "seed": "random", "batch_count": 1, "clip_skip": 1,
        "n_threads": 4, "offload_params_to_cpu": False, "clip_on_cpu": False,
        "vae_on_cpu": False, "diffusion_flash_attn": False, "diffusion_conv_direct": False,
        "vae_conv_direct": False, "vae_path": "ae", "clip_l_path": "clip/clip_l.safetensors",
        "clip_g_path": "clip_g", "taesd_path": "taesd", "embedding_dir": "embeddings",
        "lora_model_dir": "lora",
    }  # fmt: skip
    r = await api.post("/api/generate/text2img", json=body)
    assert r.status_code == 202, r.text
    job = await finished(service, r.json()["request_id"])
    assert job.status == "completed"
    spec = fake_engine.calls[-1].model
    assert {Path(p).name for p in (spec.vae_path, spec.taesd_path, spec.clip_l_path)} == {
        "ae.safetensors", "taesd.safetensors", "clip_l.safetensors"
    }
    assert Path(spec.clip_g_path).name == "clip_g.safetensors"


async def test_lora_from_prompt_tags_and_the_lora_field(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine, models_dir: Path
) -> None:
    r = await api.post(
        "/api/generate/text2img",
        json=text2img(
            prompt="a lovely cat<lora:style:0.6>, sunny <lora:style>",
            lora=[{"path": "style.safetensors", "multiplier": 0.25}],
            lora_model_dir=str(models_dir / "lora"),
        ),
    )
    assert r.status_code == 202, r.text
    assert "warnings" not in r.json()
    await finished(service, r.json()["request_id"])
    plan = fake_engine.calls[-1]
    assert plan.request.prompt == "a lovely cat, sunny"  # the tags are not text for the model
    lora_file = str(models_dir / "lora" / "style.safetensors")
    assert [(x.path, x.multiplier) for x in plan.loras] == [
        (lora_file, 0.25), (lora_file, 0.6), (lora_file, 1.0)
    ]  # fmt: skip
    r = await api.post("/api/generate/text2img", json=text2img(prompt="x <lora:nope:1>"))
    assert_error(r, 404, "MODEL_NOT_FOUND")
    r = await api.post("/api/generate/text2img", json=text2img(prompt="x <lora:../../etc:1>"))
    assert_error(r, 400, "INVALID_PARAMETERS")
    r = await api.post("/api/generate/text2img", json=text2img(prompt="x <lora:style:heavy>"))
    assert assert_error(r, 400, "VALIDATION_ERROR")["field"] == "prompt"


async def test_unknown_fields_are_warnings_unless_strict(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    r = await api.post("/api/generate/text2img", json=text2img(hires_fix=True, style="vivid"))
    assert r.status_code == 202, r.text
    assert r.json()["warnings"] == [
        "unknown field `hires_fix` ignored", "unknown field `style` ignored"
    ]  # fmt: skip


async def test_strict_requests_refuses_unknown_fields(tmp_path: Path, models_dir: Path) -> None:
    settings = settings_in(tmp_path, models_dir, strict_requests=True)
    async with SdrestService(settings, engine=FakeEngine()) as strict:
        transport = httpx.ASGITransport(app=create_app(strict))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            r = await http.post("/api/generate/text2img", json=text2img(hires_fix=True))
            assert assert_error(r, 400, "VALIDATION_ERROR")["field"] == "hires_fix"


async def test_controlnet_is_validated_then_501(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/generate/controlnet", json=text2img())
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "control_image"
    r = await api.post(
        "/api/generate/controlnet", json=text2img(control_image=png_b64(), control_net_model="x")
    )
    assert_error(r, 404, "MODEL_NOT_FOUND")
    r = await api.post("/api/generate/controlnet", json=text2img(control_image=png_b64()))
    assert_error(r, 501, "NOT_IMPLEMENTED")


async def test_upscale(api: httpx.AsyncClient, service: SdrestService, settings: object) -> None:
    from tests.fakes import write_safetensors_header

    write_safetensors_header(
        service.registry.models_dir / "esrgan" / "x2.safetensors",
        [
            "conv_first.weight",
            "conv_body.weight",
            "conv_up1.weight",
            "conv_hr.weight",
            "conv_last.weight",
        ],
    )
    await service.models.refresh()
    r = await api.post(
        "/api/generate/upscale", json={"image": png_b64(32, 16), "esrgan_model": "nope"}
    )
    assert_error(r, 404, "MODEL_NOT_FOUND")
    r = await api.post("/api/generate/upscale", json={"esrgan_model": "x2"})
    assert assert_error(r, 400, "INVALID_PARAMETERS")["field"] == "image"
    r = await api.post(
        "/api/generate/upscale",
        json={"image": png_b64(32, 16), "esrgan_model": "x2", "upscale_factor": 2},
    )
    assert r.status_code == 202, r.text
    job = await finished(service, r.json()["request_id"])
    assert job.status == "completed" and job.result is not None
    assert (job.result.images[0].width, job.result.images[0].height) == (64, 32)


async def test_generation_needs_the_generate_permission(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/generate/text2img", json=text2img(), headers=ANONYMOUS)
    assert_error(r, 401, "AUTH_REQUIRED")
    r = await api.post("/api/generate/text2img", json=text2img(), headers=GUEST)
    assert r.status_code == 202, r.text  # guests of an optional server may generate


async def test_queue_full_is_429(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    import asyncio

    fake_engine.hold = asyncio.Event()
    codes = [
        (await api.post("/api/generate/text2img", json=text2img())).status_code for _ in range(4)
    ]
    assert codes == [202, 202, 202, 202]  # one generating + max_queue 3
    r = await api.post("/api/generate/text2img", json=text2img())
    assert_error(r, 429, "QUEUE_FULL")
    fake_engine.hold.set()
