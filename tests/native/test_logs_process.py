"""``sdrest serve --log-format json`` as a real process: every line it writes (uvicorn's, ours,
the worker's) is one JSON object, with an access line per request and the job's id on the job's
lines."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sdrest.testing import TinyModelSet
from tests.live import serve_process

pytestmark = pytest.mark.native

QUICK = {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 1}}


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the server's output, each parsed as JSON (a line that is not fails)."""
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            assert {"time", "level", "logger", "message"} <= set(entry), line
            entries.append(entry)
    return entries


def access_line(entries: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    (line,) = [
        e for e in entries if e["logger"] == "sdrest.access" and e.get("request_id") == request_id
    ]
    return line


def test_json_logs(tiny_models: TinyModelSet, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    flags = ["--log-format", "json", "--log-level", "info"]
    with serve_process([sys.executable, "-m", "sdrest"], tiny_models, data_dir, extra=flags) as (
        process,
        url,
    ):
        ok = httpx.get(f"{url}/api/health", timeout=10)
        error = httpx.get(f"{url}/api/queue/job/job_1_ab", timeout=10)
        created = httpx.post(f"{url}/sdcpp/v1/img_gen", json=QUICK, timeout=10)
        job_id = created.json()["id"]
        done = httpx.get(f"{url}/sdcpp/v1/jobs/{job_id}", params={"wait": 60}, timeout=70)
        assert done.json()["status"] == "completed", done.text
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        process.send_signal(signal.SIGINT)  # a graceful stop: uvicorn's shutdown lines too
        process.wait(timeout=60)
        port = url.rsplit(":", 1)[1]
    entries = read_lines(tmp_path / f"server-{port}.log")

    # uvicorn's own lines share the format and the level; its access log is replaced by ours.
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    assert not any(e["logger"] == "uvicorn.access" for e in entries)

    line = access_line(entries, ok.headers["x-request-id"])
    assert (line["method"], line["route"], line["status"]) == ("GET", "/api/health", 200)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["time"].endswith("Z")

    request_id = error.headers["x-request-id"]
    assert error.status_code == 404 and error.json()["error"]["request_id"] == request_id
    line = access_line(entries, request_id)
    assert (line["route"], line["path"], line["status"]) == (
        "/api/queue/job/{job_id}",
        "/api/queue/job/job_1_ab",
        404,
    )

    line = access_line(entries, created.headers["x-request-id"])
    assert (line["route"], line["status"]) == ("/sdcpp/v1/img_gen", 202)
    job_lines = [e for e in entries if e.get("job_id") == job_id]
    messages = " | ".join(e["message"] for e in job_lines)
    assert f"job {job_id} started" in messages and f"job {job_id} completed" in messages
    # The worker's lines while it ran the job (the model load) carry the job's id too.
    assert any(e["logger"].startswith("sdrest.engine") for e in job_lines), messages
    # A job runs outside any request: its lines name no request.
    assert not any("request_id" in e for e in job_lines)

    # The real engine's worker, in the metrics.
    samples = {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert samples["sdrest_engine_worker_starts_total[]"] == 1
    assert samples["sdrest_engine_worker_crashes_total[]"] == 0
    assert samples["sdrest_model_loads_total[('model', 'tiny-flux2')]"] == 1
    assert samples["sdrest_step_duration_seconds_count[('model', 'tiny-flux2')]"] == 1
