"""Output downloads: both URL forms, thumbnails, cache headers, and no way out of the job folder."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from sdrest.service import SdrestService
from tests.api.support import ANONYMOUS, assert_error, finished, text2img


async def _completed(api: httpx.AsyncClient, service: SdrestService, **fields: object) -> str:
    r = await api.post("/api/generate/text2img", json=text2img(**fields))
    assert r.status_code == 202, r.text
    job = await finished(service, r.json()["request_id"])
    assert job.status == "completed"
    return job.id


@pytest.mark.parametrize("prefix", ["/api/queue/job", "/api/v1/jobs"])
async def test_download_is_public_and_cached(
    api: httpx.AsyncClient, service: SdrestService, prefix: str
) -> None:
    job_id = await _completed(api, service, width=128, height=96)
    r = await api.get(f"{prefix}/{job_id}/output/image_0.png", headers=ANONYMOUS)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert "immutable" in r.headers["cache-control"]
    assert r.content == (service.output_dir / job_id / "image_0.png").read_bytes()
    assert Image.open(io.BytesIO(r.content)).size == (128, 96)


async def test_jpeg_and_webp_content_types(api: httpx.AsyncClient, service: SdrestService) -> None:
    for fmt, name, media in (
        ("jpeg", "image_0.jpg", "image/jpeg"),
        ("webp", "image_0.webp", "image/webp"),
    ):
        job_id = await _completed(api, service, output_format=fmt)
        r = await api.get(f"/api/queue/job/{job_id}/output/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == media


async def test_thumbnails(api: httpx.AsyncClient, service: SdrestService) -> None:
    job_id = await _completed(api, service, width=512, height=256)
    r = await api.get(f"/api/v1/jobs/{job_id}/output/image_0.png?thumb=1&size=100")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (100, 50)
    r = await api.get(f"/api/queue/job/{job_id}/output/image_0.png?thumb=true")
    assert Image.open(io.BytesIO(r.content)).size == (200, 100)  # default size
    for query in (
        "thumb=true&size=10",
        "thumb=true&size=501",
        "thumb=true&size=big",
        "thumb=maybe",
        "size=100",
    ):
        r = await api.get(f"/api/v1/jobs/{job_id}/output/image_0.png?{query}")
        assert_error(r, 400, "INVALID_PARAMETERS")


async def test_missing_files_and_jobs(api: httpx.AsyncClient, service: SdrestService) -> None:
    job_id = await _completed(api, service)
    assert_error(await api.get(f"/api/queue/job/{job_id}/output/7.png"), 404, "NOT_FOUND")
    missing = await api.get("/api/queue/job/job_1_abcdef/output/image_0.png")
    assert_error(missing, 404, "JOB_NOT_FOUND")


async def test_path_tricks_never_leave_the_job_folder(
    api: httpx.AsyncClient, service: SdrestService, tmp_path: Path
) -> None:
    job_id = await _completed(api, service)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"top secret")
    folder = service.output_dir / job_id
    os.symlink(secret, folder / "link.png")
    (folder / "dir.png").mkdir()
    tricks = [
        f"/api/queue/job/{job_id}/output/..%2f..%2fsecret.png",
        f"/api/queue/job/{job_id}/output/%2e%2e",
        f"/api/queue/job/{job_id}/output/%2e%2e%2fsecret.png",
        f"/api/queue/job/{job_id}/output/..%5csecret.png",
        f"/api/queue/job/{job_id}/output/%2fetc%2fpasswd",
        f"/api/queue/job/{job_id}/output/link.png",
        f"/api/queue/job/{job_id}/output/dir.png",
        f"/api/queue/job/{job_id}/output/.0.png.tmp",
        "/api/queue/job/..%2f..%2fdata/output/sdrest.sqlite3",
        "/api/v1/jobs/%2e%2e/output/secret.png",
        f"/api/v1/jobs/{job_id}/output/image_0.png%00.txt",
    ]
    for url in tricks:
        r = await api.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert b"top secret" not in r.content
        assert r.json()["error"]["code"] in ("NOT_FOUND", "JOB_NOT_FOUND"), url


async def test_expired_job_files_are_410(api: httpx.AsyncClient, service: SdrestService) -> None:
    import msgspec

    job_id = await _completed(api, service)
    service.settings = msgspec.structs.replace(service.settings, job_ttl=-1.0)
    assert job_id in await service.expire_now()
    assert_error(await api.get(f"/api/queue/job/{job_id}/output/image_0.png"), 410, "JOB_EXPIRED")
    assert_error(await api.get(f"/api/queue/job/{job_id}"), 410, "JOB_EXPIRED")
