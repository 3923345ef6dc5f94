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
from sdrest.schemas.request import SampleParams
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.conftest import settings_in
from tests.fakes import FakeEngine
from tests.unit.test_pipelining import HeldWrites, holding_writes

TIMEOUT = 10.0
LEASE = 0.6


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldWrites]:
    with holding_writes(monkeypatch) as held:
        yield held


def _one_worker(tmp_path: Path, models_dir: Path, database_url: str) -> Settings:
    """One engine worker on the PostgreSQL queue, with short leases and heartbeats."""
    return settings_in(
        tmp_path,
        models_dir,
        max_queue=8,
        engine_workers=1,
        database_url=database_url,
        heartbeat_seconds=0.2,
        lease_seconds=LEASE,
        affinity_wait=0.0,
    )


async def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_worker_runs_the_next_job_while_the_last_ones_images_are_written(
    tmp_path: Path, models_dir: Path, database_url: str, writes: HeldWrites
) -> None:
    settings = _one_worker(tmp_path, models_dir, database_url)
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


async def test_a_worker_claims_the_jobs_that_share_its_jobs_native_call(
    tmp_path: Path, models_dir: Path, database_url: str
) -> None:
    settings = _one_worker(tmp_path, models_dir, database_url)
    engine = FakeEngine()
    engine.hold = asyncio.Event()
    async with SdrestService(settings, engine=engine) as service:
        blocker = await service.submit(_small("blocker", 1))
        await asyncio.wait_for(engine.holding.wait(), TIMEOUT)
        jobs = [await service.submit(_small("a cat", seed)) for seed in (12, 10, 11)]
        other = await service.submit(_small("a dog", 13))
        engine.hold.set()
        for job in (blocker, *jobs, other):
            await service.runner.wait_done(job.id, TIMEOUT)
        finals = [await service.get(job.id) for job in (*jobs, other)]
    # 12 was claimed first (the oldest), then 10 and 11 would not continue its batch: 12 ran
    # alone; 10 claimed 11 with it. The dog never shared a call.
    calls = [(call.seed, call.request.batch_count, call.request.prompt) for call in engine.calls]
    assert calls == [(1, 1, "blocker"), (12, 1, "a cat"), (10, 2, "a cat"), (13, 1, "a dog")]
    assert [job.status for job in finals] == ["completed"] * 4
    assert [[ref.seed for ref in job.result.images] for job in finals if job.result] == [
        [12],
        [10],
        [11],
        [13],
    ]
    assert all(job.attempts == 1 for job in finals)


def _small(prompt: str, seed: int) -> ImgGenRequest:
    """Small enough to coalesce (see sdrest/jobs/coalesce.py, MAX_WORK)."""
    steps = SampleParams(sample_steps=2)
    return ImgGenRequest(prompt=prompt, width=64, height=64, seed=seed, sample_params=steps)
