"""Failure behaviour with real processes: worker nodes are separate processes on one database."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sdrest.errors import RetryLaterError
from sdrest.jobs.cluster import ClusterRunner
from sdrest.schemas import ImgGenRequest, Job
from sdrest.schemas.request import SampleParams
from sdrest.service import SdrestService
from tests.cluster.postgres import PrivatePostgres
from tests.cluster.processes import stop_processes
from tests.conftest import settings_in
from tests.fakes import FakeEngine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]
STEP = 0.1
"""Seconds per fake step in the worker processes: a 10-step job runs about a second."""
FAST = {"lease_seconds": 1.5, "heartbeat_seconds": 0.3, "affinity_wait": 0.0}


class Nodes:
    """Worker node processes started by a test (killed at its end)."""

    def __init__(self, flags: dict[str, Any]) -> None:
        self.flags = flags
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, **extra: Any) -> subprocess.Popen[bytes]:
        flags = {**self.flags, "node_name": name, **extra}
        command = [sys.executable, "-m", "tests.cluster.fake_node", "worker"]
        proc = subprocess.Popen(
            [*command, json.dumps(flags), str(STEP)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        stop_processes(self.procs)


@pytest.fixture
async def api_node(
    tmp_path: Path, models_dir: Path, database_url: str
) -> AsyncIterator[tuple[SdrestService, Nodes]]:
    """An API node (no engines) in this process, and a way to start worker node processes
    that share its database, models and (shared storage) output folder."""
    flags = {
        "models_dir": str(models_dir),
        "data_dir": str(tmp_path / "data"),
        "output_dir": str(tmp_path / "outputs"),
        "database_url": database_url,
        **FAST,
    }
    settings = settings_in(
        tmp_path, models_dir, database_url=database_url, engine_workers=0, **FAST
    )
    nodes = Nodes(flags)
    try:
        async with SdrestService(settings, engine=FakeEngine()) as service:
            yield service, nodes
    finally:
        nodes.stop_all()


def _request(seed: int, *, steps: int) -> ImgGenRequest:
    return ImgGenRequest(prompt="x", seed=seed, sample_params=SampleParams(sample_steps=steps))


async def _status(service: SdrestService, job: Job, wanted: str, timeout: float = 20) -> Job:
    deadline = time.monotonic() + timeout
    while (now := await service.get(job.id)).status != wanted:
        assert time.monotonic() < deadline, f"{job.id} stayed {now.status}"
        await asyncio.sleep(0.05)
    return now


async def test_a_killed_worker_s_job_reruns_elsewhere_after_the_lease(
    api_node: tuple[SdrestService, Nodes],
) -> None:
    service, nodes = api_node
    doomed = nodes.start("doomed")
    async with service.events.subscribe() as events:
        job = await service.submit(_request(3, steps=10))
        other = await service.submit(_request(4, steps=1))
        await _status(service, job, "generating")
        progress = await asyncio.wait_for(_first_progress(events, job.id), 10)
    assert progress.progress.step >= 1  # a remote worker's progress reached this node
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    nodes.start("rescuer")
    done = await service.wait(job.id, 30)
    assert done.status == "completed" and done.attempts == 2, done
    assert done.result is not None and len(done.result.images) == 1
    assert (service.output_dir / job.id / done.result.images[0].filename).exists()
    assert (await service.wait(other.id, 10)).status == "completed"
    runner = service.runner
    assert isinstance(runner, ClusterRunner)
    names = {node.name for node in await runner.nodes()}
    assert "rescuer" in names and "doomed" not in names


async def _first_progress(events: asyncio.Queue[Any], job_id: str) -> Job:
    while True:
        event = await events.get()
        if event.job.id == job_id and event.type == "progress":
            return event.job  # type: ignore[no-any-return]


async def test_cancel_from_the_api_node_stops_a_remote_job_quickly(
    api_node: tuple[SdrestService, Nodes],
) -> None:
    service, nodes = api_node
    nodes.start("remote")
    job = await service.submit(_request(1, steps=100))
    await _status(service, job, "generating")
    deadline = time.monotonic() + 10
    while (preview := await service.preview_png(job)) is None:  # relayed from the worker
        assert time.monotonic() < deadline, "no preview reached the API node"
        await asyncio.sleep(0.05)
    assert preview[0] >= 1 and preview[1].startswith(b"\x89PNG")
    started = time.monotonic()
    ended = await service.cancel(job.id)
    assert ended.status == "cancelled", ended
    assert time.monotonic() - started < 2.0
    assert ended.error is not None and "while generating" in ended.error.message




async def test_a_database_restart_loses_no_job_and_answers_503_meanwhile(
    api_node: tuple[SdrestService, Nodes], postgres: tuple[str, PrivatePostgres | None]
) -> None:
    server = postgres[1]
    if server is None:
        pytest.skip("needs the private server (it is restarted): SDREST_TEST_DATABASE_URL is set")
    service, nodes = api_node
    nodes.start("survivor")
    running = await service.submit(_request(5, steps=15))
    waiting = await service.submit(_request(6, steps=1))
    await _status(service, running, "generating")
    await asyncio.to_thread(server.stop, "fast")
    try:
        with pytest.raises(RetryLaterError) as refused:
            await service.submit(_request(7, steps=1))
        assert refused.value.status == 503
        with pytest.raises(RetryLaterError):
            await service.list_jobs()
        await asyncio.sleep(0.5)
    finally:
        await asyncio.to_thread(server.start)
    finished = [await service.wait(job.id, 30) for job in (running, waiting)]
    assert [job.status for job in finished] == ["completed", "completed"], finished
    assert finished[0].attempts in (1, 2)  # re-run when the outage outlasted its lease
    late = await service.submit(_request(8, steps=1))  # the API node reconnected by itself
    assert (await service.wait(late.id, 20)).status == "completed"
