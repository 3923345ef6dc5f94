"""AUTOMATIC1111's names for the library's samplers, schedulers and hires upscalers.

The PNG ``parameters`` text (the infotext) of every family is written in A1111's words, so
A1111's png-info and "send to txt2img" read it back as the same request. The ``/sdapi/v1``
family's name tables (``sdrest/api/sdapi/samplers.py``) accept these names and more; a unit test
keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping

SAMPLER_NAMES: Mapping[str, str] = {
    "euler_a": "Euler a",
    "euler": "Euler",
    "heun": "Heun",
    "dpm2": "DPM2",
    "dpm++2s_a": "DPM++ 2S a",
    "dpm++2m": "DPM++ 2M",
    "dpm++2mv2": "DPM++ 2M v2",
    "ipndm": "iPNDM",
    "ipndm_v": "iPNDM_v",
    "lcm": "LCM",
    "ddim_trailing": "DDIM",
    "tcd": "TCD",
    "res_multistep": "Res Multistep",
    "res_2s": "Res 2s",
    "er_sde": "ER SDE",
}
"""sd.cpp ``sample_method`` -> A1111 sampler display name."""

SCHEDULER_LABELS: Mapping[str, str] = {
    "discrete": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "ays": "Align Your Steps",
    "gits": "Align Your Steps GITS",
    "sgm_uniform": "SGM Uniform",
    "simple": "Simple",
    "smoothstep": "Smoothstep",
    "kl_optimal": "KL Optimal",
    "lcm": "LCM",
    "bong_tangent": "Bong Tangent",
}
"""sd.cpp ``scheduler`` -> A1111 "Schedule type" label."""

HIRES_UPSCALER_NAMES: Mapping[str, str] = {
    "latent": "Latent",
    "latent_antialiased": "Latent (antialiased)",
    "latent_bicubic": "Latent (bicubic)",
    "latent_bicubic_antialiased": "Latent (bicubic antialiased)",
    "latent_nearest": "Latent (nearest)",
    "latent_nearest_exact": "Latent (nearest-exact)",
    "lanczos": "Lanczos",
    "nearest": "Nearest",
    "none": "None",
}
"""The native hires fix's upscaler -> A1111 ``hr_upscaler`` ("model": the ESRGAN file's name)."""


def sampler_name(sample_method: str | None) -> str:
    """The A1111 name of a sample method; the library's own name when A1111 has none."""
    if sample_method is None:
        return "Default"
    return SAMPLER_NAMES.get(sample_method, sample_method)


def scheduler_label(scheduler: str | None) -> str | None:
    """The A1111 "Schedule type" of a scheduler; None for the model's default (A1111 writes
    nothing for "Automatic")."""
    if scheduler is None:
        return None
    return SCHEDULER_LABELS.get(scheduler, scheduler)
