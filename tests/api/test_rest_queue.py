"""/api/queue/*: status with positions and progress, visibility per user, cancel, clear."""

from __future__ import annotations

import asyncio
import io

import httpx
from PIL import Image

from sdrest.api.rest import views
from sdrest.service import SdrestService
from tests.api.support import (
    ADMIN,
    ALICE,
    ANONYMOUS,
    BOB,
    GUEST,
    assert_error,
    finished,
    text2img,
)
from tests.fakes import FakeEngine


async def _submit(api: httpx.AsyncClient, headers: dict[str, str], **fields: object) -> str:
    r = await api.post("/api/generate/text2img", json=text2img(**fields), headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["request_id"])


async def test_status_shows_positions_progress_and_only_own_jobs(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()
    running = await _submit(api, ALICE, steps=4)
    await asyncio.wait_for(fake_engine.holding.wait(), 5)  # every step's progress reported
    bobs = await _submit(api, BOB)
    alices = await _submit(api, ALICE)

    r = await api.get("/api/queue/status", headers=ALICE)
    assert r.status_code == 200, r.text
    queue = r.json()["queue"]
    assert queue["size"] == 2 and queue["active_generations"] == 1
    ids = [j["id"] for j in queue["jobs"]]
    assert ids == [running, alices]  # the running one first, then the queue; no Bob
    first, second = queue["jobs"]
    assert first["status"] == "processing" and first["position"] == 0
    assert first["current_step"] == 4 and first["total_steps"] == 4
    assert first["progress"] == 1.0 and first["speed"] == 100.0
    assert first["time_remaining"] == 0 and first["time_elapsed"] >= 0
    assert second["status"] == "queued" and second["position"] == 2
    assert second["prompt"] == "a lovely cat"

    admin_ids = [
        j["id"] for j in (await api.get("/api/queue/status", headers=ADMIN)).json()["queue"]["jobs"]
    ]
    assert set(admin_ids) == {running, bobs, alices}
    fake_engine.hold.set()
    await finished(service, alices)


async def test_job_detail_visibility_and_outputs(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    job_id = await _submit(api, ALICE, batch_count=2)
    await finished(service, job_id)
    r = await api.get(f"/api/queue/job/{job_id}", headers=ALICE)
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert job["status"] == "completed" and job["progress"] == 1.0
    assert [o["filename"] for o in job["outputs"]] == ["image_0.png", "image_1.png"]
    assert job["outputs"][0]["url"] == f"/api/queue/job/{job_id}/output/image_0.png"
    assert job["parameters"]["steps"] == 2 and job["end_time"] >= job["queued_time"]
    # Another user's job looks exactly like an unknown one.
    assert_error(await api.get(f"/api/queue/job/{job_id}", headers=BOB), 404, "JOB_NOT_FOUND")
    assert_error(await api.get("/api/queue/job/job_0_00", headers=ALICE), 404, "JOB_NOT_FOUND")
    assert (await api.get(f"/api/queue/job/{job_id}", headers=ADMIN)).status_code == 200
    assert_error(await api.get(f"/api/queue/job/{job_id}", headers=ANONYMOUS), 401, "AUTH_REQUIRED")
    assert_error(await api.get("/api/queue/status", headers=GUEST), 401, "AUTH_REQUIRED")


async def test_cancel_queued_running_and_finished(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()
    running = await _submit(api, ALICE)
    await fake_engine.started.wait()
    queued = await _submit(api, ALICE)

    r = await api.post("/api/queue/cancel", json={"job_id": queued}, headers=BOB)
    assert_error(r, 404, "JOB_NOT_FOUND")
    r = await api.post("/api/queue/cancel", json={"job_id": queued}, headers=ALICE)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "success",
        "message": "Job cancelled successfully",
        "job_id": queued,
        "job_status": "cancelled",
    }
    r = await api.post("/api/queue/cancel", json={"job_id": running}, headers=ALICE)
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "Job cancelled successfully"  # the engine stopped it
    assert r.json()["job_status"] == "cancelled"
    job = await finished(service, running)
    assert job.status == "cancelled" and job.result is None
    assert job.error is not None and job.error.code == "interrupted"

    fake_engine.supports_abort = False  # in-process: it ends when the native call returns
    fake_engine.started.clear()
    slow = await _submit(api, ALICE)
    await fake_engine.started.wait()
    r = await api.post("/api/queue/cancel", json={"job_id": slow}, headers=ALICE)
    assert r.status_code == 200 and "requested" in r.json()["message"]
    fake_engine.hold.set()
    job = await finished(service, slow)
    assert job.status == "cancelled" and job.result is None

    done = await _submit(api, ALICE)
    await finished(service, done)
    r = await api.post("/api/queue/cancel", json={"job_id": done}, headers=ALICE)
    assert_error(r, 409, "CONFLICT")
    assert_error(await api.post("/api/queue/cancel", json={}), 400, "VALIDATION_ERROR")
    assert_error(await api.post("/api/queue/cancel", content=b"job"), 400, "INVALID_PARAMETERS")


async def test_clear_cancels_only_the_callers_queued_jobs(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()
    running = await _submit(api, ALICE)
    await fake_engine.started.wait()
    alices = await _submit(api, ALICE)
    bobs = await _submit(api, BOB)

    r = await api.post("/api/queue/clear", headers=ALICE)
    assert r.status_code == 200, r.text
    assert r.json()["cancelled"] == [alices]
    assert service.queue_snapshot().queued_ids == [bobs]
    r = await api.post("/api/queue/clear", headers=ADMIN)
    assert r.json()["cancelled"] == [bobs] and service.queue_snapshot().queued_ids == []
    assert (await service.get(running)).status == "generating"  # the running job is left alone
    fake_engine.hold.set()
    await finished(service, running)


async def test_live_preview_of_the_running_job(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()
    job_id = await _submit(api, ALICE, steps=3, width=128, height=64)
    await asyncio.wait_for(fake_engine.holding.wait(), 5)  # every step's preview reported
    r = await api.get(f"/api/queue/job/{job_id}/preview", headers=ALICE)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-preview-step"] == "3" and r.headers["cache-control"] == "no-store"
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (128, 64)  # a 1/8 latent preview, scaled to the job's size
    assert image.getpixel((0, 0)) == (0, 3, 0)
    assert_error(
        await api.get(f"/api/queue/job/{job_id}/preview", headers=BOB), 404, "JOB_NOT_FOUND"
    )
    job = await service.get(job_id)
    assert (views.ws_job_update(job).preview_url or "").endswith("/preview?step=3")
    fake_engine.hold.set()
    await finished(service, job_id)
    assert_error(await api.get(f"/api/queue/job/{job_id}/preview", headers=ALICE), 404, "NOT_FOUND")
    assert service.preview(job_id) is None  # nothing kept once the job is over
