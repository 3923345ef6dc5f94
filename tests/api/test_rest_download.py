"""``POST /api/models/download``: a model download is a job (kind ``download``) with bytes as its
progress, in its own lane beside the engine's queue, admin only; files are registered and a
family's preset written when it is done; checksum and network failures fail the job."""

from __future__ import annotations

import asyncio
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import sdrest.models.hub  # noqa: F401  (imported first: the pull's own check keeps the real hash)
from sdrest.jobs import JobEvent
from sdrest.models import hashing
from sdrest.service import SdrestService
from sdrest.settings import Settings, load_settings
from tests.api.support import ALICE, assert_error, text2img
from tests.hub_server import FakeHub, add_family, model_files


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return model_files(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, weights: dict[str, bytes]) -> Iterator[FakeHub]:
    fake = FakeHub()
    add_family(fake, weights)
    fake.add("acme/upscalers", "x2.safetensors", weights["upscaler.safetensors"])
    monkeypatch.setenv("HF_ENDPOINT", fake.start())
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield fake
    if fake.gate is not None:
        fake.gate.set()  # a download a failed test left waiting
    fake.stop()


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    config = tmp_path / "sdrest.toml"
    config.write_text("# the server's config\n")
    return load_settings(
        {
            "models_dir": str(models_dir),
            "data_dir": str(tmp_path / "data"),
            "output_dir": str(tmp_path / "outputs"),
            "model": "tiny",
        },
        env={},
        config_file=config,
    )


