"""Jobs are durable from the moment they are accepted: a new process finds every one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sdrest.schemas import ImgGenRequest
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.fakes import FakeEngine


async def _stop_mid_job(settings: Settings, queue_more: int = 0) -> tuple[str, list[str]]:
    """Start a service, leave its first job generating (plus ``queue_more`` queued), stop it
    as if the process died: nothing finished."""
    engine = FakeEngine()
    engine.hold = asyncio.Event()  # the running job never finishes in this process
    service = SdrestService(settings, engine=engine)
    await service.start()
    live = service.queue_snapshot().jobs
    if live:  # recovered jobs run first: the retried one is generating again
        running_id = live[0].id
    else:
        running_id = (await service.submit(ImgGenRequest(prompt="a", seed=1))).id
    await asyncio.wait_for(engine.started.wait(), 5)
    queued = [
        (await service.submit(ImgGenRequest(prompt="b", seed=s))).id
        for s in range(2, 2 + queue_more)
    ]
    await service.stop()
    return running_id, queued


async def test_restart_requeues_queued_and_retries_the_running_one(settings: Settings) -> None:
    running, queued = await _stop_mid_job(settings, queue_more=2)
    again = SdrestService(settings, engine=FakeEngine())
    await again.start()
    try:
        ids = [running, *queued]
        # The accepted order, the retried one first.
        assert [job.id for job in again.queue_snapshot().jobs] == ids
        for job_id, seed in zip(ids, (1, 2, 3), strict=True):
            done = await again.wait(job_id, timeout=10)
            assert done.status == "completed" and done.result is not None
            assert done.request is not None and done.request.seed == seed
        assert (await again.get(running)).attempts == 2
        output = Path(again.output_dir, queued[0], "image_0.png")
        assert await asyncio.to_thread(output.is_file)
    finally:
        await again.stop()


async def test_a_job_interrupted_twice_fails_instead_of_looping(settings: Settings) -> None:
    running, _ = await _stop_mid_job(settings)
    retried, _ = await _stop_mid_job(settings)  # the retry is interrupted as well
    assert retried == running
    async with SdrestService(settings, engine=FakeEngine()) as again:
        lost = await again.get(running)
        assert lost.status == "failed" and lost.error is not None
        assert lost.error.code == "server_restarted"
        assert "2 times" in lost.error.message and lost.attempts == 2


async def test_finished_jobs_survive_a_restart(settings: Settings) -> None:
    async with SdrestService(settings, engine=FakeEngine()) as service:
        job = await service.submit(ImgGenRequest(prompt="keep me", seed=4))
        job = await service.wait(job.id, timeout=10)
    async with SdrestService(settings, engine=FakeEngine()) as later:
        found = await later.get(job.id)
        assert found.status == "completed" and found.result == job.result


async def test_finished_jobs_keep_no_image_payloads_in_memory_or_on_disk(
    service: SdrestService,
) -> None:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    job = await service.submit(ImgGenRequest(init_image=image, strength=0.5))
    done = await service.wait(job.id, timeout=10)
    assert done.status == "completed" and done.request is not None
    assert done.request.init_image is None  # memory: payload dropped
    stored = await service.store.get(job.id, with_request=True)
    assert stored is not None and stored.request is None  # finished: nothing needs the payload
    summary = await service.store.get(job.id)
    assert summary is not None and summary.request is not None and summary.request.strength == 0.5


async def test_queued_upscale_and_convert_jobs_survive_a_restart(settings: Settings) -> None:
    import base64
    import io

    from PIL import Image

    from sdrest.schemas import ConvertRequest, UpscaleRequest
    from tests.fakes import write_fake_esrgan

    write_fake_esrgan(settings.models_path / "esrgan" / "x2.safetensors")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    first_engine = FakeEngine()
    first_engine.hold = asyncio.Event()
    service = SdrestService(settings, engine=first_engine)
    await service.start()
    await service.submit(ImgGenRequest(prompt="blocker"))
    await asyncio.wait_for(first_engine.started.wait(), 5)
    upscale = await service.submit_upscale(
        UpscaleRequest(image=base64.b64encode(buf.getvalue()).decode(), upscaler="x2")
    )
    convert = await service.submit_convert(
        ConvertRequest(model="tiny", weight_type="q8_0", output_path="checkpoints/t8.gguf")
    )
    await service.stop()

    async with SdrestService(settings, engine=FakeEngine()) as again:
        done = await again.wait(upscale.id, timeout=10)
        assert done.status == "completed" and done.result is not None
        assert (done.result.images[0].width, done.result.images[0].height) == (16, 16)
        converted = await again.wait(convert.id, timeout=10)
        assert converted.status == "completed", converted.error
        assert (settings.models_path / "checkpoints" / "t8.gguf").is_file()
