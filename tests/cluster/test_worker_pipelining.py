"""An engine worker on the shared queue pipelines like the single-engine runner: it claims and
runs the next job while the last one's images are written, and that job completes (under a lease
still renewed) only once its files are on disk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sdrest.jobs.cluster import ClusterRunner
from sdrest.schemas import ImgGenRequest
from sdrest.service import SdrestService
from tests.conftest import settings_in
from tests.fakes import FakeEngine
from tests.unit.test_pipelining import HeldWrites, holding_writes

TIMEOUT = 10.0
LEASE = 0.6


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldWrites]:
    with holding_writes(monkeypatch) as held:
        yield held


async def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_worker_runs_the_next_job_while_the_last_ones_images_are_written(
    tmp_path: Path, models_dir: Path, database_url: str, writes: HeldWrites
) -> None:
    settings = settings_in(
        tmp_path,
        models_dir,
        max_queue=8,
        engine_workers=1,
        database_url=database_url,
        heartbeat_seconds=0.2,
        lease_seconds=LEASE,
        affinity_wait=0.0,
    )
    engine = FakeEngine()
    service = SdrestService(settings, engine=engine)
    assert isinstance(service.runner, ClusterRunner)
    async with service:
        first = await service.submit(ImgGenRequest(prompt="a", seed=1))
        second = await service.submit(ImgGenRequest(prompt="b", seed=2))
        await writes.wait_entered()  # the first job's write is under way (and held)
        await _until(lambda: len(engine.calls) == 2)  # the worker claimed and ran the second
        # Held for several leases: only a renewed lease keeps the job from being requeued.
        await asyncio.sleep(3 * LEASE)
        held = await service.get(first.id)
        assert held.status == "generating"
        assert held.attempts == 1 and len(engine.calls) == 2  # never taken away and rerun
        writing = service.runner.workers[0].runner.live(first.id)
        assert writing is not None and writing.progress.phase == "encoding"
        assert not (tmp_path / "outputs" / first.id).exists()  # nothing written: not completed
        writes.gate.set()
        await service.runner.wait_done(second.id, TIMEOUT)
        await service.runner.wait_done(first.id, TIMEOUT)
        finals = [await service.get(job.id) for job in (first, second)]
    assert [job.status for job in finals] == ["completed", "completed"]
    for job in finals:
        assert job.result is not None and job.attempts == 1
        assert (tmp_path / "outputs" / job.id / job.result.images[0].filename).is_file()
