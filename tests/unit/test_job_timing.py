"""THE progress arithmetic (``job_timing``) and the queue snapshot every queue view reads."""

from __future__ import annotations

import pytest

from sdrest.schemas import ImgGenRequest, Job, Progress, QueueSnapshot, job_timing
from sdrest.schemas.request import SampleParams


def _job(status: str, progress: Progress, *, started: float | None = 100.0) -> Job:
    request = ImgGenRequest(sample_params=SampleParams(sample_steps=20))
    return Job(
        id="job_1_ab",
        kind="img_gen",
        created=90.0,
        status=status,  # type: ignore[arg-type]
        started=started,
        request=request,
        progress=progress,
    )


def test_queued_job_knows_its_planned_steps_and_nothing_else() -> None:
    timing = job_timing(_job("queued", Progress(), started=None), now=200.0)
    assert (timing.fraction, timing.step, timing.steps) == (0.0, 0, 20)
    assert (timing.elapsed, timing.eta, timing.stepping) == (0.0, None, False)


def test_loading_counts_no_steps_even_when_the_library_counts_tensors() -> None:
    timing = job_timing(_job("generating", Progress("loading", 90, 100, 0.0)), now=103.0)
    assert (timing.fraction, timing.step, timing.steps) == (0.0, 0, 20)
    assert timing.elapsed == pytest.approx(3.0) and timing.eta is None


def test_sampling_eta_comes_from_the_measured_step_time() -> None:
    timing = job_timing(_job("generating", Progress("sampling", 5, 20, 0.5)), now=104.0)
    assert timing.fraction == pytest.approx(0.25) and timing.stepping
    assert timing.eta == pytest.approx(7.5) and timing.seconds_per_step == 0.5


def test_without_a_step_time_the_eta_is_extrapolated_from_elapsed() -> None:
    timing = job_timing(_job("generating", Progress("upscaling", 1, 4, 0.0)), now=106.0)
    assert timing.fraction == pytest.approx(0.25)
    assert timing.eta == pytest.approx(18.0)  # 6 s for a quarter: 18 s for the rest


@pytest.mark.parametrize("phase", ["decoding", "encoding"])
def test_decoding_counts_as_done_sampling(phase: str) -> None:
    timing = job_timing(_job("generating", Progress(phase, 20, 20, 0.5)), now=110.0)
    assert timing.fraction == 1.0


def test_finished_job_elapsed_stops_at_its_end_and_eta_is_zero() -> None:
    job = _job("completed", Progress("done", 20, 20, 0.5))
    job.completed = 112.0
    timing = job_timing(job, now=500.0)
    assert (timing.fraction, timing.elapsed, timing.eta) == (1.0, 12.0, 0.0)


def test_queue_snapshot_orders_and_positions() -> None:
    running = _job("generating", Progress("sampling", 1, 20, 0.1))
    first, second = (_job("queued", Progress()) for _ in range(2))
    first.id, second.id = "job_2_aa", "job_3_bb"
    snapshot = QueueSnapshot(current=running, queued=[first, second], loaded_models=("tiny",))
    assert [job.id for job in snapshot.jobs] == ["job_1_ab", "job_2_aa", "job_3_bb"]
    assert snapshot.queued_ids == ["job_2_aa", "job_3_bb"]
    assert (snapshot.position("job_3_bb"), snapshot.position("job_1_ab")) == (2, 0)
    assert QueueSnapshot(current=None, queued=[]).jobs == []
