"""/api/generate/* over HTTP with the fake engine: queued jobs, translation, refusals."""

from __future__ import annotations

import httpx

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
from tests.fakes import FakeEngine


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
    assert "stepz" in assert_error(r, 400, "VALIDATION_ERROR")["message"]
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
    r = await api.post("/api/generate/text2img", json=text2img(vae_path="style"))
    assert "per-request components" in assert_error(r, 400, "INVALID_PARAMETERS")["message"]


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


async def test_load_options_must_match_the_server(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/generate/text2img", json=text2img(clip_on_cpu=True))
    error = assert_error(r, 400, "INVALID_PARAMETERS")
    assert error["field"] == "clip_on_cpu" and "--clip-on-cpu" in error["message"]
    r = await api.post(
        "/api/generate/text2img",
        json=text2img(clip_on_cpu=False, n_threads=4, lora_model_dir="lora"),
    )
    assert r.status_code == 202, r.text
    assert any("n_threads" in w for w in r.json()["warnings"])


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