async def _download(api: httpx.AsyncClient, **body: object) -> str:
    r = await api.post("/api/models/download", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["status_url"] == f"/api/queue/job/{r.json()['job_id']}"
    return str(r.json()["job_id"])


async def test_refuses_bad_input_and_users(api: httpx.AsyncClient) -> None:
    for bad in (
        {"repo": "no-owner"},
        {"repo": "acme/x", "files": ["../etc/passwd"]},
        {"repo": "acme/x", "revision": ""},
        {"repo": "acme/x", "token": "hf_x"},  # the server's own token is used, never one stored
    ):
        r = await api.post("/api/models/download", json=bad)
        assert r.status_code == 400, (bad, r.text)
    assert_error(
        await api.post("/api/models/download", json={"repo": "acme/x"}, headers=ALICE),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )


async def test_download_is_a_job_with_progress_and_a_preset(
    api: httpx.AsyncClient,
    service: SdrestService,
    hub: FakeHub,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rehashed: list[str] = []  # files the registry's hash cache reads (the pull's own check aside)

    def counted(path: Path) -> str:
        rehashed.append(Path(path).name)
        return real_sha256_file(path)

    real_sha256_file = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", counted)
    events: list[JobEvent] = []
    stop = service.events.listen(events.append)
    job_id = await _download(api, repo="acme/klein-mini", all=True)
    job = await service.wait(job_id, timeout=30)
    stop()
    assert job.kind == "download" and job.status == "completed", job.error
    assert job.result is not None
    assert sorted(job.result.files) == [
        "diffusion_models/klein_mini.safetensors",
        "text_encoders/qwen_3_4b.safetensors",
        "vae/flux2-vae.safetensors",
    ]
    assert job.result.presets == ["klein-mini"]
    progress = [e.job.progress for e in events if e.type == "progress" and e.job.id == job_id]
    total = sum(
        len(d) for p, d in hub.repos["acme/klein-mini"].items() if p.endswith(".safetensors")
    )
    assert progress and all(p.phase == "downloading" and p.steps == total for p in progress)
    assert progress[-1].step == total
    view = (await api.get(f"/api/queue/job/{job_id}")).json()["job"]
    assert view["type"] == "download" and view["status"] == "completed"
    assert view["progress"] == 1.0 and view["total_steps"] == total
    assert view["model_presets"] == ["klein-mini"]
    assert "vae/flux2-vae.safetensors" in view["model_files"]
    # Registered: the files and the preset, which is in the config file too.
    names = {m["name"] for m in (await api.get("/api/models?limit=100")).json()["models"]}
    assert {"klein_mini", "flux2-vae", "qwen_3_4b", "klein-mini"} <= names
    preset = service.registry.preset("klein-mini")
    assert (preset.diffusion_model, preset.vae, preset.llm) == (
        "klein_mini",
        "flux2-vae",
        "qwen_3_4b",
    )
    assert service.registry.preset_error("klein-mini") is None
    text = await asyncio.to_thread(Path(settings.config_file).read_text)
    assert tomllib.loads(text)["presets"]["klein-mini"]["llm"] == "qwen_3_4b"
    assert text.startswith("# the server's config\n")
    # The pull hashed each file to check it, and handed the digest on: read once, not twice.
    assert await asyncio.to_thread(service.registry.wait_for_hashes, 10)
    vae = settings.models_path / "vae" / "flux2-vae.safetensors"
    digest = service.registry.hashes.sha256_of(vae)
    assert digest == real_sha256_file(vae)
    assert "flux2-vae.safetensors" not in rehashed


async def test_a_download_never_holds_a_generation_up(
    api: httpx.AsyncClient, service: SdrestService, hub: FakeHub
) -> None:
    hub.gate = threading.Event()
    job_id = await _download(api, repo="acme/upscalers")
    for _ in range(200):  # until the download runs
        if (await service.get(job_id)).status == "generating":
            break
        await asyncio.sleep(0.01)
    snapshot = service.queue_snapshot()
    assert [j.id for j in snapshot.downloads] == [job_id] and snapshot.current is None
    queue = (await api.get("/api/queue/status")).json()["queue"]
    assert job_id in [j["id"] for j in queue["jobs"]]
    r = await api.post("/api/generate/text2img", json=text2img())
    assert r.status_code == 202, r.text
    generation = await service.wait(r.json()["request_id"], timeout=10)
    assert generation.status == "completed"
    assert (await service.get(job_id)).status == "generating"  # still downloading
    hub.gate.set()
    done = await service.wait(job_id, timeout=30)
    assert done.status == "completed" and done.result is not None
    assert done.result.files == ["esrgan/x2.safetensors"]


async def test_failures_fail_the_job(
    api: httpx.AsyncClient, service: SdrestService, hub: FakeHub, models_dir: Path
) -> None:
    hub.corrupt.add("x2.safetensors")
    job = await service.wait(await _download(api, repo="acme/upscalers"), timeout=30)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "checksum_mismatch", job.error
    assert not (models_dir / "esrgan").exists()
    assert not [p for p in (models_dir / ".downloads").rglob("*.safetensors")]
    hub.corrupt.clear()
    hub.fail.add("x2.safetensors")
    job = await service.wait(await _download(api, repo="acme/upscalers"), timeout=30)
    assert job.error is not None and job.error.code == "download_failed", job.error
    view = (await api.get(f"/api/queue/job/{job.id}")).json()["job"]
    assert view["status"] == "failed" and view["error"]["code"] == "download_failed"
    job = await service.wait(await _download(api, repo="acme/klein-mini"), timeout=30)
    assert job.error is not None and "weight files" in job.error.message  # name one, or all
    job = await service.wait(await _download(api, repo="acme/ghost"), timeout=30)
    assert job.error is not None and job.error.code == "model_not_found"


async def test_cancel_a_download(
    api: httpx.AsyncClient, service: SdrestService, hub: FakeHub
) -> None:
    hub.gate = threading.Event()
    running = await _download(api, repo="acme/upscalers")
    waiting = await _download(api, repo="acme/klein-mini", all=True)
    assert service.queue_position(waiting) == 1
    cancelled = await service.cancel(waiting)
    assert cancelled.status == "cancelled"
    hub.gate.set()
    assert (await service.wait(running, timeout=30)).status == "completed"


async def test_the_models_page_download_form(
    api: httpx.AsyncClient, service: SdrestService, hub: FakeHub
) -> None:
    """The bodies models.js builds (a file named in the repository path, or in ``files``) are
    accepted; the job shows in the queue listing as a download and ends with its file listed."""
    for body in (
        {"repo": "acme/upscalers/x2.safetensors"},
        {"repo": "acme/upscalers", "files": ["x2.safetensors"], "revision": "main"},
    ):
        job_id = await _download(api, **body)
        listed = (await api.get("/api/queue/status")).json()["queue"]["jobs"]
        assert next(j for j in listed if j["id"] == job_id)["type"] == "download"
        job = await service.wait(job_id, timeout=30)
        assert job.status == "completed", job.error
        view = (await api.get(f"/api/queue/job/{job_id}")).json()["job"]
        assert view["model_files"] == ["esrgan/x2.safetensors"], view
