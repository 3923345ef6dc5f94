"""Time and memory estimates of a generation (``POST /api/estimate``). Pure: the handler looks
up the job history and the file sizes and passes plain values in."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from sdrest.api.rest.parameters import calls_per_step
from sdrest.api.rest.utility_responses import MemoryEstimate, TimeEstimate
from sdrest.schemas import ImgGenRequest, Job

HEURISTIC_SECONDS_PER_STEP_PER_MEGAPIXEL: Final = 2.0
"""Used with no measurement of the model: a mid-range CPU figure. Flagged ``basis: heuristic``;
a GPU is one to two orders of magnitude faster."""
HEURISTIC_OVERHEAD_SECONDS: Final = 2.0
VAE_CHANNELS: Final = 128
"""Widest activation of the SD-family VAE decoder at full resolution (float32)."""
VAE_TILE_PIXELS: Final = 256 * 256
LATENT_CHANNELS: Final = 16
"""An upper bound (Flux/SD3 latents; SD 1.x/SDXL use 4)."""


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One completed job's measurement: seconds per model evaluation at a pixel count."""

    pixels: int
    seconds_per_call: float
    overhead: float
    """Wall time not spent sampling (loading, text encoding, VAE decode, saving)."""


def samples_from_jobs(jobs: Iterable[Job], model: str) -> list[Sample]:
    """Measurements from completed generations of ``model`` that recorded a step time.

    Job listings come without requests (they may hold megabytes of images), so the size, step
    count and batch are read from the result and the progress; the sampler, when the request
    is there, says how many model evaluations a step took (one otherwise).
    """
    samples = []
    for job in jobs:
        result, progress = job.result, job.progress
        if (
            job.status != "completed"
            or job.kind != "img_gen"
            or job.model != model
            or result is None
            or not result.images
            or progress.seconds_per_step <= 0
            or progress.steps <= 0
        ):
            continue
        first = result.images[0]
        sampler = job.request.sample_params.sample_method if job.request is not None else None
        sampling = progress.seconds_per_step * progress.steps * len(result.images)
        wall = job.completed - job.started if job.completed and job.started else sampling
        samples.append(
            Sample(
                pixels=first.width * first.height,
                seconds_per_call=progress.seconds_per_step / calls_per_step(sampler),
                overhead=max(0.0, wall - sampling),
            )
        )
    return samples


def estimate_time(request: ImgGenRequest, samples: list[Sample]) -> TimeEstimate:
    """Seconds for ``request``: measured per-evaluation time scaled by pixel count, else a guess.

    Linear in pixels is optimistic for large sizes (attention grows faster) and close enough
    for the sizes a model is meant for.
    """
    pixels = request.width * request.height
    calls = calls_per_step(request.sample_params.sample_method)
    steps = request.sample_params.sample_steps
    if samples:
        per_call = statistics.median(s.seconds_per_call * pixels / s.pixels for s in samples)
        overhead = statistics.median(s.overhead for s in samples)
        basis = "measured"
    else:
        per_call = HEURISTIC_SECONDS_PER_STEP_PER_MEGAPIXEL * pixels / 1e6
        overhead = HEURISTIC_OVERHEAD_SECONDS
        basis = "heuristic"
    seconds_per_step = per_call * calls
    total = seconds_per_step * steps * request.batch_count + overhead
    return TimeEstimate(
        seconds=round(total, 2),
        seconds_per_step=round(seconds_per_step, 4),
        overhead_seconds=round(overhead, 2),
        basis=basis,
        samples=len(samples),
    )


def estimate_memory(
    request: ImgGenRequest, weights: Mapping[str, int], vae_tiling: bool
) -> MemoryEstimate:
    """Bytes: the weight files, the latents and the VAE decoder's widest activation.

    Weights are counted at their file size (``--weight-type`` may change the in-memory size); the
    diffusion model's own activations are not counted (they depend on the architecture and on
    flash attention), so read the total as a floor.
    """
    batch = request.batch_count
    latent = LATENT_CHANNELS * 4 * (request.width // 8) * (request.height // 8) * batch
    tiled = vae_tiling or request.vae_tiling_params.enabled
    decode_pixels = VAE_TILE_PIXELS if tiled else request.width * request.height
    vae = VAE_CHANNELS * 4 * decode_pixels * 2  # input and output of the widest layer
    weight_total = sum(weights.values())
    total = weight_total + latent + vae
    return MemoryEstimate(
        bytes=total,
        mb=round(total / (1 << 20), 1),
        weights_bytes=weight_total,
        weights=dict(weights),
        latent_bytes=latent,
        vae_decode_bytes=vae,
        vae_tiling=tiled,
    )
