"""The job runner on its own (no service, no HTTP): FIFO order, the bound, cancel and stop, a
store that fails. Jobs are built by hand; the engine is the fake one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sdrest.engine.base import GenerationPlan, ModelSpec
from sdrest.errors import ConflictError, QueueFullError
from sdrest.jobs import EventBus, JobStore
from sdrest.jobs.events import JobEvent
from sdrest.jobs.runner import JobRunner
from sdrest.schemas import ImgGenRequest, Job, new_job
from sdrest.schemas.request import SampleParams
from tests.fakes import FakeEngine

TIMEOUT = 5.0


class Harness:
    """A runner over a fake engine and a real store, its consumer running."""

    def __init__(self, tmp_path: Path, engine: FakeEngine, capacity: int) -> None:
        self.engine = engine
        self.store = JobStore(tmp_path / "jobs.sqlite3")
        self.output_dir = tmp_path / "outputs"
        self.runner = JobRunner(
            capacity=capacity,
            events=EventBus(),
            store=self.store,
            output_dir=self.output_dir,
            models_dir=tmp_path / "models",
            idle_unload=0.0,
            after_convert=_nothing,
        )
        self.runner.attach(engine)
        self._consumer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.open()
        self._consumer = asyncio.create_task(self.runner.consume())

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        await self.store.close()

    async def submit(self, seed: int, *, steps: int = 2) -> Job:
        """Queue a 64x64 generation whose seed names it (the fake's calls show the order)."""
        job, plan = job_and_plan(seed, steps=steps)
        return await self.runner.enqueue(job, plan)

    async def running(self, job: Job) -> None:
        """Wait until ``job`` is the one the engine holds, every step reported."""
        await asyncio.wait_for(self.engine.holding.wait(), TIMEOUT)
        current = self.runner.current_job
        assert current is not None and current.id == job.id

    async def ended(self, job: Job) -> Job:
        """Wait for ``job`` to finish; its final record (from memory, else the store)."""
        await self.runner.wait_done(job.id, TIMEOUT)
        final = self.runner.live(job.id) or await self.store.get(job.id)
        assert final is not None and final.finished, final
        return final


async def _nothing() -> None:
    return None


def job_and_plan(seed: int, *, steps: int = 2, model: str = "tiny") -> tuple[Job, GenerationPlan]:
    request = ImgGenRequest(
        prompt=f"job {seed}",
        width=64,
        height=64,
        seed=seed,
        sample_params=SampleParams(sample_steps=steps),
    )
    job = new_job("img_gen", "alice", "sdcpp", model, request=request)
    return job, GenerationPlan(model=ModelSpec(name=model), request=request, seed=seed)


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.hold = asyncio.Event()
    return fake


@pytest.fixture
async def harness(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, engine, capacity=3)
    await h.start()
    yield h
    await h.stop()


def seeds(engine: FakeEngine) -> list[int]:
    return [plan.seed for plan in engine.calls]


# -- order and bound ---------------------------------------------------------------------------


async def test_jobs_run_one_at_a_time_in_fifo_order(harness: Harness, engine: FakeEngine) -> None:
    first = await harness.submit(1)
    await harness.running(first)
    second, third = await harness.submit(2), await harness.submit(3)
    assert harness.runner.queued_ids() == [second.id, third.id]
    assert [harness.runner.queue_position(j.id) for j in (first, second, third)] == [0, 1, 2]
    assert seeds(engine) == [1]  # the others wait while the first one is held
    assert engine.hold is not None
    engine.hold.set()
    finals = [await harness.ended(job) for job in (first, second, third)]
    assert seeds(engine) == [1, 2, 3]
    assert [job.status for job in finals] == ["completed"] * 3
    assert [job.result.images[0].seed for job in finals if job.result] == [1, 2, 3]
    completed = [job.completed or 0.0 for job in finals]
    assert completed == sorted(completed)
    assert harness.runner.queued_ids() == [] and harness.runner.current_job is None


async def test_a_full_queue_refuses_with_429_and_stores_nothing(harness: Harness) -> None:
    running = await harness.submit(1)
    await harness.running(running)  # taken off the queue: it no longer counts
    queued = [await harness.submit(seed) for seed in (2, 3, 4)]
    job, plan = job_and_plan(5)
    with pytest.raises(QueueFullError) as refused:
        await harness.runner.enqueue(job, plan)
    assert refused.value.status == 429 and refused.value.code == "queue_full"
    assert harness.runner.queued_ids() == [j.id for j in queued]
    assert harness.runner.live(job.id) is None and await harness.store.get(job.id) is None
    # A job recovered after a restart is never refused (it was accepted before).
    recovered, recovered_plan = job_and_plan(6)
    await harness.store.insert(recovered)
    await harness.runner.enqueue(recovered, recovered_plan, recovered=True)
    assert harness.runner.queued_ids()[-1] == recovered.id


# -- cancel and stop ---------------------------------------------------------------------------


async def test_cancel_a_queued_job(harness: Harness, engine: FakeEngine) -> None:
    running = await harness.submit(1)
    await harness.running(running)
    waiting = await harness.submit(2)
    after = await harness.submit(3)
    async with harness.runner.events.subscribe() as events:
        cancelled = await harness.runner.cancel(waiting)
        event = await asyncio.wait_for(events.get(), TIMEOUT)
    assert cancelled.status == "cancelled" and cancelled.error is not None
    assert cancelled.error.code == "cancelled"
    assert event.type == "state" and event.job.id == waiting.id
    assert event.job.status == "cancelled"
    assert harness.runner.queued_ids() == [after.id]
    stored = await harness.store.get(waiting.id)
    assert stored is not None and stored.status == "cancelled"
    await harness.runner.wait_done(waiting.id, 0)  # nothing left to wait for
    assert engine.hold is not None
    engine.hold.set()
    assert (await harness.ended(after)).status == "completed"
    assert seeds(engine) == [1, 3]  # the cancelled job never reached the engine
    again = await harness.runner.cancel(cancelled)  # cancelling a finished job changes nothing
    assert again.status == "cancelled" and again.error == cancelled.error


async def test_request_stop_aborts_a_generating_job(harness: Harness, engine: FakeEngine) -> None:
    running = await harness.submit(1)
    await harness.running(running)
    following = await harness.submit(2)
    await harness.runner.request_stop(running)
    assert engine.aborted.is_set()  # at once, before the next job may start (and clear it)
    stopped = await harness.ended(running)
    assert stopped.status == "cancelled" and stopped.error is not None
    assert stopped.error.code == "interrupted" and stopped.result is None
    assert not (harness.output_dir / running.id).exists()  # nothing written
    stored = await harness.store.get(running.id)
    assert stored is not None and stored.status == "cancelled"
    # The consumer moves on to the next job.
    await asyncio.wait_for(engine.holding.wait(), TIMEOUT)
    assert seeds(engine) == [1, 2]
    assert engine.hold is not None
    engine.hold.set()
    assert (await harness.ended(following)).status == "completed"


async def test_cancel_of_a_generating_job_stops_the_engine(
    harness: Harness, engine: FakeEngine
) -> None:
    running = await harness.submit(1)
    await harness.running(running)
    cancelled = await harness.runner.cancel(running)  # returns once the job has ended
    assert cancelled.status == "cancelled" and cancelled.error is not None
    assert cancelled.error.code == "cancelled" and "generating" in cancelled.error.message


async def test_an_engine_that_cannot_abort_refuses_cancel_and_ends_a_stop_as_cancelled(
    tmp_path: Path,
) -> None:
    engine = FakeEngine(abortable=False)
    engine.hold = asyncio.Event()
    harness = Harness(tmp_path, engine, capacity=3)
    await harness.start()
    try:
        running = await harness.submit(1)
        await harness.running(running)
        with pytest.raises(ConflictError) as refused:
            await harness.runner.cancel(running)
        assert refused.value.status == 409
        live = harness.runner.live(running.id)
        assert live is not None and live.status == "generating"
        assert not harness.runner.stop_requested(running.id)

        await harness.runner.request_stop(running)  # accepted: it ends when the call returns
        assert harness.runner.stop_requested(running.id)
        assert not engine.aborted.is_set()
        live = harness.runner.live(running.id)
        assert live is not None and live.status == "generating"
        engine.hold.set()  # the native call returns with its images
        stopped = await harness.ended(running)
        assert stopped.status == "cancelled" and stopped.error is not None
        assert stopped.error.code == "interrupted" and stopped.result is None
        assert not (harness.output_dir / running.id).exists()  # the images are discarded
        assert not harness.runner.stop_requested(running.id)
    finally:
        await harness.stop()


async def test_a_stop_for_a_queued_job_cancels_it(harness: Harness, engine: FakeEngine) -> None:
    running = await harness.submit(1)
    await harness.running(running)
    waiting = await harness.submit(2)
    stopped = await harness.runner.request_stop(waiting)
    assert stopped.status == "cancelled" and stopped.error is not None
    assert stopped.error.code == "cancelled"
    assert harness.runner.queued_ids() == [] and not engine.aborted.is_set()


# -- a store that fails ------------------------------------------------------------------------


async def _broken_insert(job: Job) -> None:
    raise OSError("disk full")


async def test_a_job_the_store_refuses_is_not_left_queued(
    harness: Harness, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await harness.submit(1)
    await harness.running(running)  # the consumer is busy: it cannot take the new job
    monkeypatch.setattr(harness.store, "insert", _broken_insert)
    job, plan = job_and_plan(2)
    async with harness.runner.events.subscribe() as events:
        with pytest.raises(OSError, match="disk full"):
            await harness.runner.enqueue(job, plan)
        seen: list[JobEvent] = []
        while not events.empty():
            seen.append(events.get_nowait())
    assert harness.runner.queued_ids() == [] and harness.runner.queue_position(job.id) == 0
    assert harness.runner.live(job.id) is None
    await harness.runner.wait_done(job.id, 0)  # nobody waits forever for it
    # Whoever streamed the job saw it accepted, then failed.
    assert [(e.job.id, e.job.status) for e in seen] == [(job.id, "queued"), (job.id, "failed")]
    assert seen[-1].job.error is not None and seen[-1].job.error.code == "store_failed"
    monkeypatch.undo()
    # Its place in the queue is free again: three more fit.
    more = [await harness.submit(seed) for seed in (3, 4, 5)]
    assert harness.runner.queued_ids() == [j.id for j in more]
    assert engine.hold is not None
    engine.hold.set()
    for queued in more:
        assert (await harness.ended(queued)).status == "completed"
    assert seeds(engine) == [1, 3, 4, 5]  # the refused job never ran


async def test_a_job_the_store_refuses_never_runs_even_on_an_idle_engine(
    harness: Harness, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real store's insert awaits its thread, and the consumer is idle: the insert fails
    only after the consumer had its chance to take the job."""
    assert engine.hold is not None
    engine.hold.set()

    async def slow_broken_insert(job: Job) -> None:
        with contextlib.suppress(TimeoutError):  # a fixed runner never starts it: give up
            await asyncio.wait_for(engine.started.wait(), 0.5)
        raise OSError("disk full")

    monkeypatch.setattr(harness.store, "insert", slow_broken_insert)
    job, plan = job_and_plan(2)
    with pytest.raises(OSError, match="disk full"):
        await harness.runner.enqueue(job, plan)
    monkeypatch.undo()
    later = await harness.submit(3)
    assert (await harness.ended(later)).status == "completed"
    assert seeds(engine) == [3]  # the job whose enqueue raised must not have run
    assert not (harness.output_dir / job.id).exists()
    live = harness.runner.live(job.id)
    assert live is None or live.status == "failed", live


# -- readers get copies ------------------------------------------------------------------------


async def test_readers_get_copies_that_never_change_under_them(
    harness: Harness, engine: FakeEngine
) -> None:
    """The runner mutates its own records; a job it handed out is a snapshot."""
    queued = await harness.submit(1)
    seen_queued = harness.runner.live(queued.id)
    assert seen_queued is not None and seen_queued is not queued
    await harness.running(queued)
    current = harness.runner.current_job
    assert current is not None and current.status == "generating"
    assert queued.status == seen_queued.status == "queued"  # the earlier copies did not move
    assert engine.hold is not None
    engine.hold.set()
    final = await harness.ended(queued)
    assert final.status == "completed" and current.status == "generating"
    assert harness.runner.live(queued.id) is not harness.runner.live(queued.id)
