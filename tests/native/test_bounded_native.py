"""Issue 18: an upscale whose output would pass the max size is refused on the real library
before the engine runs (a 128 KiB PNG declaring 4096x4096 through the 2x file asked for
8192x8192 and held the engine for about 45 minutes)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import sdrest
from sdrest.app import create_app
from sdrest.errors import InvalidRequestError
from sdrest.schemas import UpscaleRequest
from sdrest.service import SdrestService
from sdrest.testing import TinyModelSet
from tests.api.test_bounded_inputs import HOSTILE

UPSCALER = "tiny-esrgan-x2"


@pytest.fixture
async def client(native_service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(native_service))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as http:
        yield http


async def test_the_hostile_upscale_is_refused_before_the_engine_runs(
    native_service: SdrestService, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    resp = await client.post(
        "/api/generate/upscale", json={"image": HOSTILE, "esrgan_model": UPSCALER}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["field"] == "image"
    assert "8192x8192" in resp.json()["error"]["message"]
    body = {"image": HOSTILE, "upscaler_1": UPSCALER, "upscaling_resize": 1}
    resp = await client.post("/sdapi/v1/extra-single-image", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == "upscaler_1"
    with pytest.raises(InvalidRequestError):
        await native_service.submit_upscale(UpscaleRequest(image=HOSTILE, upscaler=UPSCALER))
    assert time.monotonic() - started < 10
    assert await native_service.list_jobs() == []
    assert native_service.engine.loaded_model is None  # nothing ever reached the library


def test_the_library_generator_refuses_it(tiny_models: TinyModelSet, tmp_path: Path) -> None:
    with sdrest.Generator(
        models_dir=tiny_models.root, model="tiny-flux2", threads=2, data_dir=tmp_path
    ) as sd:
        started = time.monotonic()
        with pytest.raises(InvalidRequestError, match="8192x8192"):
            sd.upscale(base64.b64decode(HOSTILE), upscaler=UPSCALER)
        assert time.monotonic() - started < 10
