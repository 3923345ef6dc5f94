"""``sdrest worker``: the command itself, as a real process."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from sdrest.cli import main
from sdrest.jobs.store_pg import PgJobStore


def test_worker_needs_a_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--models-dir", "."]) == 2
    assert "--database-url" in capsys.readouterr().err


@pytest.mark.slow
async def test_a_worker_node_heartbeats_and_leaves_cleanly(
    database_url: str, tmp_path: Path, models_dir: Path
) -> None:
    command = [sys.executable, "-m", "sdrest", "worker", "--database-url", database_url]
    command += ["--models-dir", str(models_dir), "--data-dir", str(tmp_path / "data")]
    command += ["--node-name", "gpu-box", "--engine-workers", "2", "--heartbeat-seconds", "0.2"]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    store = PgJobStore(database_url)
    try:
        await store.open()
        deadline = time.monotonic() + 30
        while not (nodes := await store.nodes(within=5)):
            assert proc.returncode is None, "the worker exited"
            assert time.monotonic() < deadline, "no heartbeat"
            await asyncio.sleep(0.1)
        (node,) = nodes
        assert node.name == "gpu-box" and node.role == "worker"
        assert [w.name for w in node.workers] == ["gpu-box/0", "gpu-box/1"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert await store.nodes(within=5) == []  # it said goodbye
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await store.close()
