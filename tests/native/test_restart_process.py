"""``POST /api/system/restart`` under ``sdrest serve`` re-executes the process and keeps the queue:
jobs queued before the restart complete after it, under their ids."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from sdrest.testing import TinyModelSet
from tests.live import serve_process

pytestmark = [pytest.mark.native, pytest.mark.slow]


def _wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come back"
        time.sleep(0.1)


def test_restart_reexecs_and_keeps_the_queue(tiny_models: TinyModelSet, tmp_path: Path) -> None:
    with serve_process([sys.executable, "-m", "sdrest"], tiny_models, tmp_path / "data") as (
        process,
        url,
    ):
        body = {"prompt": "a lovely cat", "width": 64, "height": 64, "steps": 1, "seed": 1}
        ids = [
            httpx.post(f"{url}/api/generate/text2img", json=body, timeout=10).json()["job_id"]
            for _ in range(3)
        ]
        before = httpx.get(f"{url}/api/status", timeout=5).json()["server"]["uptime"]
        r = httpx.post(f"{url}/api/system/restart", timeout=10)
        assert r.status_code == 202 and r.json()["message"] == "Server restart initiated"
        assert r.json()["queued_jobs"] >= 1  # the first job is still loading the model
        time.sleep(1)  # the old server answers until it has stopped
        _wait_healthy(url)
        assert process.poll() is None  # exec keeps the process (and its pid)
        status = httpx.get(f"{url}/api/status", timeout=5).json()
        assert status["server"]["uptime"] < before + 1  # a new service: uptime starts again
        deadline = time.monotonic() + 60
        for job_id in ids:
            while True:
                job = httpx.get(f"{url}/api/queue/job/{job_id}", timeout=5).json()["job"]
                if job["status"] in ("completed", "failed", "cancelled"):
                    break
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
            assert job["status"] == "completed", job
    log = next((tmp_path).glob("server-*.log")).read_text()
    assert "re-executing" in log
