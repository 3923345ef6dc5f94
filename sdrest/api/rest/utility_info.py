"""Pure parts of the /api utilities: sampler and scheduler tables, the parameter ranges the server
enforces, request validation results, and time/memory estimates.

No I/O here: routes look things up (registry, job history, file sizes) and pass plain values in.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

import msgspec
from msgspec import inspect

from sdrest.schemas import (
    OUTPUT_FORMATS,
    SAMPLE_METHODS,
    SCHEDULERS,
    GuidanceParams,
    ImgGenRequest,
    Job,
    SampleParams,
)
from sdrest.settings import Limits

# name -> (description, model evaluations per step). Two-stage samplers cost two evaluations a
# step, which the time estimate has to know.
SAMPLER_INFO: Final[Mapping[str, tuple[str, int]]] = {
    "euler": ("Euler: first order, deterministic; a safe default", 1),
    "euler_a": ("Euler ancestral: adds fresh noise every step; varied, never converges", 1),
    "heun": ("Heun: second order; two model evaluations per step", 2),
    "dpm2": ("DPM2: second order; two model evaluations per step", 2),
    "dpm++2s_a": ("DPM++ 2S ancestral: second order single-step, stochastic", 2),
    "dpm++2m": ("DPM++ 2M: second order multistep; good images in 20-30 steps", 1),
    "dpm++2mv2": ("DPM++ 2M v2: a 2M variant that does better with few steps", 1),
    "ipndm": ("iPNDM: improved pseudo linear multistep", 1),
    "ipndm_v": ("iPNDM-v: iPNDM with variable step sizes", 1),
    "lcm": ("LCM: for latent consistency (LCM, turbo) models and LoRAs; 2-8 steps", 1),
    "ddim_trailing": ("DDIM with trailing timesteps", 1),
    "tcd": ("TCD: for trajectory consistency distilled models", 1),
    "res_multistep": ("RES multistep: exponential integrator, multistep", 1),
    "res_2s": ("RES 2S: exponential integrator; two model evaluations per step", 2),
    "er_sde": ("ER-SDE: extended reverse-time SDE solver (stochastic)", 1),
}
SCHEDULER_INFO: Final[Mapping[str, str]] = {
    "discrete": "Discrete: the model's own training timesteps",
    "karras": "Karras: sigmas packed towards low noise (Karras et al. 2022)",
    "exponential": "Exponential: sigmas evenly spaced in log space",
    "ays": "Align Your Steps: tuned schedules for SD 1.x and SDXL",
    "gits": "GITS: geometry-inspired time scheduling",
    "sgm_uniform": "SGM uniform: evenly spaced timesteps, as SDXL Turbo expects",
    "simple": "Simple: evenly strided timesteps",
    "smoothstep": "Smoothstep: smoothstep-shaped spacing",
    "kl_optimal": "KL-optimal schedule (Sabour et al. 2024)",
    "lcm": "LCM: the schedule of latent consistency models",
    "bong_tangent": "Bong tangent: tangent-shaped spacing",
}
SIZE_STEP: Final = 16
"""stable-diffusion.cpp rounds width and height up to a multiple of 16."""


def sampler_aliases(name: str) -> list[str]:
    """The spec's spellings of a sampler name (``dpm++2m`` is ``dpmpp2m`` there)."""
    return [name.replace("dpm++", "dpmpp")] if "dpm++" in name else []


def samplers_view() -> dict[str, Any]:
    """``GET /api/samplers``: the spec's list of names, then the details of each."""
    return {
        "samplers": list(SAMPLE_METHODS),
        "default": None,
        "details": [
            {
                "name": name,
                "description": SAMPLER_INFO.get(name, ("", 1))[0],
                "model_calls_per_step": SAMPLER_INFO.get(name, ("", 1))[1],
                "aliases": sampler_aliases(name),
            }
            for name in SAMPLE_METHODS
        ],
    }


def schedulers_view() -> dict[str, Any]:
    """``GET /api/schedulers``: the spec's list of names, then the details of each."""
    return {
        "schedulers": list(SCHEDULERS),
        "default": None,
        "details": [
            {"name": name, "description": SCHEDULER_INFO.get(name, "")} for name in SCHEDULERS
        ],
    }


# --- parameters -------------------------------------------------------------------------------


