"""Queue pipelining: a job's images are encoded and written while the engine already runs the
next job, and the job is completed only once its files are on disk. The engine is the fake one;
the write is held on a thread event so each state can be looked at."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sdrest import outputs
from sdrest.jobs import EventBus, JobStore
from sdrest.jobs.events import JobEvent
from sdrest.jobs.runner import JobRunner
from sdrest.schemas import Job
from tests.fakes import FakeEngine
from tests.unit.test_runner import TIMEOUT, job_and_plan


class HeldWrites:
    """``outputs.write_images`` that waits for :meth:`release` (in its thread), and can fail."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.fail_for: set[str] = set()

    def __call__(self, output_dir: Path, job_id: str, *args: Any) -> Any:
        self.entered.release()
        if not self.gate.wait(TIMEOUT):
            raise TimeoutError("write never released")
        if job_id in self.fail_for:
            raise OSError("disk full")
        return self._real(output_dir, job_id, *args)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.acquire, True, TIMEOUT)


@contextlib.contextmanager
def holding_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldWrites]:
    """``outputs.write_images`` held (see :class:`HeldWrites`) until the block ends."""
    held = HeldWrites(outputs.write_images)
    monkeypatch.setattr(outputs, "write_images", held)
    try:
        yield held
    finally:
        held.gate.set()  # never leave a thread waiting


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldWrites]:
    with holding_writes(monkeypatch) as held:
        yield held


@pytest.fixture
async def runner(tmp_path: Path) -> AsyncIterator[tuple[JobRunner, FakeEngine, asyncio.Task[None]]]:
    store = JobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    runner = JobRunner(
        capacity=8,
        events=EventBus(),
        store=store,
        output_dir=tmp_path / "outputs",
        models_dir=tmp_path / "models",
        idle_unload=0.0,
        after_convert=_nothing,
    )
    engine = FakeEngine()
    runner.attach(engine)
    consumer = asyncio.create_task(runner.consume())
    yield runner, engine, consumer
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await store.close()


async def _nothing() -> None:
    return None


async def _submit(runner: JobRunner, seed: int) -> Job:
    job, plan = job_and_plan(seed)
    return await runner.enqueue(job, plan)


async def _until(condition: Any) -> None:
    for _ in range(int(TIMEOUT * 1000)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never met")


async def test_the_next_job_generates_while_the_previous_ones_images_are_written(
    runner: tuple[JobRunner, FakeEngine, asyncio.Task[None]], writes: HeldWrites, tmp_path: Path
) -> None:
    jobs_runner, engine, _ = runner
    seen: dict[str, list[JobEvent]] = collections.defaultdict(list)
    jobs_runner.events.listen(lambda event: seen[event.job.id].append(event))
    first, second = await _submit(jobs_runner, 1), await _submit(jobs_runner, 2)
    await writes.wait_entered()  # the first job's write is under way (and held)
    await _until(lambda: len(engine.calls) == 2)  # the engine went on to the second job
    held = jobs_runner.live(first.id)
    assert held is not None and held.status == "generating" and held.progress.phase == "encoding"
    assert ("progress", "encoding") in [(e.type, e.job.progress.phase) for e in seen[first.id]]
    assert not (tmp_path / "outputs" / first.id).exists()  # nothing written: not completed
    # The second job waits for the first one's write: jobs complete in queue order.
    await asyncio.sleep(0.05)
    later = jobs_runner.live(second.id)
    assert later is not None and later.status == "generating"
    writes.gate.set()
    await jobs_runner.wait_done(second.id, TIMEOUT)
    finals = [jobs_runner.live(j.id) for j in (first, second)]
    assert [j.status for j in finals if j] == ["completed", "completed"]
    assert finals[0] and finals[1] and (finals[0].completed or 0) <= (finals[1].completed or 0)
    for job in finals:
        assert job and job.result
        assert (tmp_path / "outputs" / job.id / job.result.images[0].filename).is_file()


async def test_a_failed_write_fails_its_job_only(
    runner: tuple[JobRunner, FakeEngine, asyncio.Task[None]], writes: HeldWrites
) -> None:
    jobs_runner, _, _ = runner
    first = await _submit(jobs_runner, 1)
    writes.fail_for.add(first.id)
    second = await _submit(jobs_runner, 2)
    writes.gate.set()
    await jobs_runner.wait_done(second.id, TIMEOUT)
    failed, done = jobs_runner.live(first.id), jobs_runner.live(second.id)
    assert failed and failed.status == "failed" and failed.error
    assert failed.error.code == "internal_error" and "disk full" in failed.error.message
    assert done and done.status == "completed"


async def test_cancel_while_written_leaves_the_next_job_alone_and_answers_once_it_ended(
    runner: tuple[JobRunner, FakeEngine, asyncio.Task[None]], writes: HeldWrites
) -> None:
    jobs_runner, engine, _ = runner
    first = await _submit(jobs_runner, 1)
    await writes.wait_entered()
    engine.hold = asyncio.Event()  # the second job stays on the engine
    second = await _submit(jobs_runner, 2)
    await asyncio.wait_for(engine.holding.wait(), TIMEOUT)
    current = jobs_runner.current_job
    assert current is not None and current.id == second.id
    cancel = asyncio.create_task(jobs_runner.cancel(await _record(jobs_runner, first)))
    await asyncio.sleep(0.05)
    assert not cancel.done()  # it waits for the write: the images were made already
    assert not engine.aborted.is_set()  # the engine's job is not the one cancelled
    writes.gate.set()
    answered = await asyncio.wait_for(cancel, TIMEOUT)
    assert answered.status == "completed"  # as before: a stop after the engine is too late
    engine.hold.set()
    await jobs_runner.wait_done(second.id, TIMEOUT)
    final = jobs_runner.live(second.id)
    assert final and final.status == "completed"


async def test_stopping_the_consumer_lets_the_job_being_written_complete(
    runner: tuple[JobRunner, FakeEngine, asyncio.Task[None]], writes: HeldWrites
) -> None:
    jobs_runner, _, consumer = runner
    first = await _submit(jobs_runner, 1)
    await writes.wait_entered()
    consumer.cancel()
    await asyncio.sleep(0.02)
    assert not consumer.done()  # waiting for the write
    writes.gate.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(consumer, TIMEOUT)
    stored = await jobs_runner.store.get(first.id)
    assert stored is not None and stored.status == "completed"


async def _record(runner: JobRunner, job: Job) -> Job:
    live = runner.live(job.id)
    assert live is not None
    return live
