"""N engine workers on one node, claiming from the database: SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from sdrest.app import create_app
from sdrest.engine.supervisor import WorkerEngine
from sdrest.jobs.cluster import ClusterRunner, pin_device
from sdrest.jobs.workers import worker_settings
from sdrest.schemas import ImgGenRequest
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.conftest import settings_in
from tests.fakes import FakeEngine

TIMEOUT = 10.0


class Engines:
    """The fake engines the service's workers got, in creation order."""

    def __init__(self) -> None:
        self.made: list[FakeEngine] = []
        self.hold = asyncio.Event()

    def make(self, settings: Settings | None = None) -> FakeEngine:
        engine = FakeEngine()
        engine.hold = self.hold
        self.made.append(engine)
        return engine


@pytest.fixture(params=["sqlite", "postgresql"])
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, models_dir: Path
) -> AsyncIterator[tuple[SdrestService, Engines]]:
    url = request.getfixturevalue("database_url") if request.param == "postgresql" else ""
    settings = settings_in(
        tmp_path,
        models_dir,
        max_queue=8,
        engine_workers=2,
        database_url=url or None,
        heartbeat_seconds=0.2,
        lease_seconds=3.0,
        affinity_wait=0.0,
    )
    engines = Engines()
    service = SdrestService(settings, engine=engines.make())
    assert isinstance(service.runner, ClusterRunner)
    service.runner.engine_factory = engines.make
    async with service:
        yield service, engines


async def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_two_engines_run_two_jobs_at_once_in_fifo_order(
    cluster: tuple[SdrestService, Engines],
) -> None:
    service, engines = cluster
    jobs = [await service.submit(ImgGenRequest(prompt=f"p{n}", seed=n)) for n in range(3)]
    await _until(lambda: all(e.holding.is_set() for e in engines.made))
    assert len(engines.made) == 2  # one engine per worker
    running = {e.calls[0].seed for e in engines.made}
    assert running == {0, 1}  # the two oldest, one on each engine
    third = await service.get(jobs[2].id)
    assert third.status == "queued" and service.queue_position(jobs[2].id) == 1
    snapshot = service.queue_snapshot()
    assert snapshot.current is not None and [j.id for j in snapshot.queued] == [jobs[2].id]
    engines.hold.set()
    done = [await service.wait(job.id, TIMEOUT) for job in jobs]
    assert [j.status for j in done] == ["completed"] * 3
    assert all(j.attempts == 1 and j.result is not None for j in done)
    assert sum(len(e.calls) for e in engines.made) == 3  # each job ran exactly once


async def test_cancel_queued_and_running_jobs(cluster: tuple[SdrestService, Engines]) -> None:
    service, engines = cluster
    first = await service.submit(ImgGenRequest(prompt="a", seed=1))
    second = await service.submit(ImgGenRequest(prompt="b", seed=2))
    third = await service.submit(ImgGenRequest(prompt="c", seed=3))
    await _until(lambda: sum(e.holding.is_set() for e in engines.made) == 2)
    queued = await service.cancel(third.id)
    assert queued.status == "cancelled" and queued.error is not None
    assert queued.error.code == "cancelled"
    stopped = await service.cancel(first.id)
    assert stopped.status == "cancelled", stopped
    assert stopped.error is not None and "while generating" in stopped.error.message
    interrupted = await service.request_stop(second.id, wait=True)
    assert interrupted.status == "cancelled" and interrupted.error is not None
    assert interrupted.error.code == "interrupted"
    assert (await service.get(third.id)).status == "cancelled"


async def test_events_show_each_state_once_and_nodes_are_listed(
    cluster: tuple[SdrestService, Engines],
) -> None:
    service, engines = cluster
    engines.hold.set()
    async with service.events.subscribe() as events:
        job = await service.submit(ImgGenRequest(prompt="x", seed=5))
        await service.wait(job.id, TIMEOUT)
        seen: list[str] = []
        while not events.empty():
            event = events.get_nowait()
            if event.job.id == job.id and event.type == "state":
                seen.append(event.job.status)
    assert seen[0] == "queued" and seen[-1] == "completed" and seen.count("completed") == 1
    runner = service.runner
    assert isinstance(runner, ClusterRunner)
    await runner.maintain_once()
    (node,) = await runner.nodes()
    assert node.name == runner.node.name and len(node.workers) == 2
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        health = (await http.get("/api/health")).json()
        system = (await http.get("/api/system")).json()
    assert health["nodes"] == 1 and health["engine_workers"] == 2
    (shown,) = system["nodes"]
    assert shown["name"] == node.name and shown["role"] == "api+worker"
    assert [w["name"] for w in shown["workers"]] == [f"{node.name}/0", f"{node.name}/1"]
    assert shown["heartbeat"] > 0 and "database_url" not in (await _config(service))


async def _config(service: SdrestService) -> str:
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return (await http.get("/api/config")).text


def test_local_workers_split_the_threads_and_pin_their_device(
    tmp_path: Path, models_dir: Path
) -> None:
    settings = settings_in(tmp_path, models_dir, threads=8, engine_workers=2)
    assert [worker_settings(settings, i, 2).load.threads for i in (0, 1)] == [4, 4]
    assert worker_settings(settings, 0, 1) is settings  # one worker keeps every thread
    engine = WorkerEngine()
    pin_device(engine, "1")
    assert engine.env["CUDA_VISIBLE_DEVICES"] == "1"
