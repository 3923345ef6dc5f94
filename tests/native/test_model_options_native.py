"""Per-request model options through the real library: a tiled (seamless) request gets its own
context, a per-request TAESD decodes the image, and /api ``<lora:...>`` prompt tags apply the
LoRA as the structured list does."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import load_settings
from sdrest.testing import TinyModelSet

pytestmark = pytest.mark.native


@pytest.fixture
async def native_service(
    tmp_path: Path, tiny_models: TinyModelSet, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[SdrestService]:
    """The native service, with images as small as 32x32 allowed (the decode costs most). Its
    worker forwards INFO lines (the level is read when it starts): the test counts model loads."""
    caplog.set_level(logging.INFO, logger="sdrest")
    settings = load_settings(
        {
            "models_dir": str(tiny_models.root),
            "data_dir": str(tmp_path / "data"),
            "model": "tiny-flux2",
            "threads": 2,
            "min_size": 16,
            "preview": "none",
            "memory_budget_mb": 1024,  # every variant stays loaded: a switch back is free
        },
        env={},
    )
    async with SdrestService(settings) as service:
        yield service


@pytest.fixture
async def http(native_service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(native_service))
    async with httpx.AsyncClient(transport=transport, base_url="http://native") as client:
        yield client


async def _images(
    http: httpx.AsyncClient, service: SdrestService, **fields: Any
) -> list[np.ndarray]:
    # 32x32: the full VAE's decode is most of the time here.
    body = {"prompt": "a lovely cat", "width": 32, "height": 32, "steps": 1, "cfg_scale": 1.0}
    body |= {"sampling_method": "euler", "seed": 1, **fields}
    r = await http.post("/api/generate/text2img", json=body)
    assert r.status_code == 202, r.text
    job = await service.wait(r.json()["request_id"], timeout=120)
    assert job.status == "completed" and job.result is not None, job.error
    folder = service.output_dir / job.id
    return [
        np.asarray(Image.open(folder / ref.filename).convert("RGB"), dtype=np.float64)
        for ref in job.result.images
    ]


async def _image(http: httpx.AsyncClient, service: SdrestService, **fields: Any) -> np.ndarray:
    return (await _images(http, service, **fields))[0]


def _seam(images: list[np.ndarray]) -> float:
    """How far the images are from tiling: the mean difference between opposite edges (right
    and left columns, bottom and top rows), relative to that between neighbouring pixels."""
    ratios = []
    for image in images:
        for axis in (0, 1):
            first, last = np.take(image, 0, axis=axis), np.take(image, -1, axis=axis)
            ratios.append(np.abs(last - first).mean() / np.abs(np.diff(image, axis=axis)).mean())
    return float(np.mean(ratios))


async def test_tiling_components_and_prompt_loras(
    http: httpx.AsyncClient, native_service: SdrestService, caplog: pytest.LogCaptureFixture
) -> None:
    # Random tiny weights draw noise, so seamlessness shows as a ratio: over seeds 0-5 at 32x32
    # the opposite edges of tiled images were measured 0.80-1.00 apart relative to neighbouring
    # pixels, those of untiled ones 1.26-1.87.
    plains = await _images(http, native_service, batch_count=2)
    tiled = await _images(http, native_service, batch_count=2, tiling=True)
    assert not np.array_equal(plains[0], tiled[0])  # its own context: circular padding
    assert _seam(tiled) < 0.9 * _seam(plains)
    plain = plains[0]
    # A per-request TAESD: the same latent, decoded by another decoder.
    taesd = await _image(http, native_service, taesd_path="tiny-taesd")
    assert not np.array_equal(plain, taesd)
    assert np.array_equal(await _image(http, native_service), plain)  # back to the model's own
    # <lora:name:w> in the prompt = the structured entry; the tag is not prompt text.
    tagged = await _image(http, native_service, prompt="a lovely cat<lora:tiny-lora:1>")
    listed = await _image(
        http, native_service, lora=[{"path": "tiny-lora", "multiplier": 1.0}]
    )
    assert np.array_equal(tagged, listed) and not np.array_equal(tagged, plain)
    # Three contexts were loaded (plain, tiled, with the TAESD), each once: within the memory
    # budget the switch back to the plain one reused it.
    loads = [r for r in caplog.records if r.getMessage() == "loading model tiny-flux2"]
    assert len(loads) == 3, [r.getMessage() for r in caplog.records if "load" in r.getMessage()]
