"""``sdrest serve`` as a real process: killed with SIGKILL mid-queue, it leaves no worker behind,
and the next start accounts for every accepted job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdrest.testing import TinyModelSet
from tests.live import serve_process

pytestmark = pytest.mark.native

QUICK = {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 1}}
SLOW = {"prompt": "a cat", "width": 256, "height": 256, "sample_params": {"sample_steps": 24}}


@contextmanager
def served(models: TinyModelSet, data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``sdrest serve`` from this environment, in its own process."""
    with serve_process([sys.executable, "-m", "sdrest"], models, data_dir) as served_pair:
        yield served_pair


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is dead
    except (ProcessLookupError, FileNotFoundError):
        return False


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _job(url: str, job_id: str, wait: float = 0) -> dict[str, Any]:
    r = httpx.get(f"{url}/sdcpp/v1/jobs/{job_id}", params={"wait": wait}, timeout=wait + 10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _worker_pid(url: str) -> int:
    pid = httpx.get(f"{url}/api/system", timeout=10).json()["system"]["engine"]["worker_pid"]
    assert isinstance(pid, int)
    return pid


def test_sigkill_mid_queue_leaves_no_worker_and_loses_no_job(
    tiny_models: TinyModelSet, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    with served(tiny_models, data_dir) as (server, url):
        submit = f"{url}/sdcpp/v1/img_gen"
        running = httpx.post(submit, json=SLOW, timeout=10).json()["id"]
        queued = [
            httpx.post(submit, json={**QUICK, "seed": s}, timeout=10).json()["id"] for s in (1, 2)
        ]
        deadline = time.monotonic() + 60
        while (job := _job(url, running))["progress"]["step"] < 1:
            assert job["status"] in ("queued", "generating") and time.monotonic() < deadline
            time.sleep(0.05)
        worker = _worker_pid(url)
        assert _alive(worker)
        server.send_signal(signal.SIGKILL)
        server.wait()
        assert _wait_gone(worker, 3.0), "the worker outlived the server"

    with served(tiny_models, data_dir) as (_, url):
        for job_id in [running, *queued]:
            job = _job(url, job_id, wait=60)
            assert job["status"] == "completed", job  # the interrupted one was retried
            assert job["result"]["images"], job


def test_ctrl_c_stops_the_server_and_its_worker_and_only_the_worker_loads_the_library(
    tiny_models: TinyModelSet, tmp_path: Path
) -> None:
    with served(tiny_models, tmp_path / "data") as (server, url):
        done = _job(url, httpx.post(f"{url}/sdcpp/v1/img_gen", json=QUICK).json()["id"], wait=60)
        assert done["status"] == "completed", done
        worker = _worker_pid(url)
        # The native library is mapped in the worker only: the server never imports it.
        assert "libstable-diffusion" in Path(f"/proc/{worker}/maps").read_text()
        assert "libstable-diffusion" not in Path(f"/proc/{server.pid}/maps").read_text()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 130  # the shell's code for Ctrl-C, after a clean stop
        assert _wait_gone(worker, 3.0)
    log = next(tmp_path.glob("server-*.log")).read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log
