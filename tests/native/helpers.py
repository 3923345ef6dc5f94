"""Small helpers for native tests."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable

from PIL import Image

from sdrest.schemas import GuidanceParams, ImgGenRequest, Job, SampleParams
from sdrest.service import SdrestService


def quick(**fields: object) -> ImgGenRequest:
    """A fast request for the tiny model: 64x64, 1 step, euler, cfg 1."""
    steps = int(fields.pop("steps", 1))  # type: ignore[call-overload]
    base: dict[str, object] = {"prompt": "a lovely cat", "width": 64, "height": 64, "seed": 1}
    base.update(fields)
    return ImgGenRequest(
        sample_params=SampleParams(
            sample_steps=steps, sample_method="euler", guidance=GuidanceParams(txt_cfg=1.0)
        ),
        **base,  # type: ignore[arg-type]
    )


async def run(service: SdrestService, request: ImgGenRequest) -> Job:
    job = await service.submit(request)
    return await service.wait(job.id, timeout=120)


def output_bytes(service: SdrestService, job: Job, index: int = 0) -> bytes:
    assert job.result is not None, job.error
    return (service.output_dir / job.id / job.result.images[index].filename).read_bytes()


def output_pixels(service: SdrestService, job: Job, index: int = 0) -> bytes:
    return Image.open(io.BytesIO(output_bytes(service, job, index))).convert("RGB").tobytes()


def png_b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


async def eventually(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    """Poll ``condition`` until it holds (process state that no event reports); TimeoutError
    after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(interval)
