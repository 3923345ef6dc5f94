"""The /sdcpp/v1 answers as typed Structs (encoded by msgspec, documented in /openapi.json).

Field order is the wire order. Pure: building them reads no files (the caller passes base64).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from sdrest.models import ModelEntry
from sdrest.schemas import OUTPUT_FORMATS, SAMPLE_METHODS, SCHEDULERS, Job, job_timing
from sdrest.settings import Settings


class SdcppError(msgspec.Struct, omit_defaults=True):
    """Every /sdcpp/v1 error: ``{"error": message, "code", "field"?}``."""

    error: str
    code: str
    field: str | None = None


class JobCreated(msgspec.Struct, omit_defaults=True):
    """The 202 body of ``POST /img_gen``."""

    id: str
    kind: str
    status: str
    created: int
    poll_url: str
    warnings: list[str] | None = None
    """Request fields this server does not know, ignored (absent when there are none)."""

    @classmethod
    def of(cls, job: Job, warnings: list[str] | None = None) -> JobCreated:
        """The answer for a job just queued."""
        return cls(
            job.id,
            job.kind,
            job.status,
            int(job.created),
            f"/sdcpp/v1/jobs/{job.id}",
            warnings or None,
        )


class OutputImage(msgspec.Struct):
    """One generated image, inlined."""

    index: int
    b64_json: str
    width: int
    height: int
    seed: int


class JobOutput(msgspec.Struct):
    """A completed job's images."""

    output_format: str
    images: list[OutputImage]


class JobErrorInfo(msgspec.Struct):
    """Why a job failed or was cancelled."""

    code: str
    message: str


class JobProgress(msgspec.Struct):
    """Progress of a job; ``eta`` (seconds) only while it samples."""

    phase: str
    step: int
    steps: int
    fraction: float
    seconds_per_step: float
    elapsed: float
    eta: float | None


class JobDocument(msgspec.Struct):
    """``GET /jobs/{id}``: the job, its images inlined once completed."""

    id: str
    kind: str
    status: str
    created: int
    started: int | None
    completed: int | None
    queue_position: int
    result: JobOutput | None
    error: JobErrorInfo | None
    model: str
    progress: JobProgress

    @classmethod
    def of(cls, job: Job, queue_position: int, images_b64: list[str], now: float) -> JobDocument:
        """The document of ``job``; ``images_b64``: its output files' base64, in order (the
        caller reads the files, off the event loop)."""
        result = None
        if job.status == "completed" and job.result is not None:
            images = [
                OutputImage(ref.index, data, ref.width, ref.height, ref.seed)
                for ref, data in zip(job.result.images, images_b64, strict=False)
            ]
            result = JobOutput(job.result.output_format, images)
        timing = job_timing(job, now)
        progress = job.progress
        sampling = job.status == "generating" and progress.phase == "sampling"
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            created=int(job.created),
            started=_seconds(job.started),
            completed=_seconds(job.completed),
            queue_position=queue_position,
            result=result,
            error=None if job.error is None else JobErrorInfo(job.error.code, job.error.message),
            model=job.model,
            progress=JobProgress(
                phase=progress.phase,
                step=progress.step,
                steps=progress.steps,
                fraction=timing.fraction,
                seconds_per_step=progress.seconds_per_step,
                elapsed=round(timing.elapsed, 3),
                eta=round(timing.eta, 3) if sampling and timing.eta is not None else None,
            ),
        )


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


class ModelInfo(msgspec.Struct):
    """The default model."""

    name: str
    stem: str
    path: str
    architecture: str


class LoraInfo(msgspec.Struct):
    """A LoRA a request may name (``path``: relative to the LoRA folder)."""

    name: str
    path: str


class LimitsInfo(msgspec.Struct):
    """The limits the server enforces."""

    min_width: int
    max_width: int
    min_height: int
    max_height: int
    max_batch_count: int
    max_queue_size: int
    max_sample_steps: int
    max_prompt_chars: int
    """Longest ``prompt`` / ``negative_prompt``, in characters."""


class Features(msgspec.Struct):
    """What this server really does."""

    init_image: bool
    mask_image: bool
    control_image: bool
    ref_images: bool
    lora: bool
    vae_tiling: bool
    cache: bool
    cancel_queued: bool
    cancel_generating: bool
    vid_gen: bool


class Capabilities(msgspec.Struct):
    """``GET /capabilities``."""

    model: ModelInfo | None
    defaults: dict[str, Any]
    """The full canonical request with the model's defaults (an ``img_gen`` body)."""
    loras: list[LoraInfo]
    samplers: list[str]
    schedulers: list[str]
    output_formats: list[str]
    limits: LimitsInfo
    features: Features

    @classmethod
    def of(
        cls,
        settings: Settings,
        model: ModelEntry | None,
        model_name: str | None,
        loras: list[ModelEntry],
        defaults: dict[str, Any],
        lora_dir: Path,
        *,
        cancel_generating: bool,
    ) -> Capabilities:
        """What this server does and the limits it enforces; ``defaults``: the full request
        with the model's defaults; ``cancel_generating``: whether the engine can stop a
        running job (worker mode)."""
        limits = settings.limits
        can_encode = not settings.load.vae_decode_only
        info = None
        if model_name is not None:
            info = ModelInfo(
                name=model_name,
                stem=Path(model.path).stem if model else model_name,
                path=model.path if model else "",
                architecture=model.architecture if model else "preset",
            )
        return cls(
            model=info,
            defaults=defaults,
            loras=[LoraInfo(e.name, _lora_path(e, lora_dir)) for e in loras],
            samplers=list(SAMPLE_METHODS),
            schedulers=list(SCHEDULERS),
            output_formats=list(OUTPUT_FORMATS),
            limits=LimitsInfo(
                min_width=limits.min_size,
                max_width=limits.max_size,
                min_height=limits.min_size,
                max_height=limits.max_size,
                max_batch_count=limits.max_batch,
                max_queue_size=limits.max_queue,
                max_sample_steps=limits.max_steps,
                max_prompt_chars=limits.max_prompt_chars,
            ),
            features=Features(
                init_image=can_encode,
                mask_image=can_encode,
                control_image=False,
                ref_images=can_encode,
                lora=True,
                vae_tiling=True,
                cache=True,
                cancel_queued=True,
                cancel_generating=cancel_generating,
                vid_gen=False,
            ),
        )


def _lora_path(entry: ModelEntry, lora_dir: Path) -> str:
    path = Path(entry.path)
    return str(path.relative_to(lora_dir)) if path.is_relative_to(lora_dir) else entry.name
