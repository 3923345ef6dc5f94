"""Coalescing: waiting txt2img jobs that differ only in their seeds share one engine call.

The choice of partners and the progress routing are tested as plain functions; the runner's side
(the one call, each job's own images, a stop in the middle) over the fake engine, whose images'
red channel is their seed. The real library's images are compared with single calls in
tests/native/test_coalesce_native.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from PIL import Image

from sdrest.engine.base import GenerationPlan, ModelSpec
from sdrest.jobs import coalesce
from sdrest.schemas import HiresParams, ImgGenRequest, Job, Progress, SampleParams
from sdrest.schemas.job import new_job
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.fakes import FakeEngine
from tests.unit.test_runner import TIMEOUT, Harness


def plan(
    seed: int, *, prompt: str = "a cat", images: int = 1, steps: int = 2, side: int = 64
) -> GenerationPlan:
    request = ImgGenRequest(
        prompt=prompt,
        width=side,
        height=side,
        seed=seed,
        batch_count=images,
        sample_params=SampleParams(sample_steps=steps),
    )
    return GenerationPlan(model=ModelSpec(name="tiny"), request=request, seed=seed)


# -- choosing partners -------------------------------------------------------------------------


def test_partners_are_the_jobs_whose_seeds_continue_the_batch_in_any_queue_order() -> None:
    waiting = [("c", plan(12)), ("b", plan(11)), ("d", plan(13)), ("far", plan(20))]
    assert coalesce.partners(plan(10), waiting) == ["b", "c", "d"]


def test_a_job_with_several_images_moves_the_next_seed_by_its_count() -> None:
    waiting: list[tuple[str, GenerationPlan | None]] = [("b", plan(11)), ("c", plan(12))]
    assert coalesce.partners(plan(10, images=2), waiting) == ["c"]


def test_the_run_ends_at_the_first_job_that_asks_for_something_else() -> None:
    different = plan(12, prompt="a dog")
    assert coalesce.partners(plan(10), [("b", plan(11)), ("x", different), ("c", plan(12))]) == [
        "b"
    ]
    # A job that cannot coalesce at all (None) ends the run the same way.
    assert coalesce.partners(plan(10), [("x", None), ("b", plan(11))]) == []
    assert coalesce.partners(plan(10), [("b", plan(11, steps=3))]) == []


def test_a_call_stays_within_the_image_and_work_limits() -> None:
    many = [(str(seed), plan(seed)) for seed in range(11, 41)]
    assert len(coalesce.partners(plan(10), many)) == coalesce.MAX_IMAGES - 1
    large = [("b", plan(11, side=512, steps=16))]
    assert coalesce.partners(plan(10, side=512, steps=16), large) == []


def test_plans_with_input_images_or_a_second_pass_never_coalesce() -> None:
    assert coalesce.eligible(plan(1))
    with_init = dataclasses.replace(plan(1), init_image=Image.new("RGB", (64, 64)))
    assert not coalesce.eligible(with_init)
    plain = plan(1)
    hires = msgspec.structs.replace(plain.request, hires=HiresParams(enabled=True))
    assert not coalesce.eligible(dataclasses.replace(plain, request=hires))
    assert not coalesce.eligible(object())


def test_the_batch_plan_counts_every_image_and_split_hands_them_back_in_order() -> None:
    plans = [plan(10, images=2), plan(12), plan(13, images=3)]
    batch = coalesce.batch_plan(plans)
    assert batch.seed == 10 and batch.request.batch_count == 6
    images = [Image.new("RGB", (1, 1), (i, 0, 0)) for i in range(6)]
    shares = coalesce.split(images, plans)
    assert [[img.getpixel((0, 0))[0] for img in share] for share in shares] == [  # type: ignore[index]
        [0, 1],
        [2],
        [3, 4, 5],
    ]


def test_progress_goes_to_the_job_whose_image_is_sampled() -> None:
    seen: dict[str, list[tuple[str, int]]] = {"a": [], "b": [], "c": []}
    current: list[str] = []

    def member(job_id: str, images: int) -> coalesce.Member:
        return coalesce.Member(
            job_id,
            images,
            lambda p: seen[job_id].append((p.phase, p.step)),
            lambda step, _img: seen[job_id].append(("preview", step)),
        )

    router = coalesce.ProgressRouter(
        [member("a", 2), member("b", 1), member("c", 1)], current.append
    )
    router.on_progress(Progress("loading"))
    for _image in range(4):  # the library reports 0, then 1..steps, for each image
        for step in (0, 1, 2):
            router.on_progress(Progress("sampling", step, 2))
        router.on_preview(2, Image.new("RGB", (1, 1)))
    router.on_progress(Progress("sampling", 1, 3))  # a tiled decode after the last image
    one_image = [("sampling", 0), ("sampling", 1), ("sampling", 2), ("preview", 2)]
    assert seen["a"] == [("loading", 0), *one_image, *one_image]
    assert seen["b"] == [("loading", 0), *one_image]
    assert seen["c"] == [("loading", 0), *one_image, ("sampling", 1)]
    assert current == ["a", "b", "c", "c"]
    assert router.current.job_id == "c"


# -- the runner --------------------------------------------------------------------------------


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    engine = FakeEngine()
    engine.hold = asyncio.Event()
    h = Harness(tmp_path, engine, capacity=10)
    await h.start()
    yield h
    await h.stop()


async def _submit(harness: Harness, seed: int, prompt: str = "a cat") -> Job:
    the_plan = plan(seed, prompt=prompt)
    job = new_job("img_gen", "alice", "sdcpp", "tiny", request=the_plan.request)
    return await harness.runner.enqueue(job, the_plan)


async def _blocked(harness: Harness) -> Job:
    """A job (its own prompt) that holds the engine while the test queues the others."""
    blocker = await _submit(harness, 999, prompt="blocker")
    await harness.running(blocker)
    return blocker


def _calls(engine: FakeEngine) -> list[tuple[int, int]]:
    """(seed, images) of each engine call."""
    return [(call.seed, call.request.batch_count) for call in engine.calls]


def _red(harness: Harness, job: Job) -> list[int]:
    assert job.result is not None, job.error
    return [
        Image.open(harness.output_dir / job.id / ref.filename).getpixel((0, 0))[0]  # type: ignore[index]
        for ref in job.result.images
    ]


async def test_waiting_jobs_with_following_seeds_run_as_one_call_and_keep_their_own_images(
    harness: Harness,
) -> None:
    engine = harness.engine
    blocker = await _blocked(harness)
    a, c, b = await _submit(harness, 10), await _submit(harness, 12), await _submit(harness, 11)
    other = await _submit(harness, 13, prompt="a dog")
    after = await _submit(harness, 13)  # behind a different job: never moved ahead of it
    assert engine.hold is not None
    engine.hold.set()
    finals = [await harness.ended(job) for job in (blocker, a, b, c, other, after)]
    assert [(p.seed, p.request.batch_count, p.request.prompt) for p in engine.calls] == [
        (999, 1, "blocker"),
        (10, 3, "a cat"),
        (13, 1, "a dog"),
        (13, 1, "a cat"),
    ]
    assert [job.status for job in finals] == ["completed"] * 6
    for job, seed in zip(finals[1:4], (10, 11, 12), strict=True):
        assert job.result is not None and [ref.seed for ref in job.result.images] == [seed]
        assert _red(harness, job) == [seed]  # the fake's colour is the seed: the right share
        assert job.progress.step == 2 and job.progress.steps == 2 and job.attempts == 1


async def test_stopping_one_coalesced_job_aborts_the_call_and_requeues_the_others(
    harness: Harness,
) -> None:
    engine = harness.engine
    blocker = await _blocked(harness)
    a, b, c = [await _submit(harness, seed) for seed in (10, 11, 12)]
    assert engine.hold is not None
    engine.hold.set()
    engine.hold = asyncio.Event()  # the coalesced call holds in its turn
    await harness.ended(blocker)
    await asyncio.wait_for(engine.holding.wait(), TIMEOUT)
    assert engine.calls[-1].request.batch_count == 3
    assert all(
        (live := harness.runner.live(job.id)) is not None and live.status == "generating"
        for job in (a, b, c)
    )
    cancelled = await harness.runner.cancel(b)
    assert cancelled.status == "cancelled"
    engine.hold.set()
    finals = [await harness.ended(job) for job in (a, c)]
    assert [job.status for job in finals] == ["completed", "completed"]
    assert [_red(harness, job) for job in finals] == [[10], [12]]
    assert [job.attempts for job in finals] == [1, 1]  # the stopped call was not their attempt
    # 10 and 12 no longer follow one another: each ran alone after the stopped call.
    assert [(p.seed, p.request.batch_count) for p in engine.calls[1:]] == [
        (10, 3),
        (10, 1),
        (12, 1),
    ]


async def test_coalescing_can_be_turned_off(harness: Harness) -> None:
    harness.runner.coalesce = False
    engine = harness.engine
    blocker = await _blocked(harness)
    jobs = [await _submit(harness, seed) for seed in (10, 11, 12)]
    assert engine.hold is not None
    engine.hold.set()
    for job in (blocker, *jobs):
        await harness.ended(job)
    assert [(p.seed, p.request.batch_count) for p in engine.calls[1:]] == [
        (10, 1),
        (11, 1),
        (12, 1),
    ]


# -- seeds left to chance ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _blocked_service(settings: Settings) -> AsyncIterator[tuple[SdrestService, Job]]:
    """A service over the fake engine, holding a first job (its own prompt) while the test
    submits the others."""
    engine = FakeEngine()
    engine.hold = asyncio.Event()
    async with SdrestService(settings, engine=engine) as service:
        blocker = await service.submit(_small(seed=1, prompt="blocker"))
        await asyncio.wait_for(engine.holding.wait(), TIMEOUT)
        yield service, blocker


async def test_jobs_that_leave_the_seed_to_chance_continue_the_last_ones_batch(
    settings: Settings,
) -> None:
    async with _blocked_service(settings) as (service, blocker):
        engine = service.engine
        assert isinstance(engine, FakeEngine) and engine.hold is not None
        chance = [await service.submit(_small(seed=-1)) for _ in range(2)]
        chosen = await service.submit(_small(seed=5))  # a seed of its own: kept as it is
        first = chance[0].request
        assert first is not None and first.seed >= 0
        assert [job.request.seed for job in chance if job.request] == [first.seed, first.seed + 1]
        assert chosen.request is not None and chosen.request.seed == 5
        engine.hold.set()
        finals = [await service.wait(job.id, TIMEOUT) for job in (blocker, *chance, chosen)]
    assert [job.status for job in finals] == ["completed"] * 4
    assert _calls(engine)[1:] == [(first.seed, 2), (5, 1)]
    assert [ref.seed for job in finals[1:3] if job.result for ref in job.result.images] == [
        first.seed,
        first.seed + 1,
    ]


async def test_a_seed_left_to_chance_is_drawn_afresh_behind_a_different_job(
    settings: Settings,
) -> None:
    async with _blocked_service(settings) as (service, _blocker):
        other = await service.submit(_small(seed=100, prompt="a dog"))
        chance = await service.submit(_small(seed=-1))
        service.runner.coalesce = False  # --no-coalesce: every seed left to chance is drawn
        apart = await service.submit(_small(seed=-1))
    assert other.request is not None and chance.request is not None and apart.request
    assert chance.request.seed != 101  # not the dog's batch: drawn at random
    assert apart.request.seed != chance.request.seed + 1


def _small(*, seed: int, prompt: str = "a cat") -> ImgGenRequest:
    return ImgGenRequest(
        prompt=prompt, width=64, height=64, seed=seed, sample_params=SampleParams(sample_steps=2)
    )


async def test_a_crash_of_a_coalesced_call_fails_one_job_and_the_others_run_alone(
    harness: Harness,
) -> None:
    engine = harness.engine
    engine.crash_call = 1  # the call after the blocker's: the coalesced one
    await _blocked(harness)
    a, b, c = [await _submit(harness, seed) for seed in (10, 11, 12)]
    assert engine.hold is not None
    engine.hold.set()
    finals = [await harness.ended(job) for job in (a, b, c)]
    assert [job.status for job in finals] == ["failed", "completed", "completed"]
    assert finals[0].error is not None and finals[0].error.code == "engine_crashed"
    assert [_red(harness, job) for job in finals[1:]] == [[11], [12]]
    # b and c were not coalesced again: a crash may be theirs too.
    assert _calls(engine)[1:] == [(10, 3), (11, 1), (12, 1)]
