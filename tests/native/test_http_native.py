"""/sdcpp/v1 end to end over HTTP through the real library, and the binding's name tables."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import pytest
from PIL import Image

from sdrest.app import create_app
from sdrest.schemas import SAMPLE_METHODS, SCHEDULERS
from sdrest.service import SdrestService

pytestmark = pytest.mark.native


def test_name_tables_match_the_binding() -> None:
    from stable_diffusion_cpp import stable_diffusion as binding

    samplers = set(binding.SAMPLE_METHOD_MAP) - {"default", "sample_method_count"}
    schedulers = set(binding.SCHEDULER_MAP) - {"default", "scheduler_count"}
    assert set(SAMPLE_METHODS) == samplers
    assert set(SCHEDULERS) == schedulers


async def test_img_gen_over_http_with_the_real_engine(native_service: SdrestService) -> None:
    transport = httpx.ASGITransport(app=create_app(native_service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body = {
            "prompt": "a lovely cat",
            "width": 72,
            "height": 64,
            "seed": 11,
            "output_format": "webp",
            "output_compression": 90,
            "sample_params": {
                "sample_steps": 2,
                "sample_method": "euler",
                "scheduler": "Karras",
                "guidance": {"txt_cfg": 1.0},
            },
        }
        created = await client.post("/sdcpp/v1/img_gen", json=body)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        for _ in range(600):
            job = (await client.get(f"/sdcpp/v1/jobs/{job_id}")).json()
            if job["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "completed", job
        assert job["result"]["output_format"] == "webp"
        image = Image.open(io.BytesIO(base64.b64decode(job["result"]["images"][0]["b64_json"])))
        assert image.format == "WEBP"
        assert image.size == (80, 64)  # sd.cpp rounds sizes up to a multiple of 16
        assert job["progress"]["steps"] == 2
        caps = (await client.get("/sdcpp/v1/capabilities")).json()
        assert caps["model"]["name"] == "tiny-flux2" and caps["model"]["architecture"] == "flux2"
        assert {"name": "tiny-lora", "path": "tiny-lora.safetensors"} in caps["loras"]


async def test_event_loop_stays_responsive_during_generation(
    native_service: SdrestService,
) -> None:
    transport = httpx.ASGITransport(app=create_app(native_service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body = {"width": 256, "height": 256, "sample_params": {"sample_steps": 2}}
        job_id = (await client.post("/sdcpp/v1/img_gen", json=body)).json()["id"]
        worst, answered = 0.0, 0
        loop = asyncio.get_running_loop()
        while (await client.get(f"/sdcpp/v1/jobs/{job_id}")).json()["status"] != "completed":
            start = loop.time()
            assert (await client.get("/api/health")).status_code == 200
            worst = max(worst, loop.time() - start)
            answered += 1
            await asyncio.sleep(0.01)
        assert answered >= 5  # health answered many times while the native call ran
        assert worst < 0.25, f"health took {worst:.3f} s during a generation"