def _field(struct: type[msgspec.Struct], name: str) -> tuple[Any, Any]:
    """(msgspec type info, default) of one struct field, as declared in the schema."""
    info = inspect.type_info(struct)
    assert isinstance(info, inspect.StructType)
    for field in info.fields:
        if field.name == name:
            kind = field.type
            if isinstance(kind, inspect.UnionType):  # ``X | None``: the constraints are on X
                kind = next(t for t in kind.types if not isinstance(t, inspect.NoneType))
            return kind, field.default
    raise KeyError(name)


def _range(
    struct: type[msgspec.Struct], name: str, *, low: float | None = None, high: float | None = None
) -> dict[str, Any]:
    """min/max from the schema's own bounds, narrowed by a server limit where one applies."""
    kind, default = _field(struct, name)
    minimum = getattr(kind, "ge", None)
    maximum = getattr(kind, "le", None)
    if low is not None:
        minimum = low if minimum is None else max(minimum, low)
    if high is not None:
        maximum = high if maximum is None else min(maximum, high)
    integer = isinstance(kind, inspect.IntType)
    return {
        "type": "integer" if integer else "number",
        "min": minimum,
        "max": maximum,
        "default": None if default is msgspec.NODEFAULT else default,
        "step": 1 if integer else 0.1,
    }


def _lookup(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# Spec name -> (struct, field, canonical path of the preset default).
_NUMERIC: Final[Mapping[str, tuple[type[msgspec.Struct], str, str]]] = {
    "width": (ImgGenRequest, "width", "width"),
    "height": (ImgGenRequest, "height", "height"),
    "steps": (SampleParams, "sample_steps", "sample_params.sample_steps"),
    "cfg_scale": (GuidanceParams, "txt_cfg", "sample_params.guidance.txt_cfg"),
    "distilled_guidance": (
        GuidanceParams,
        "distilled_guidance",
        "sample_params.guidance.distilled_guidance",
    ),
    "batch_count": (ImgGenRequest, "batch_count", "batch_count"),
    "clip_skip": (ImgGenRequest, "clip_skip", "clip_skip"),
    "strength": (ImgGenRequest, "strength", "strength"),
    "control_strength": (ImgGenRequest, "control_strength", "control_strength"),
    "output_compression": (ImgGenRequest, "output_compression", "output_compression"),
}


def parameters_view(
    limits: Limits, model: str | None, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """``GET /api/parameters``: ranges as enforced (schema bounds + the server's limits).

    ``defaults`` are the default model's preset defaults (canonical names); they replace the
    schema defaults where given, since that is what a request that leaves a field out gets.
    """
    server_bounds: dict[str, tuple[float | None, float | None]] = {
        "width": (limits.min_size, limits.max_size),
        "height": (limits.min_size, limits.max_size),
        "steps": (None, limits.max_steps),
        "batch_count": (None, limits.max_batch),
    }
    params: dict[str, Any] = {}
    for name, (struct, field, path) in _NUMERIC.items():
        low, high = server_bounds.get(name, (None, None))
        entry = _range(struct, field, low=low, high=high)
        preset = _lookup(defaults, path)
        if preset is not None:
            entry["default"] = preset
        params[name] = entry
    for side in ("width", "height"):
        params[side]["step"] = SIZE_STEP
        params[side]["note"] = f"rounded up to a multiple of {SIZE_STEP} by the library"
    params["seed"] = {
        "type": "integer",
        "min": -1,
        "max": 2**63 - 1,
        "default": -1,
        "step": 1,
        "note": '-1 or "random" picks a random seed; the job records the one used',
    }
    params["sampling_method"] = {
        "type": "string",
        "options": list(SAMPLE_METHODS),
        "default": _lookup(defaults, "sample_params.sample_method"),
    }
    params["scheduler"] = {
        "type": "string",
        "options": list(SCHEDULERS),
        "default": _lookup(defaults, "sample_params.scheduler"),
    }
    params["output_format"] = {
        "type": "string",
        "options": list(OUTPUT_FORMATS),
        "default": _lookup(defaults, "output_format") or "png",
    }
    return {
        "parameters": params,
        "model": model,
        "limits": {
            "max_queue": limits.max_queue,
            "max_image_mb": limits.max_image_mb,
            "max_input_pixels": limits.max_input_pixels,
        },
    }


# --- validation -------------------------------------------------------------------------------


class Issue(msgspec.Struct, frozen=True):
    """One validation error or warning, named by the wire field it concerns."""

    field: str | None
    message: str
    code: str = "VALIDATION_ERROR"


def limit_issues(values: Mapping[str, int | None], limits: Limits) -> list[Issue]:
    """Every limit a body breaks (not just the first), by spec field name."""
    issues = []
    for name in ("width", "height"):
        value = values.get(name)
        if value is not None and not limits.min_size <= value <= limits.max_size:
            issues.append(
                Issue(name, f"{name} must be between {limits.min_size} and {limits.max_size}")
            )
    steps = values.get("steps")
    if steps is not None and not 1 <= steps <= limits.max_steps:
        issues.append(Issue("steps", f"steps must be between 1 and {limits.max_steps}"))
    batch = values.get("batch_count")
    if batch is not None and not 1 <= batch <= limits.max_batch:
        issues.append(Issue("batch_count", f"batch_count must be between 1 and {limits.max_batch}"))
    return issues


def name_issues(sampler: str | None, scheduler: str | None) -> list[Issue]:
    """Unknown sampler or scheduler names (already in the library's spelling)."""
    issues = []
    for field, value, valid in (
        ("sampling_method", sampler, SAMPLE_METHODS),
        ("scheduler", scheduler, SCHEDULERS),
    ):
        name = (value or "").strip().lower()
        if name not in ("", "default") and name not in valid:
            issues.append(Issue(field, f"unknown {field} {name!r}; valid: {', '.join(valid)}"))
    return issues


def request_warnings(request: ImgGenRequest, model: str, loaded: Collection[str]) -> list[Issue]:
    """Things that are allowed but worth telling before queueing; ``loaded``: the loaded
    models."""
    warnings = []
    width, height = request.width, request.height
    if width % SIZE_STEP or height % SIZE_STEP:
        rounded = (-(-width // SIZE_STEP) * SIZE_STEP, -(-height // SIZE_STEP) * SIZE_STEP)
        warnings.append(
            Issue(
                "width" if width % SIZE_STEP else "height",
                f"{width}x{height} will be generated as {rounded[0]}x{rounded[1]}"
                f" (a multiple of {SIZE_STEP})",
                "SIZE_ROUNDED",
            )
        )
    if model not in loaded:
        warnings.append(
            Issue(
                "model_name", f"{model} is not loaded; the job loads it first", "MODEL_NOT_LOADED"
            )
        )
    return warnings


def validation_view(
    errors: Iterable[Issue], warnings: Iterable[Issue], model: str | None
) -> dict[str, Any]:
    """``POST /api/validate``'s answer; errors are unique by (field, message)."""
    unique: list[Issue] = []
    for issue in errors:
        if all((issue.field, issue.message) != (i.field, i.message) for i in unique):
            unique.append(issue)
    return {
        "valid": not unique,
        "errors": [msgspec.structs.asdict(i) for i in unique],
        "warnings": [msgspec.structs.asdict(i) for i in warnings],
        "model": model,
    }


# --- estimates --------------------------------------------------------------------------------

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


def calls_per_step(sampler: str | None) -> int:
    """Model evaluations per step (the library's default samplers take one)."""
    return SAMPLER_INFO.get(sampler or "", ("", 1))[1]


def estimate_time(request: ImgGenRequest, samples: list[Sample]) -> dict[str, Any]:
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
    return {
        "seconds": round(total, 2),
        "seconds_per_step": round(seconds_per_step, 4),
        "overhead_seconds": round(overhead, 2),
        "basis": basis,
        "samples": len(samples),
    }


def estimate_memory(
    request: ImgGenRequest, weights: Mapping[str, int], vae_tiling: bool
) -> dict[str, Any]:
    """Bytes: the weight files, the latents and the VAE decoder's widest activation.

    Weights are counted at their file size (``--weight-type`` may change the in-memory size); the
    diffusion model's own activations are not counted (they depend on the architecture and on
    flash attention), so read the total as a floor.
    """
    batch = request.batch_count
    latent = LATENT_CHANNELS * 4 * (request.width // 8) * (request.height // 8) * batch
    decode_pixels = (
        VAE_TILE_PIXELS
        if vae_tiling or request.vae_tiling_params.enabled
        else request.width * request.height
    )
    vae = VAE_CHANNELS * 4 * decode_pixels * 2  # input and output of the widest layer
    weight_total = sum(weights.values())
    total = weight_total + latent + vae
    return {
        "bytes": total,
        "mb": round(total / (1 << 20), 1),
        "weights_bytes": weight_total,
        "weights": dict(weights),
        "latent_bytes": latent,
        "vae_decode_bytes": vae,
        "vae_tiling": vae_tiling or request.vae_tiling_params.enabled,
        "basis": "file sizes + latent and VAE decoder sizes (a floor)",
    }
