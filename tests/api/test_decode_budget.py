"""The decode budget over HTTP: every family's image decodes go through ``service.decodes``; past
the budget each answers 429 with ``Retry-After`` in its own error shape, and the bytes in flight
never pass the budget however many requests decode at once."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from sdrest import images
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.api.support import png_b64
from tests.conftest import settings_in
from tests.fakes import FakeEngine


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    # 4 MiB: two 512x512 images (2 MiB each: 4 bytes a pixel decoded, 4 more to work on).
    return settings_in(tmp_path, models_dir, max_queue=8, decode_budget_mb=4)


@contextmanager
def budget_taken(service: SdrestService) -> Iterator[None]:
    """Another request holds the whole budget for the block."""
    with service.decodes.hold() as hold:
        hold.reserve(service.decodes.budget, "elsewhere")
        yield


def png_bytes(size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


def assert_busy(resp: httpx.Response) -> Any:
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] == "1"
    return resp.json()


async def test_every_family_answers_429_with_retry_after_while_the_budget_is_full(
    client: httpx.AsyncClient, service: SdrestService
) -> None:
    image = png_b64()
    sdcpp = {"prompt": "x", "width": 64, "height": 64, "init_image": image}
    sdapi = {"prompt": "x", "width": 64, "height": 64, "steps": 2, "init_images": [image]}
    resize = {"image": image, "width": 32}
    edit_files = {"image": ("a.png", png_bytes(), "image/png")}
    prompt = {"prompt": "x"}
    extras = {"image": image, "upscaler_1": "Lanczos", "upscaling_resize": 2}
    with budget_taken(service):
        body = assert_busy(await client.post("/sdcpp/v1/img_gen", json=sdcpp))
        assert body["code"] == "server_busy" and body["field"] == "init_image"
        body = assert_busy(await client.post("/v1/images/edits", files=edit_files, data=prompt))
        assert (body["error"]["type"], body["error"]["code"]) == ("rate_limit_error", "server_busy")
        body = assert_busy(await client.post("/sdapi/v1/img2img", json=sdapi))
        assert (body["error"], body["code"]) == ("ServerBusyError", "server_busy")
        assert_busy(await client.post("/sdapi/v1/extra-single-image", json=extras))
        assert_busy(await client.post("/sdapi/v1/png-info", json={"image": image}))
        body = assert_busy(await client.post("/api/image/resize", json=resize))
        assert body["error"]["code"] == "SERVER_BUSY"
        assert body["error"]["status_code"] == 429
        assert service.decodes.refused == 6
    assert service.decodes.in_flight == 0
    # The budget free again: the same requests go through.
    assert (await client.post("/sdcpp/v1/img_gen", json=sdcpp)).status_code == 202
    assert (await client.post("/v1/images/edits", files=edit_files, data=prompt)).status_code == 200
    assert (await client.post("/sdapi/v1/img2img", json=sdapi)).status_code == 200
    assert (await client.post("/sdapi/v1/extra-single-image", json=extras)).status_code == 200
    assert (await client.post("/sdapi/v1/png-info", json={"image": image})).status_code == 200
    assert (await client.post("/api/image/resize", json=resize)).status_code == 200
    assert service.decodes.in_flight == 0


async def test_a_full_queue_says_when_to_retry_too(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()  # the first job holds the engine; the queue (8) fills
    job = {"prompt": "x", "width": 64, "height": 64}
    assert (await client.post("/sdcpp/v1/img_gen", json=job)).status_code == 202
    await asyncio.wait_for(fake_engine.started.wait(), 5)
    for _ in range(8):
        assert (await client.post("/sdcpp/v1/img_gen", json=job)).status_code == 202
    full = await client.post("/sdcpp/v1/img_gen", json=job)
    assert full.status_code == 429 and full.json()["code"] == "queue_full"
    assert full.headers["retry-after"] == "1"
    fake_engine.hold.set()


async def test_concurrent_large_decodes_stay_within_the_budget(
    client: httpx.AsyncClient, service: SdrestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = images._load

    def slow_load(image: Image.Image, field: str) -> Image.Image:
        time.sleep(0.2)  # a large image takes a while: the decodes overlap
        return load(image, field)

    monkeypatch.setattr(images, "_load", slow_load)
    big = png_b64(512, 512)  # 2 MiB to decode: two fit in the 4 MiB budget
    body = {"image": big, "width": 64}
    answers = await asyncio.gather(*(client.post("/api/image/resize", json=body) for _ in range(8)))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) == {200, 429}, statuses
    assert all(r.headers["retry-after"] == "1" for r in answers if r.status_code == 429)
    gate = service.decodes
    assert 0 < gate.peak <= gate.budget  # never more pixels in flight than the budget
    assert gate.refused == statuses.count(429)
    assert gate.in_flight == 0
    # A client that retries after Retry-After gets through once the burst is over.
    assert (await client.post("/api/image/resize", json=body)).status_code == 200
