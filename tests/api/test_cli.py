"""The ``sdrest`` command: serve starts and answers health; models lists the registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sdrest.cli import _is_loopback, main
from tests.live import free_port

pytestmark = pytest.mark.slow  # starts processes or servers: scripts/test runs it


def test_serve_starts_healthy_and_stops(models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STABLE_DIFFUSION_PORT": str(port), "SDREST_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdrest", "serve", "--models-dir", str(models_dir)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not become healthy"
                time.sleep(0.05)
        assert health["status"] == "healthy" and health["model_loaded"] is False
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after a graceful shutdown, hence -SIGTERM.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert proc.stderr is not None and "Application shutdown complete" in proc.stderr.read()
    assert (tmp_path / "sdrest.sqlite3").exists()


def test_models_lists_the_registry(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--models-dir", str(models_dir), "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["tiny"]["architecture"] == "flux2" and listed["tiny"]["role"] == "checkpoint"
    assert listed["style"]["type"] == "lora"


def test_bad_config_is_a_clean_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback
