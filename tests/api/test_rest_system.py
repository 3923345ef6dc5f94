"""/api system endpoints and the family's error shape."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest

from sdrest.api.rest.system_info import SystemState, detect_backend, read_version
from sdrest.app import create_app
from sdrest.cpu_cores import physical_cores
from sdrest.service import SdrestService
from tests.api.support import (
    ADMIN,
    ALICE,
    ANONYMOUS,
    TestUsers,
    assert_error,
    finished,
    text2img,
)
from tests.fakes import FakeEngine


async def test_status_is_public(api: httpx.AsyncClient, service: SdrestService) -> None:
    r = await api.get("/api/status", headers=ANONYMOUS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["server"]["running"] is True and body["server"]["port"] == 8080
    assert body["generation_queue"] == {
        "running": True,
        "queue_size": 0,
        "active_generations": 0,
        "max_queue_size": 3,
    }
    assert body["models"]["available_count"] == 1 and body["models"]["loaded_count"] == 0


async def test_version_reports_the_commit(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/version", headers=ANONYMOUS)
    assert r.status_code == 200, r.text
    body = r.json()
    repo = Path(__file__).parents[2]
    git = ["git", "-C", str(repo), "rev-parse", "HEAD"]
    done = await asyncio.to_thread(subprocess.run, git, capture_output=True, text=True, check=False)
    head = done.stdout.strip()
    assert body["commit"]["full"] == (head or "unknown")
    assert body["commit"]["short"] == body["commit"]["full"][:7]
    assert body["version"] and body["type"] in ("release", "development")


def test_read_version_without_git(tmp_path: Path) -> None:
    info = read_version(
        tmp_path / "pkg", {"SDREST_GIT_COMMIT": "abc1234def", "SDREST_BUILD_TIME": "t"}
    )
    assert (info.commit_full, info.build_time, info.clean) == ("abc1234def", "t", None)
    assert read_version(tmp_path / "pkg", {}).commit_full == "unknown"


def test_build_variables_are_read_when_the_app_is_made() -> None:
    state = SystemState({"SDREST_GIT_COMMIT": "abc", "PATH": "/bin"})
    assert state.build_env == {"SDREST_GIT_COMMIT": "abc"}


def test_backend_detection_names_a_backend() -> None:
    assert (
        detect_backend() in ("cpu", "cuda", "vulkan", "metal", "rocm", "sycl")
        or "+" in detect_backend()
    )


async def test_config_hides_secrets_and_paths(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/api/config", headers=ANONYMOUS), 401, "AUTH_REQUIRED")
    user = (await api.get("/api/config", headers=ALICE)).json()["config"]
    assert "jwt_secret" not in user["auth"] and "models_dir" not in user
    assert user["limits"]["max_queue"] == 3
    admin = (await api.get("/api/config", headers=ADMIN)).json()["config"]
    assert "models_dir" in admin and "jwt_secret" not in admin["auth"]


async def test_system_info(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/system", headers=ALICE)
    assert r.status_code == 200, r.text
    system = r.json()["system"]
    assert system["cpu_count"] >= 1 and system["process_rss"] > 1_000_000
    # threads = 0 (the default) shows what it means here: one per physical core.
    assert system["threads"] == physical_cores() >= 1
    assert system["memory_total"] > system["process_rss"]
    # The library version comes from the engine (a worker reports it when it starts).
    assert system["engine"]["mode"] == "fake" and system["library_version"] is None
    assert system["gpu_backend"]


async def test_restart_keeps_the_queue(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    assert_error(
        await api.post("/api/system/restart", headers=ALICE), 403, "INSUFFICIENT_PERMISSIONS"
    )
    await service.models.load("tiny")
    fake_engine.hold = asyncio.Event()
    running = (await api.post("/api/generate/text2img", json=text2img())).json()["request_id"]
    await fake_engine.started.wait()
    queued = (await api.post("/api/generate/text2img", json=text2img())).json()["request_id"]
    r = await api.post("/api/system/restart", headers=ADMIN)
    assert r.status_code == 202, r.text
    assert r.json()["message"] == "Server restart initiated" and r.json()["queued_jobs"] == 1
    assert_error(await api.post("/api/system/restart", headers=ADMIN), 409, "CONFLICT")
    fake_engine.hold.set()
    assert (await finished(service, running)).status == "completed"
    assert (await finished(service, queued)).status == "completed"  # queued jobs survive
    for _ in range(100):
        if not (await api.get("/api/status")).json()["server"]["restarting"]:
            break
        await asyncio.sleep(0.01)
    assert (await api.get("/api/status")).json()["server"]["restarting"] is False


async def test_error_shape_for_unknown_routes_and_methods(api: httpx.AsyncClient) -> None:
    error = assert_error(await api.get("/api/nope"), 404, "NOT_FOUND")
    assert error["message"] == "no such endpoint"
    assert_error(await api.delete("/api/status"), 405, "METHOD_NOT_ALLOWED")
    assert_error(
        await api.post(
            "/api/generate/text2img",
            content=b"x" * 10,
            headers={"content-length": str(200 * 1024 * 1024)},
        ),
        413,
        "PAYLOAD_TOO_LARGE",
    )


async def test_request_ids_are_fresh_and_on_every_response(api: httpx.AsyncClient) -> None:
    first, second = await api.get("/api/status"), await api.get("/api/status")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    a, b = await api.get("/api/nope"), await api.get("/api/nope")
    assert a.json()["error"]["request_id"] != b.json()["error"]["request_id"]


async def test_unexpected_errors_are_500_internal_error(
    service: SdrestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[str]:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(service, "queue_snapshot", broken)
    transport = httpx.ASGITransport(app=TestUsers(create_app(service)), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        r = await http.get("/api/status")
    error = assert_error(r, 500, "INTERNAL_ERROR")
    assert "secret" not in r.text and error["message"] == "internal server error"


async def test_with_auth_on_public_and_protected_endpoints(
    tmp_path: Path, models_dir: Path
) -> None:
    from sdrest.settings import load_settings

    settings = load_settings(
        {
            "models_dir": str(models_dir),
            "data_dir": str(tmp_path / "data"),
            "auth_mode": "jwt",
            "jwt_secret": "s" * 40,
        },
        env={},
    )
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/api/status")).status_code == 200
            assert (await http.get("/api/version")).status_code == 200
            assert_error(await http.get("/api/models"), 401, "AUTH_REQUIRED")
            assert_error(await http.get("/api/queue/status"), 401, "AUTH_REQUIRED")
            assert_error(
                await http.post("/api/generate/text2img", json=text2img()), 401, "AUTH_REQUIRED"
            )
            bad = {"Authorization": "Bearer not-a-token"}
            assert_error(await http.get("/api/models", headers=bad), 401, "INVALID_CREDENTIALS")
            r = await http.get("/api/queue/job/job_1_ab/output/0.png")
            assert_error(r, 404, "JOB_NOT_FOUND")  # public: no 401 for downloads
