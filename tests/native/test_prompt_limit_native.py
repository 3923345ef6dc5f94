"""``--max-prompt-chars`` against the real library: a prompt at the default limit generates (the
Qwen3-style encoder of the tiny Flux.2 takes the whole prompt), one character over is each
family's 400 before anything reaches the worker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import Limits

pytestmark = pytest.mark.native

LIMIT = Limits().max_prompt_chars
WORDS = "a photo of a cat sitting on a red chair, highly detailed, "


def text(length: int) -> str:
    return (WORDS * (length // len(WORDS) + 1))[:length]


async def test_a_prompt_at_the_limit_generates_and_one_over_is_a_400_everywhere(
    native_service: SdrestService,
) -> None:
    transport = httpx.ASGITransport(app=create_app(native_service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body: dict[str, Any] = {
            "prompt": text(LIMIT),
            "negative_prompt": text(LIMIT),
            "width": 64,
            "height": 64,
            "sample_params": {"sample_steps": 1, "guidance": {"txt_cfg": 2.0}},
        }
        created = await client.post("/sdcpp/v1/img_gen", json=body)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        for _ in range(1200):
            job = (await client.get(f"/sdcpp/v1/jobs/{job_id}")).json()
            if job["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "completed", job

        over = text(LIMIT + 1)
        answers = {
            "sdcpp": await client.post("/sdcpp/v1/img_gen", json={"prompt": over}),
            "openai": await client.post("/v1/images/generations", json={"prompt": over}),
            "sdapi": await client.post(
                "/sdapi/v1/txt2img", json={"prompt": "a", "negative_prompt": over}
            ),
            "rest": await client.post("/api/generate/text2img", json={"prompt": over}),
        }
    for family, resp in answers.items():
        assert resp.status_code == 400, (family, resp.text)
        payload = resp.json()
        if family == "openai":
            assert payload["error"]["param"] == "prompt"
        elif family == "rest":
            assert payload["error"]["field"] == "prompt"
        elif family == "sdapi":
            assert payload["field"] == "negative_prompt"
        else:
            assert payload["field"] == "prompt"
        assert f"at most {LIMIT}" in str(payload)
    # nothing but the one job reached the engine
    assert [j.id for j in await native_service.list_jobs()] == [job_id]
