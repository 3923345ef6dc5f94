"""Sampler and scheduler tables and the parameter ranges the server enforces
(``/api/samplers``, ``/api/schedulers``, ``/api/parameters``). Pure: the handler passes the
limits and the default model's preset defaults in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec
from msgspec import inspect

from sdrest.api.rest.utility_responses import (
    ChoiceParameter,
    IntegerRange,
    NumberRange,
    Parameter,
    ParametersReply,
    SamplerDetail,
    SamplersReply,
    SchedulerDetail,
    SchedulersReply,
    ServerLimits,
)
from sdrest.schemas import (
    OUTPUT_FORMATS,
    SAMPLE_METHODS,
    SCHEDULERS,
    GuidanceParams,
    ImgGenRequest,
    RequestLayer,
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
"""stable-diffusion.cpp rounds width and height up to a multiple of 16 (of 8 for UNet models)."""
NATIVE_SIZES: Final[Mapping[str, int]] = {
    "sd1": 512,
    "sd2": 768,
    **dict.fromkeys(("sdxl", "sd3", "flux", "flux2", "chroma", "qwen_image", "z_image"), 1024),
}
"""The side a model of each architecture was trained at: the width/height a request that names
none gets on /api (the spec's defaults differ per model)."""
_UNET_ARCHITECTURES: Final = frozenset({"sd1", "sd2", "sdxl"})


def size_step(architecture: str | None) -> int:
    """The multiple the library rounds sizes up to for a model of ``architecture``: its VAE's
    factor (8) times the diffusion model's patch size (1 for UNets, 2 for the DiTs)."""
    return 8 if architecture in _UNET_ARCHITECTURES else SIZE_STEP


def native_size_layer(architecture: str | None) -> RequestLayer:
    """Default width and height of a model of ``architecture`` (empty when unknown: the
    schema's 512 then applies)."""
    side = NATIVE_SIZES.get(architecture or "")
    return {"width": side, "height": side} if side else {}


def spec_sampler(name: str) -> str:
    """The spec's spelling of a library sampler name (``dpm++2m`` is ``dpmpp2m`` there)."""
    return name.replace("dpm++", "dpmpp")


def sampler_aliases(name: str) -> list[str]:
    """The other spellings of a spec sampler name: the library's (``dpmpp2m`` is ``dpm++2m``)."""
    library = name.replace("dpmpp", "dpm++")
    return [library] if library != name else []


def calls_per_step(sampler: str | None) -> int:
    """Model evaluations per step (the library's default samplers take one)."""
    return SAMPLER_INFO.get(sampler or "", ("", 1))[1]


def samplers_view() -> SamplersReply:
    """``GET /api/samplers``: the spec's names (``dpmpp2m``), then the details of each with the
    library's spelling (``dpm++2m``) as an alias; requests may use either."""
    return SamplersReply(
        samplers=[spec_sampler(name) for name in SAMPLE_METHODS],
        details=[
            SamplerDetail(
                spec_sampler(name),
                SAMPLER_INFO.get(name, ("", 1))[0],
                calls_per_step(name),
                sampler_aliases(spec_sampler(name)),
            )
            for name in SAMPLE_METHODS
        ],
    )


def schedulers_view() -> SchedulersReply:
    """``GET /api/schedulers``: the spec's list of names, then the details of each."""
    return SchedulersReply(
        schedulers=list(SCHEDULERS),
        details=[SchedulerDetail(name, SCHEDULER_INFO.get(name, "")) for name in SCHEDULERS],
    )


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
    struct: type[msgspec.Struct],
    name: str,
    preset: Any,
    *,
    low: float | None = None,
    high: float | None = None,
) -> IntegerRange | NumberRange:
    """min/max from the schema's own bounds, narrowed by a server limit where one applies; the
    preset's default where it gives one, else the schema's."""
    kind, default = _field(struct, name)
    minimum = getattr(kind, "ge", None)
    maximum = getattr(kind, "le", None)
    if low is not None:
        minimum = low if minimum is None else max(minimum, low)
    if high is not None:
        maximum = high if maximum is None else min(maximum, high)
    if preset is None:
        preset = None if default is msgspec.NODEFAULT else default
    if isinstance(kind, inspect.IntType):
        return IntegerRange(min=minimum, max=maximum, default=preset, step=1)
    return NumberRange(min=minimum, max=maximum, default=preset, step=0.1)


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
_SEED = IntegerRange(
    min=-1,
    max=2**63 - 1,
    default=-1,
    step=1,
    note='-1 or "random" picks a random seed; the job records the one used',
)


def parameters_view(
    limits: Limits,
    model: str | None,
    defaults: Mapping[str, Any],
    architecture: str | None = None,
) -> ParametersReply:
    """``GET /api/parameters``: ranges as enforced (schema bounds + the server's limits).

    ``defaults`` are the default model's defaults (canonical names: its native size under its
    preset's); they replace the schema defaults where given, since that is what a request that
    leaves a field out gets. ``architecture`` (the model's) decides the size step.
    """
    step = size_step(architecture)
    server_bounds: dict[str, tuple[float | None, float | None]] = {
        "width": (limits.min_size, limits.max_size),
        "height": (limits.min_size, limits.max_size),
        "steps": (None, limits.max_steps),
        "batch_count": (None, limits.max_batch),
    }
    params: dict[str, Parameter] = {}
    for name, (struct, field, path) in _NUMERIC.items():
        low, high = server_bounds.get(name, (None, None))
        params[name] = entry = _range(struct, field, _lookup(defaults, path), low=low, high=high)
        if name in ("width", "height"):
            entry.step = step
            entry.note = f"rounded up to a multiple of {step} by the library"
    params["seed"] = _SEED
    sampler = _lookup(defaults, "sample_params.sample_method")
    params["sampling_method"] = ChoiceParameter(
        [spec_sampler(name) for name in SAMPLE_METHODS],
        spec_sampler(sampler) if isinstance(sampler, str) else sampler,
    )
    params["scheduler"] = ChoiceParameter(
        list(SCHEDULERS), _lookup(defaults, "sample_params.scheduler")
    )
    params["output_format"] = ChoiceParameter(
        list(OUTPUT_FORMATS), _lookup(defaults, "output_format") or "png"
    )
    limits_view = ServerLimits(
        limits.max_queue, limits.max_image_mb, limits.max_input_pixels, limits.max_prompt_chars
    )
    return ParametersReply(params, model, limits_view)
