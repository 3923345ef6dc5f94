"""Pure mappings from the canonical request and model spec onto the binding's keywords.

No native import here, so the translation is unit-tested without the library.
"""

from __future__ import annotations

import math
from typing import Any

from sdrest.engine.base import GenerationPlan, ModelSpec
from sdrest.errors import InvalidRequestError

# cache_option keys ("key=value,...") and the wrapper keyword each one sets.
CACHE_OPTION_TYPES: dict[str, type] = {
    "reuse_threshold": float,
    "start_percent": float,
    "end_percent": float,
    "error_decay_rate": float,
    "use_relative_threshold": bool,
    "reset_error_on_compute": bool,
    "Fn_compute_blocks": int,
    "Bn_compute_blocks": int,
    "residual_diff_threshold": float,
    "max_warmup_steps": int,
    "max_continuous_cached_steps": int,
    "taylorseer_n_derivatives": int,
    "taylorseer_skip_interval": int,
}


def parse_cache_option(text: str) -> dict[str, Any]:
    """Parse ``"key=value,key=value"`` into wrapper keywords; unknown keys are a 400."""
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in CACHE_OPTION_TYPES:
            raise InvalidRequestError(
                f"cache_option: unknown entry {item!r}; keys: {', '.join(CACHE_OPTION_TYPES)}",
                field="cache_option",
            )
        kind = CACHE_OPTION_TYPES[key]
        try:
            value: Any = raw.strip().lower() in ("1", "true") if kind is bool else kind(raw)
        except ValueError as exc:
            raise InvalidRequestError(
                f"cache_option: {key} must be {kind.__name__}", field="cache_option"
            ) from exc
        out["cache_" + key] = value
    return out


def generation_kwargs(plan: GenerationPlan) -> dict[str, Any]:
    """Map the canonical request onto the wrapper's ``generate_image`` keywords (pure)."""
    req = plan.request
    sample = req.sample_params
    guidance = sample.guidance
    tiling = req.vae_tiling_params
    kwargs: dict[str, Any] = {
        "prompt": req.prompt,
        "negative_prompt": req.negative_prompt,
        "clip_skip": req.clip_skip,
        "init_image": plan.init_image,
        "ref_images": list(plan.ref_images) or None,
        "auto_resize_ref_image": req.auto_resize_ref_image,
        "increase_ref_index": req.increase_ref_index,
        "mask_image": plan.mask_image,
        "width": req.width,
        "height": req.height,
        "cfg_scale": guidance.txt_cfg,
        "image_cfg_scale": guidance.img_cfg,
        "guidance": guidance.distilled_guidance,
        # "default" and INFINITY are the library's own "unset": the model's defaults apply.
        "scheduler": sample.scheduler or "default",
        "sample_method": sample.sample_method or "default",
        "sample_steps": sample.sample_steps,
        "eta": math.inf if sample.eta is None else sample.eta,
        "timestep_shift": sample.shifted_timestep,
        "sigmas": ",".join(repr(s) for s in sample.custom_sigmas) or None,
        "flow_shift": math.inf if sample.flow_shift is None else sample.flow_shift,
        "skip_layers": list(guidance.slg.layers),
        "skip_layer_start": guidance.slg.layer_start,
        "skip_layer_end": guidance.slg.layer_end,
        "slg_scale": guidance.slg.scale,
        "strength": req.strength,
        "seed": plan.seed,
        "batch_count": req.batch_count,
        "control_image": plan.control_image,
        "control_strength": req.control_strength,
        "vae_tiling": tiling.enabled,
        "vae_tile_overlap": tiling.target_overlap,
        "vae_tile_size": f"{tiling.tile_size_x}x{tiling.tile_size_y}",
        "vae_relative_tile_size": f"{tiling.rel_size_x}x{tiling.rel_size_y}",
        "cache_mode": req.cache_mode,
        "scm_mask": req.scm_mask,
        "scm_policy": "dynamic" if req.scm_policy_dynamic else "static",
    }
    if plan.preview_method != "none":
        kwargs.update(preview_method=plan.preview_method, preview_interval=plan.preview_interval)
    hires = req.hires
    if hires.enabled:
        kwargs.update(
            hires=True,
            hires_path=plan.hires_upscaler_path,
            hires_upscaler=hires.upscaler,
            hires_scale=hires.scale,
            hires_width=hires.width,
            hires_height=hires.height,
            hires_steps=hires.steps,
            hires_denoising_strength=hires.denoising_strength,
        )
    kwargs.update(parse_cache_option(req.cache_option))
    return kwargs


def load_kwargs(spec: ModelSpec, default_threads: int = -1) -> dict[str, Any]:
    """Map a model spec onto the wrapper's constructor keywords (pure); ``default_threads``
    stands for ``threads = 0`` (the engine passes the machine's physical core count)."""
    opts = spec.options
    return {
        "model_path": spec.model_path,
        "diffusion_model_path": spec.diffusion_model_path,
        "vae_path": spec.vae_path,
        "taesd_path": spec.taesd_path,
        "clip_l_path": spec.clip_l_path,
        "clip_g_path": spec.clip_g_path,
        "t5xxl_path": spec.t5xxl_path,
        "llm_path": spec.llm_path,
        "clip_vision_path": spec.clip_vision_path,
        "control_net_path": spec.control_net_path,
        "lora_model_dir": spec.lora_dir,
        "vae_decode_only": opts.vae_decode_only,
        "n_threads": opts.threads if opts.threads > 0 else default_threads,
        "wtype": opts.weight_type,
        "rng_type": opts.rng,
        "lora_apply_mode": opts.lora_apply_mode,
        "offload_params_to_cpu": opts.offload_to_cpu,
        "enable_mmap": opts.mmap,
        "keep_clip_on_cpu": opts.clip_on_cpu,
        "keep_control_net_on_cpu": opts.control_net_on_cpu,
        "keep_vae_on_cpu": opts.vae_on_cpu,
        "flash_attn": opts.flash_attn,
        "diffusion_flash_attn": opts.diffusion_flash_attn,
        "diffusion_conv_direct": opts.diffusion_conv_direct,
        "vae_conv_direct": opts.vae_conv_direct,
        "circular_x": opts.circular_x,
        "circular_y": opts.circular_y,
        "verbose": True,  # never the wrapper's process-wide stdout redirection
    }
