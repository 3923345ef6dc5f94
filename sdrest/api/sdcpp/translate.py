"""Pure translations between the /sdcpp/v1 wire shapes and the service's structs."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from sdrest.api.common import convert, decode_json
from sdrest.models import ModelEntry
from sdrest.schemas import OUTPUT_FORMATS, SAMPLE_METHODS, SCHEDULERS, ImgGenRequest, Job
from sdrest.settings import Settings, deep_merge

_request_decoder = msgspec.json.Decoder(ImgGenRequest)
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_IMAGE_FIELDS = ("init_image", "ref_images", "mask_image", "control_image")


def to_request(
    body: bytes, defaults_for: Callable[[str | None], Mapping[str, Any]]
) -> ImgGenRequest:
    """Decode an img_gen body; fields the client left out take the model's preset defaults."""
    request = decode_json(body, _request_decoder)
    defaults = defaults_for(request.model)
    if not defaults:
        return request  # the common case: one typed decode, nothing merged
    raw = _any_decoder.decode(body)
    return convert(deep_merge(defaults, raw), ImgGenRequest)


def job_created(job: Job) -> dict[str, Any]:
    """The 202 body of ``POST /img_gen``."""
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "created": int(job.created),
        "poll_url": f"/sdcpp/v1/jobs/{job.id}",
    }


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def job_view(job: Job, queue_position: int, read_b64: Callable[[str], str]) -> dict[str, Any]:
    """The job document of ``GET /jobs/{id}``, images inlined as base64: ``read_b64(filename)``
    returns an output file's base64 (file I/O stays with the caller)."""
    result = None
    if job.status == "completed" and job.result is not None:
        images = []
        for ref in job.result.images:
            images.append(
                {
                    "index": ref.index,
                    "b64_json": read_b64(ref.filename),
                    "width": ref.width,
                    "height": ref.height,
                    "seed": ref.seed,
                }
            )
        result = {"output_format": job.result.output_format, "images": images}
    progress = job.progress
    now = time.time()
    elapsed = (job.completed or now) - job.started if job.started is not None else 0.0
    eta = None
    if job.status == "generating" and progress.phase == "sampling" and progress.steps:
        eta = max(0.0, progress.seconds_per_step * (progress.steps - progress.step))
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "created": int(job.created),
        "started": _ts(job.started),
        "completed": _ts(job.completed),
        "queue_position": queue_position,
        "result": result,
        "error": None
        if job.error is None
        else {"code": job.error.code, "message": job.error.message},
        "model": job.model,
        "progress": {
            "phase": progress.phase,
            "step": progress.step,
            "steps": progress.steps,
            "fraction": progress.fraction,
            "seconds_per_step": progress.seconds_per_step,
            "elapsed": round(elapsed, 3),
            "eta": None if eta is None else round(eta, 3),
        },
    }


def _request_defaults(defaults: Mapping[str, Any]) -> dict[str, Any]:
    base = msgspec.to_builtins(ImgGenRequest())
    for name in (*_IMAGE_FIELDS, "model", "lora"):
        base.pop(name, None)
    merged = deep_merge(base, defaults)
    sample = merged["sample_params"]
    # The spec types these as strings; "default" is the library's own name for "model default".
    for key in ("scheduler", "sample_method"):
        sample[key] = sample.get(key) or "default"
    return merged


def capabilities(
    settings: Settings,
    model: ModelEntry | None,
    model_name: str | None,
    loras: list[ModelEntry],
    defaults: Mapping[str, Any],
    lora_dir: Path,
    *,
    cancel_generating: bool,
) -> dict[str, Any]:
    """``GET /capabilities``: what this server really does, and the limits it enforces.
    ``cancel_generating``: whether the engine can stop a running job (worker mode)."""
    limits = settings.limits
    can_encode = not settings.load.vae_decode_only
    return {
        "model": None
        if model_name is None
        else {
            "name": model_name,
            "stem": Path(model.path).stem if model else model_name,
            "path": model.path if model else "",
            "architecture": model.architecture if model else "preset",
        },
        "defaults": _request_defaults(defaults),
        "loras": [
            {
                "name": e.name,
                "path": str(Path(e.path).relative_to(lora_dir))
                if Path(e.path).is_relative_to(lora_dir)
                else e.name,
            }
            for e in loras
        ],
        "samplers": list(SAMPLE_METHODS),
        "schedulers": list(SCHEDULERS),
        "output_formats": list(OUTPUT_FORMATS),
        "limits": {
            "min_width": limits.min_size,
            "max_width": limits.max_size,
            "min_height": limits.min_size,
            "max_height": limits.max_size,
            "max_batch_count": limits.max_batch,
            "max_queue_size": limits.max_queue,
            "max_sample_steps": limits.max_steps,
        },
        "features": {
            "init_image": can_encode,
            "mask_image": can_encode,
            "control_image": False,
            "ref_images": can_encode,
            "lora": True,
            "vae_tiling": True,
            "cache": True,
            "cancel_queued": True,
            "cancel_generating": cancel_generating,
            "vid_gen": False,
        },
    }
