"""Generation through the real stable-diffusion.cpp library on synthesized models."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from sdrest.errors import InvalidRequestError, NotFoundError
from sdrest.planning import plan_generation
from sdrest.schemas import ConvertRequest, HiresParams, LoraSpec, UpscaleRequest
from sdrest.service import SdrestService
from sdrest.settings import load_settings
from sdrest.testing import TinyModelSet
from tests.native.helpers import output_bytes, output_pixels, png_b64, quick, run

pytestmark = pytest.mark.native


async def test_txt2img_same_seed_is_byte_identical(native_service: SdrestService) -> None:
    first = await run(native_service, quick(seed=5))
    again = await run(native_service, quick(seed=5))
    other = await run(native_service, quick(seed=6))
    assert first.status == again.status == other.status == "completed", first.error
    assert output_bytes(native_service, first) == output_bytes(native_service, again)
    assert output_pixels(native_service, first) != output_pixels(native_service, other)
    assert first.result is not None and first.result.images[0].width == 64


async def test_batch_has_consecutive_seeds(native_service: SdrestService) -> None:
    job = await run(native_service, quick(seed=9, batch_count=2))
    assert job.result is not None and [i.seed for i in job.result.images] == [9, 10]
    single = await run(native_service, quick(seed=10))
    assert output_pixels(native_service, job, 1) == output_pixels(native_service, single)


async def test_img2img_and_inpainting_use_the_image(native_service: SdrestService) -> None:
    white, black = Image.new("RGB", (64, 64), "white"), Image.new("RGB", (64, 64), "black")
    from_white = await run(native_service, quick(steps=2, strength=0.4, init_image=png_b64(white)))
    from_black = await run(native_service, quick(steps=2, strength=0.4, init_image=png_b64(black)))
    assert from_white.status == from_black.status == "completed", from_white.error
    assert output_pixels(native_service, from_white) != output_pixels(native_service, from_black)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    inpaint = await run(
        native_service,
        quick(steps=2, strength=0.4, init_image=png_b64(white), mask_image=png_b64(mask)),
    )
    assert inpaint.status == "completed", inpaint.error


async def test_structured_lora_changes_the_image_and_tags_do_nothing(
    native_service: SdrestService, caplog: pytest.LogCaptureFixture
) -> None:
    base = await run(native_service, quick(seed=3))
    with caplog.at_level(logging.INFO, logger="sdrest.native"):
        tagged = await run(native_service, quick(seed=3, prompt="a lovely cat<lora:tiny-lora:1>"))
    assert tagged.status == "completed"
    assert "LoRA tensors have been applied" not in caplog.text  # prompt text is only text
    lora = await run(
        native_service, quick(seed=3, lora=[LoraSpec(path="tiny-lora", multiplier=1.0)])
    )
    assert lora.status == "completed", lora.error
    assert output_pixels(native_service, lora) != output_pixels(native_service, base)
    again = await run(native_service, quick(seed=3))
    assert output_pixels(native_service, again) == output_pixels(native_service, base)


async def test_esrgan_identity_is_exact_nearest_neighbour(native_service: SdrestService) -> None:
    source = Image.new("RGB", (16, 12))
    source.putdata(
        [((x * 16) % 256, (y * 20) % 256, (x * y) % 256) for y in range(12) for x in range(16)]
    )
    job = await native_service.submit_upscale(
        UpscaleRequest(image=png_b64(source), upscaler="tiny-esrgan-x2")
    )
    job = await native_service.wait(job.id, timeout=60)
    assert job.status == "completed", job.error
    result = Image.open(__import__("io").BytesIO(output_bytes(native_service, job))).convert("RGB")
    assert result.size == (32, 24)
    assert result.tobytes() == source.resize((32, 24), Image.Resampling.NEAREST).tobytes()


async def test_broken_model_fails_its_job_and_the_next_succeeds(
    native_service: SdrestService,
) -> None:
    broken = await run(native_service, quick(model="broken"))
    assert broken.status == "failed"
    assert broken.error is not None and broken.error.code == "model_load_failed"
    assert "model load failed" in broken.error.message
    healthy = await run(native_service, quick())
    assert healthy.status == "completed", healthy.error


async def test_progress_of_a_multi_step_job_is_observed(native_service: SdrestService) -> None:
    seen: list[tuple[str, int, int]] = []
    async with native_service.events.subscribe() as events:
        job = await native_service.submit(quick(steps=3))
        while True:
            event = await asyncio.wait_for(events.get(), 60)
            if event.job.id != job.id:
                continue
            progress = event.job.progress
            if event.type == "progress":
                seen.append((progress.phase, progress.step, progress.steps))
            if event.job.finished:
                break
    sampling = [s for s in seen if s[0] == "sampling"]
    assert [step for _, step, _ in sampling][-3:] == [1, 2, 3]
    assert all(steps == 3 for _, _, steps in sampling)


async def test_a_lora_that_would_abort_the_library_is_a_400(native_service: SdrestService) -> None:
    # Measured: this LoRA makes stable-diffusion.cpp GGML_ASSERT (SIGABRT) inside the process.
    with pytest.raises(InvalidRequestError, match="do not fit"):
        await native_service.submit(quick(lora=[LoraSpec(path="wrong-shape")]))
    job = await run(native_service, quick())
    assert job.status == "completed", job.error


async def test_a_broken_upscaler_fails_its_job_cleanly(native_service: SdrestService) -> None:
    # Measured: a NULL upscaler context segfaults upscale(); the engine checks it first.
    image = png_b64(Image.new("RGB", (8, 8)))
    job = await native_service.submit_upscale(UpscaleRequest(image=image, upscaler="broken-esrgan"))
    job = await native_service.wait(job.id, timeout=60)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "model_load_failed"
    good = await native_service.submit_upscale(
        UpscaleRequest(image=image, upscaler="tiny-esrgan-x2")
    )
    assert (await native_service.wait(good.id, timeout=60)).status == "completed"


async def test_native_hires_fix_doubles_the_size(native_service: SdrestService) -> None:
    for hires in (
        HiresParams(enabled=True, upscaler="latent", scale=2.0, steps=1),
        HiresParams(enabled=True, upscaler="model", upscaler_model="tiny-esrgan-x2", steps=1),
    ):
        job = await run(native_service, quick(seed=3, hires=hires))
        assert job.status == "completed", job.error
        assert job.result is not None
        assert (job.result.images[0].width, job.result.images[0].height) == (128, 128)
    unknown = HiresParams(enabled=True, upscaler="model", upscaler_model="nope")
    with pytest.raises(NotFoundError) as err:
        await native_service.submit(quick(hires=unknown))
    assert err.value.field == "hires.upscaler_model"


async def test_convert_job_quantizes_and_the_result_generates(
    tmp_path: Path, tiny_models: TinyModelSet
) -> None:
    models = tmp_path / "models" / "checkpoints"
    models.mkdir(parents=True)
    shutil.copy(tiny_models.checkpoint, models / "tiny.gguf")
    settings = load_settings(
        {"models_dir": str(tmp_path / "models"), "data_dir": str(tmp_path / "data"), "threads": 2},
        env={},
    )
    async with SdrestService(settings) as service:
        job = await service.submit_convert(
            ConvertRequest(model="tiny", weight_type="q8_0", output_path="checkpoints/t8.gguf")
        )
        job = await service.wait(job.id, timeout=120)
        assert job.status == "completed", job.error
        assert (models / "t8.gguf").stat().st_size > (models / "tiny.gguf").stat().st_size
        assert not list(models.glob("*.part"))
        generated = await run(service, quick(model="t8"))
        assert generated.status == "completed", generated.error


async def test_live_previews_then_none_without_a_stale_callback(
    native_service: SdrestService,
) -> None:
    settings = native_service.settings
    plan = plan_generation(quick(steps=3), "tiny-flux2", settings, native_service.registry)
    assert plan.preview_method == "proj"  # the default
    seen: list[tuple[int, tuple[int, int]]] = []
    await native_service.engine.generate(
        plan, lambda _p: None, lambda step, image: seen.append((step, image.size))
    )
    assert [step for step, _ in seen] == [1, 2, 3]
    assert all(size == (8, 8) for _, size in seen)  # the latent projection: 1/8 of 64x64
    # The wrapper leaves its preview thunk registered: a generation without previews must not
    # call it (freed memory) — sdrest resets it after every call.
    quiet = dataclasses.replace(plan, preview_method="none")
    images = await native_service.engine.generate(quiet, lambda _p: None)
    assert images[0].size == (64, 64) and len(seen) == 3
