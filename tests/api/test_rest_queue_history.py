"""``DELETE /api/queue/job/{id}`` (a finished job's record, images and cache entry, announced on
/ws) and ``GET /api/queue/history`` (the finished jobs, a page at a time)."""

from __future__ import annotations

import asyncio

import httpx

from sdrest.service import SdrestService
from tests.api.support import ADMIN, ALICE, ANONYMOUS, BOB, assert_error, finished, text2img
from tests.api.test_rest_ws import _open
from tests.fakes import FakeEngine


async def _submit(api: httpx.AsyncClient, headers: dict[str, str], **fields: object) -> str:
    r = await api.post("/api/generate/text2img", json=text2img(**fields), headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["request_id"])


async def test_delete_a_finished_job_everywhere(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    job_id = await _submit(api, ALICE)
    await finished(service, job_id)
    folder = service.output_dir / job_id
    assert any(folder.iterdir())
    assert service.runner.live(job_id) is not None  # in the recent-jobs cache
    watcher = await _open(service, ALICE)

    # Nobody else's to delete (another user's job does not exist for them).
    assert_error(await api.delete(f"/api/queue/job/{job_id}", headers=BOB), 404, "JOB_NOT_FOUND")
    assert (await api.delete(f"/api/queue/job/{job_id}", headers=ANONYMOUS)).status_code == 401
    r = await api.delete(f"/api/queue/job/{job_id}", headers=ALICE)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "success", "message": "Job deleted", "job_id": job_id}

    deleted = await watcher.until("job_deleted")
    assert deleted["data"] == {"job_id": job_id}
    await watcher.disconnect()
    assert not folder.exists() and service.runner.live(job_id) is None
    assert await service.store.get(job_id) is None
    assert_error(await api.get(f"/api/queue/job/{job_id}", headers=ALICE), 404, "JOB_NOT_FOUND")
    listed = (await api.get("/api/queue/status", headers=ALICE)).json()["queue"]["jobs"]
    assert job_id not in [j["id"] for j in listed]
    assert_error(await api.delete(f"/api/queue/job/{job_id}", headers=ALICE), 404, "JOB_NOT_FOUND")

    # A queued or running job is a 409 (cancel first); an admin may delete anyone's.
    fake_engine.hold = asyncio.Event()
    running = await _submit(api, BOB)
    queued = await _submit(api, BOB)
    await asyncio.wait_for(fake_engine.holding.wait(), 5)
    for live in (running, queued):
        refused = await api.delete(f"/api/queue/job/{live}", headers=BOB)
        assert_error(refused, 409, "CONFLICT")
        assert "cancel it first" in refused.json()["error"]["message"]
    fake_engine.hold.set()
    await finished(service, queued)
    assert (await api.delete(f"/api/queue/job/{queued}", headers=ADMIN)).status_code == 200


async def test_history_pages_through_finished_jobs(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    mine = [await _submit(api, ALICE, seed=n) for n in range(5)]
    bobs = await _submit(api, BOB)
    for job_id in [*mine, bobs]:
        await finished(service, job_id)

    first = (await api.get("/api/queue/history?limit=2", headers=ALICE)).json()
    assert [j["id"] for j in first["jobs"]] == mine[::-1][:2]  # newest first, only Alice's
    assert (first["limit"], first["offset"], first["has_more"]) == (2, 0, True)
    assert first["jobs"][0]["outputs"][0]["url"].endswith("/image_0.png")
    last = (await api.get("/api/queue/history?limit=2&offset=4", headers=ALICE)).json()
    assert [j["id"] for j in last["jobs"]] == [mine[0]] and last["has_more"] is False
    everyone = (await api.get("/api/queue/history", headers=ADMIN)).json()
    assert len(everyone["jobs"]) == 6 and everyone["has_more"] is False
    none = (await api.get("/api/queue/history?status=failed", headers=ALICE)).json()
    assert none["jobs"] == []
    for bad in ("limit=0", "limit=501", "offset=-1", "status=queued", "limit=x"):
        r = await api.get(f"/api/queue/history?{bad}", headers=ALICE)
        assert r.status_code == 400 and r.json()["error"]["field"] == bad.split("=")[0]
    wrong = (await api.get("/api/queue/history?status=queued", headers=ALICE)).json()["error"]
    assert wrong["message"] == "status must be one of all, completed, failed, cancelled"
    assert (await api.get("/api/queue/history", headers=ANONYMOUS)).status_code == 401
