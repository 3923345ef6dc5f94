"""/sdcpp/v1 over HTTP with a fake engine: status codes, shapes, validation, queue behaviour."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import httpx
import msgspec
import pytest
from PIL import Image

from sdrest.service import SdrestService
from tests.fakes import FakeEngine


async def _wait_done(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    for _ in range(500):
        body: dict[str, Any] = (await client.get(f"/sdcpp/v1/jobs/{job_id}")).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.01)
    raise AssertionError("job did not finish")


async def test_health_is_public_and_cheap(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "healthy"


async def test_img_gen_completes_with_images(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/sdcpp/v1/img_gen",
        json={"prompt": "a cat", "width": 64, "height": 80, "seed": 7, "batch_count": 2},
    )
    assert resp.status_code == 202
    created = resp.json()
    assert created["status"] in ("queued", "generating") and created["kind"] == "img_gen"
    assert created["poll_url"] == f"/sdcpp/v1/jobs/{created['id']}"
    job = await _wait_done(client, created["id"])
    assert job["status"] == "completed", job
    assert job["queue_position"] == 0 and job["error"] is None
    images = job["result"]["images"]
    assert [img["index"] for img in images] == [0, 1]
    first = Image.open(io.BytesIO(base64.b64decode(images[0]["b64_json"])))
    assert first.size == (64, 80)
    assert first.getpixel((0, 0)) == (7, 0, 0)  # the fake engine paints the seed
    assert images[1]["seed"] == 8
    assert "Seed: 7" in first.info["parameters"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "empty"),
        (b"[1, 2]", "Expected `object`"),
        (b'{"width": "wide"}', "$.width"),
        (b'{"sample_params": {"sample_method": "bogus"}}', "unknown sample_method"),
        (b'{"sample_params": {"sample_steps": -3}}', "sample_steps"),
        (b'{"width": 100000, "height": 100000}', "width must be between"),
        (b'{"batch_count": 99}', "batch_count"),
        (b'{"promt": "typo", "width": "wide"}', "$.width"),  # unknown: a warning, not a pass
        (b'{"init_image": "%%%notbase64"}', "init_image"),
        (b'{"lora": [{"path": "../../etc/passwd"}]}', "lora[0].path"),
    ],
)
async def test_bad_input_is_a_400_with_the_field(
    client: httpx.AsyncClient, body: bytes, needle: str
) -> None:
    resp = await client.post(
        "/sdcpp/v1/img_gen", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400, resp.text
    assert needle in resp.json()["error"]


async def test_unknown_model_and_job(client: httpx.AsyncClient) -> None:
    resp = await client.post("/sdcpp/v1/img_gen", json={"model": "nope"})
    assert resp.status_code == 404
    assert (await client.get("/sdcpp/v1/jobs/job_1_ab")).status_code == 404
    assert (await client.post("/sdcpp/v1/jobs/job_1_ab/cancel")).status_code == 404


async def test_unknown_lora_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.post("/sdcpp/v1/img_gen", json={"lora": [{"path": "missing"}]})
    assert resp.status_code == 404
    ok = await client.post("/sdcpp/v1/img_gen", json={"lora": [{"path": "style"}]})
    assert ok.status_code == 202
    # Regression: a LoRA name longer than the OS allows (ENAMETOOLONG) was a 500.
    long = await client.post("/sdcpp/v1/img_gen", json={"lora": [{"path": "x" * 300}]})
    assert long.status_code == 404, long.text


async def test_queue_full_429_and_cancel_queued(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()
    running = (await client.post("/sdcpp/v1/img_gen", json={"seed": 1})).json()["id"]
    await asyncio.wait_for(fake_engine.started.wait(), 5)
    queued = [
        (await client.post("/sdcpp/v1/img_gen", json={"seed": 2})).json()["id"] for _ in range(3)
    ]
    full = await client.post("/sdcpp/v1/img_gen", json={"seed": 3})
    assert full.status_code == 429
    assert "full" in full.json()["error"]
    assert (await client.get(f"/sdcpp/v1/jobs/{queued[1]}")).json()["queue_position"] == 2
    fake_engine.supports_abort = False  # as in-process: a running native call cannot stop
    busy = await client.post(f"/sdcpp/v1/jobs/{running}/cancel")
    assert busy.status_code == 409
    fake_engine.supports_abort = True
    cancelled = await client.post(f"/sdcpp/v1/jobs/{queued[0]}/cancel")
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["error"]["code"] == "cancelled"
    assert (await client.get(f"/sdcpp/v1/jobs/{queued[1]}")).json()["queue_position"] == 1
    fake_engine.hold.set()
    assert (await _wait_done(client, queued[2]))["status"] == "completed"
    assert (await _wait_done(client, queued[0]))["status"] == "cancelled"


async def test_cancel_a_generating_job_stops_it(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()  # never set: only the abort ends this job
    running = (await client.post("/sdcpp/v1/img_gen", json={"seed": 1})).json()["id"]
    await asyncio.wait_for(fake_engine.started.wait(), 5)
    r = await client.post(f"/sdcpp/v1/jobs/{running}/cancel")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["error"]["code"] == "cancelled"
    assert not body.get("result")
    fake_engine.hold.set()
    nxt = (await client.post("/sdcpp/v1/img_gen", json={"seed": 2})).json()["id"]
    assert (await _wait_done(client, nxt))["status"] == "completed"


async def test_failed_job_reports_error(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.fail_with = "boom"
    job_id = (await client.post("/sdcpp/v1/img_gen", json={})).json()["id"]
    job = await _wait_done(client, job_id)
    assert job["status"] == "failed"
    assert job["error"] == {"code": "generation_failed", "message": "boom"}


async def test_expired_job_is_410(client: httpx.AsyncClient, service: SdrestService) -> None:
    job_id = (await client.post("/sdcpp/v1/img_gen", json={})).json()["id"]
    await _wait_done(client, job_id)
    service.settings = msgspec.structs.replace(service.settings, job_ttl=0.0)
    await asyncio.sleep(0.01)  # the job finished before now, by a margin
    assert job_id in await service.expire_now()
    assert (await client.get(f"/sdcpp/v1/jobs/{job_id}")).status_code == 410
    assert not (service.output_dir / job_id).exists()


async def test_capabilities_tell_the_truth(client: httpx.AsyncClient) -> None:
    caps = (await client.get("/sdcpp/v1/capabilities")).json()
    assert caps["model"]["name"] == "tiny"
    assert caps["limits"]["max_queue_size"] == 3
    assert caps["limits"]["max_width"] == 4096
    assert caps["features"]["cancel_generating"] is True  # the fake aborts like the worker
    assert caps["features"]["cancel_queued"] is True
    assert "euler_a" in caps["samplers"] and "karras" in caps["schedulers"]
    assert caps["loras"] == [{"name": "style", "path": "style.safetensors"}]
    assert caps["defaults"]["sample_params"]["sample_method"] == "default"


async def test_vid_gen_says_why(client: httpx.AsyncClient) -> None:
    resp = await client.post("/sdcpp/v1/vid_gen", json={})
    assert resp.status_code == 501
    assert "video" in resp.json()["error"]


async def test_unknown_route_in_family_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/sdcpp/v1/nope")
    assert resp.status_code == 404
    assert "error" in resp.json()


async def test_long_poll_answers_when_done(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()
    job_id = (await client.post("/sdcpp/v1/img_gen", json={})).json()["id"]
    short = await client.get(f"/sdcpp/v1/jobs/{job_id}?wait=0.05")
    assert short.json()["status"] == "generating"
    asyncio.get_running_loop().call_later(0.05, fake_engine.hold.set)
    done = await client.get(f"/sdcpp/v1/jobs/{job_id}?wait=10")
    assert done.json()["status"] == "completed"
    for bad in ("abc", "-1", "999"):
        resp = await client.get(f"/sdcpp/v1/jobs/{job_id}?wait={bad}")
        assert resp.status_code == 400 and resp.json()["field"] == "wait"


async def test_oversize_body_is_413(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/sdcpp/v1/img_gen", content=b"{}", headers={"content-length": str(1 << 30)}
    )
    assert resp.status_code == 413 and resp.json()["code"] == "payload_too_large"
