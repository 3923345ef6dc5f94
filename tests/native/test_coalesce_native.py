"""Coalescing through the real library: jobs that share one native call get, pixel for pixel,
the images a call of their own makes (the library's batch image ``i`` is seed ``seed+i``)."""

from __future__ import annotations

import io
import logging

import pytest
from PIL import Image

from sdrest.service import SdrestService
from tests.native.helpers import output_bytes, output_pixels, quick, run


async def test_coalesced_jobs_get_the_images_of_single_calls(
    native_service: SdrestService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sdrest.jobs.runner")
    service = native_service
    # The first job loads the model (a cold engine): the next three queue meanwhile.
    blocker = await service.submit(quick(prompt="a dog", seed=7, steps=2))
    jobs = [await service.submit(quick(seed=seed, steps=2)) for seed in (20, 21, 22)]
    finals = [await service.wait(job.id, timeout=120) for job in (blocker, *jobs)]
    assert [job.status for job in finals] == ["completed"] * 4, [j.error for j in finals]
    one_call = [r.getMessage() for r in caplog.records if "run as one call" in r.getMessage()]
    assert len(one_call) == 1 and all(job.id in one_call[0] for job in jobs), one_call

    service.runner.coalesce = False
    for job, seed in zip(finals[1:], (20, 21, 22), strict=True):
        assert job.result is not None and job.result.images[0].seed == seed
        info = Image.open(io.BytesIO(output_bytes(service, job))).info["parameters"]
        assert f"Seed: {seed}," in info
        single = await run(service, quick(seed=seed, steps=2))
        assert output_pixels(service, single) == output_pixels(service, job)
    # Different seeds made different images (the comparison above could not pass by accident).
    assert len({output_pixels(service, job) for job in finals[1:]}) == 3
