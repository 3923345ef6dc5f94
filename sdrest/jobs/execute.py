"""Run one planned job on the engine and turn what it returns into a :class:`JobResult`.

The service owns the job's state (queued, generating, finished); this module only does the work:
the native call, the infotexts, the encoding and writing of the output files (off the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
from PIL import Image

from sdrest import outputs
from sdrest.engine.base import (
    ConvertPlan,
    Engine,
    GenerationPlan,
    PreviewFn,
    ProgressFn,
    UpscalePlan,
)
from sdrest.errors import ConflictError
from sdrest.images import build_infotext
from sdrest.jobs import composite
from sdrest.jobs.previews import PreviewCache
from sdrest.schemas import Job, JobResult, Progress

Plan = GenerationPlan | UpscalePlan | ConvertPlan


@dataclass(frozen=True)
class PendingOutput:
    """A job's images back from the engine, not yet encoded and written: the runner writes them
    while the engine already runs the next job (encoding is off the engine's critical path)."""

    output_dir: Path
    job_id: str
    images: list[Image.Image]
    seeds: list[int]
    fmt: str
    quality: int
    infos: list[str | None]

    async def write(self, on_encoding: Callable[[], None]) -> JobResult:
        """Encode each image once and write it (in a thread); the job's result."""
        on_encoding()
        refs = await asyncio.to_thread(
            outputs.write_images,
            self.output_dir, self.job_id, self.images, self.seeds, self.fmt, self.quality,
            self.infos,
        )  # fmt: skip
        return JobResult(self.fmt, refs, [i for i in self.infos if i is not None])


def job_hooks(
    job: Job, previews: PreviewCache, publish: Callable[[Job], None]
) -> tuple[ProgressFn, PreviewFn]:
    """The engine's progress and preview callbacks for ``job``: they update its record while it
    is generating (the steps of a job already stopped are dropped)."""

    def on_progress(progress: Progress) -> None:
        if job.status == "generating":
            # The engine knows steps, not previews: keep the latest preview's step.
            job.progress = msgspec.structs.replace(progress, preview_step=job.progress.preview_step)
            publish(job)

    def on_preview(step: int, image: Image.Image) -> None:
        if job.status == "generating":
            previews.put(job.id, step, image)
            job.progress = msgspec.structs.replace(job.progress, preview_step=step)

    return on_progress, on_preview


async def run_on_engine(
    engine: Engine,
    plan: Plan,
    job_id: str,
    model: str,
    output_dir: Path,
    models_dir: Path,
    on_progress: ProgressFn,
    on_preview: PreviewFn,
    stopped: Callable[[], bool],
) -> JobResult | PendingOutput | None:
    """The engine's part of ``plan``: a result (a conversion), the images still to write, or
    None when a stop was requested while the engine worked."""
    if isinstance(plan, ConvertPlan):
        return await _convert(engine, plan, models_dir, on_progress)
    if isinstance(plan, UpscalePlan):
        images = [await engine.upscale(plan, on_progress)]
        if stopped():
            return None
        fmt, quality = plan.output_format, plan.output_compression
        return PendingOutput(output_dir, job_id, images, [0], fmt, quality, [None])
    images = await composite.generate(engine, plan, on_progress, on_preview, stopped)
    return None if stopped() else generation_output(plan, images, job_id, model, output_dir)


def generation_output(
    plan: GenerationPlan, images: list[Image.Image], job_id: str, model: str, output_dir: Path
) -> PendingOutput:
    """A generation's images with their seeds and infotexts, to be written."""
    request = plan.request
    seeds = [plan.seed + i for i in range(len(images))]
    infos = [
        build_infotext(
            request.prompt,
            request.negative_prompt,
            outputs.infotext_params(request, seed, img.width, img.height, model),
        )
        if request.embed_image_metadata
        else None
        for seed, img in zip(seeds, images, strict=True)
    ]
    fmt, quality = request.output_format, request.output_compression
    return PendingOutput(output_dir, job_id, images, seeds, fmt, quality, infos)


async def _convert(
    engine: Engine, plan: ConvertPlan, models_dir: Path, on_progress: ProgressFn
) -> JobResult:
    target = Path(plan.output_path)
    if await asyncio.to_thread(target.exists):  # another job wrote it since it was accepted
        raise ConflictError(f"{target.name} already exists")
    await engine.convert(plan, on_progress)
    rel = await asyncio.to_thread(lambda: target.resolve().relative_to(models_dir.resolve()))
    return JobResult("gguf", [], files=[str(rel)])
