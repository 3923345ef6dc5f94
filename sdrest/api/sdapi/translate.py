"""Pure translations: A1111 txt2img/img2img bodies -> the canonical request, jobs -> responses.

Precedence for each canonical field, lowest first: the model preset's defaults, the A1111 fields
the client sent (only those it sent), then the first ``<sd_cpp_extra_args>`` block in the prompt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from sdrest.api.common import compose_request
from sdrest.api.extra_args import split_extra_args
from sdrest.api.sdapi import imageprep, samplers, scripts
from sdrest.api.sdapi.prompt_loras import extract_prompt_loras
from sdrest.api.sdapi.responses import GenerationAnswer, InfoObject
from sdrest.api.sdapi.schemas import Img2ImgBody, Txt2ImgBody
from sdrest.decode_gate import DecodeHold
from sdrest.errors import InvalidRequestError
from sdrest.schemas import (
    HiresLayer,
    ImgGenRequest,
    Job,
    LoraSpec,
    ModelOptionsLayer,
    RequestLayer,
    SampleLayer,
    sample_layer,
)
from sdrest.settings import Limits

T = TypeVar("T")
SAMPLES_FORMATS: Mapping[str, str] = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}


@dataclass(frozen=True)
class Context:
    """What translation needs from the server, as plain values and callables (testable)."""

    defaults_for: Callable[[str | None], RequestLayer]
    """Preset defaults (canonical field names) of a model; None = the default model."""
    resolve_checkpoint: Callable[[str], str]
    """A1111 checkpoint title -> registry model name (raises 404)."""
    limits: Limits = field(default_factory=Limits)
    prompt_lora_names: Collection[str] | None = None
    """Registry LoRA names when ``<lora:...>`` tags are on; None = tags stay prompt text."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Options a client set through ``POST /options`` (``options_table.HONOURED``)."""
    resolve_vae: Callable[[str], str | None] = lambda name: None
    """An A1111 ``sd_vae`` value -> a registry VAE (None: the model's own; raises 404)."""
    upscaler_names: Sequence[str] = ("None", "Lanczos", "Nearest")
    """What ``/upscalers`` lists, in order (SD upscale's upscaler may be an index into it)."""


def samples_format(value: Any, field_name: str) -> str:
    """The canonical output format of an A1111 ``samples_format`` (png, jpg, webp)."""
    fmt = SAMPLES_FORMATS.get(str(value).strip().lower()) if isinstance(value, str) else None
    if fmt is None:
        raise InvalidRequestError(
            f"{field_name} must be one of png, jpg, webp; got {value!r}", field=field_name
        )
    return fmt


def _first(*values: T | None) -> T | None:
    return next((v for v in values if v is not None), None)


def _model(body: Txt2ImgBody, extra: Mapping[str, Any], ctx: Context) -> str | None:
    if extra.get("model"):
        return str(extra["model"])
    override = body.override_settings
    if override is not None and override.sd_model_checkpoint:
        return ctx.resolve_checkpoint(override.sd_model_checkpoint)
    return None


def _sample_fields(body: Txt2ImgBody) -> SampleLayer:
    sampler = _first(body.sampler_name, body.sampler_index)
    method, scheduler = samplers.resolve(sampler, body.scheduler)
    return sample_layer(
        steps=body.steps,
        method=method,
        scheduler=scheduler,
        cfg=body.cfg_scale,
        distilled=body.distilled_cfg_scale,
    )


def _option(body: Txt2ImgBody, ctx: Context, name: str) -> Any:
    """An option's value for this request: ``override_settings``, else the stored options."""
    override = body.override_settings
    value = getattr(override, name, None) if override is not None else None
    return value if value is not None else ctx.options.get(name)


def _option_fields(body: Txt2ImgBody, ctx: Context) -> RequestLayer:
    fields: RequestLayer = {}
    clip = _first(body.clip_skip, _option(body, ctx, "CLIP_stop_at_last_layers"))
    if clip is not None:
        fields["clip_skip"] = clip
    fmt = _option(body, ctx, "samples_format")
    if fmt is not None:
        fields["output_format"] = samples_format(fmt, "samples_format")
    quality = _option(body, ctx, "jpeg_quality")
    if isinstance(quality, int) and fields.get("output_format", "png") != "png":
        fields["output_compression"] = min(100, max(1, quality))
    if fields.get("output_format") == "webp" and _option(body, ctx, "webp_lossless") is True:
        fields["output_compression"] = 100  # what lossless WebP is here (see images.encode)
    if _option(body, ctx, "enable_pnginfo") is False:
        fields["embed_image_metadata"] = False
    vae = _option(body, ctx, "sd_vae")
    vae_name = ctx.resolve_vae(vae) if isinstance(vae, str) else None
    tiling = _first(body.tiling, _option(body, ctx, "tiling"))
    if vae_name is not None or tiling:
        # Both are load options of the library: the request gets its own model context.
        options: ModelOptionsLayer = {}
        if vae_name is not None:
            options["vae"] = vae_name
        if tiling:
            options["circular_x"] = options["circular_y"] = True
        fields["model_options"] = options
    return fields


def _batch_count(body: Txt2ImgBody) -> int | None:
    if body.batch_size is None and body.n_iter is None:
        return None
    # A1111 runs n_iter batches of batch_size; one job of the product gives the same images.
    return (body.batch_size or 1) * (body.n_iter or 1)


def _prompt_fields(body: Txt2ImgBody, prompt: str) -> RequestLayer:
    fields: RequestLayer = {"prompt": prompt}
    if body.negative_prompt is not None:
        fields["negative_prompt"] = body.negative_prompt
    if body.seed is not None:
        fields["seed"] = body.seed
    if body.width is not None:
        fields["width"] = body.width
    if body.height is not None:
        fields["height"] = body.height
    return fields


def _wire_fields(
    body: Txt2ImgBody, prompt: str, loras: list[LoraSpec], ctx: Context
) -> RequestLayer:
    fields = _prompt_fields(body, prompt)
    count = _batch_count(body)
    if count is not None:
        fields["batch_count"] = count
    sample = _sample_fields(body)
    if sample:
        fields["sample_params"] = sample
    fields.update(_option_fields(body, ctx))
    if body.lora:
        loras = [*body.lora, *loras]
    if loras:
        fields["lora"] = [msgspec.to_builtins(lora) for lora in loras]
    if body.extra_images is not None:
        fields["ref_images"] = list(body.extra_images)
    if isinstance(body, Img2ImgBody):
        fields.update(_img2img_fields(body))
        fields.update(scripts.script_fields(body, ctx.upscaler_names))
    else:
        scripts.script_fields(body, ctx.upscaler_names)  # txt2img has no script: refused
        if body.enable_hr:
            fields["hires"] = hires_fields(body)
    return fields


# A1111 hires upscaler names -> the library's; any other name is an ESRGAN file of the registry.
HIRES_UPSCALERS: dict[str, str] = {
    "Latent": "latent",
    "Latent (antialiased)": "latent_antialiased",
    "Latent (bicubic)": "latent_bicubic",
    "Latent (bicubic antialiased)": "latent_bicubic_antialiased",
    "Latent (nearest)": "latent_nearest",
    "Latent (nearest-exact)": "latent_nearest_exact",
    "Lanczos": "lanczos",
    "Nearest": "nearest",
    "None": "none",
}
HIRES_UPSCALER_NAMES = {name.lower(): native for name, native in HIRES_UPSCALERS.items()}
LATENT_UPSCALE_MODES = [name for name in HIRES_UPSCALERS if name.startswith("Latent")]
"""What ``/latent-upscale-modes`` lists: the latent modes the native hires fix has."""
_SAME = ("", "use same checkpoint", "use same sampler", "use same scheduler")


def hires_fields(body: Txt2ImgBody) -> HiresLayer:
    """``enable_hr`` and its ``hr_*`` fields onto the library's native hires fix (``hires``)."""
    for name in ("hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt"):
        value = getattr(body, name)
        first_pass = body.prompt if name == "hr_prompt" else None
        if value is not None and value.strip().lower() not in _SAME and value != first_pass:
            raise InvalidRequestError(
                f"{name} must be the same as the first pass: the native hires fix re-samples"
                " with the first pass's model, sampler and prompt",
                field=name,
            )
    fields: HiresLayer = {"enabled": True}
    upscaler = (body.hr_upscaler or "Latent").strip()
    native = HIRES_UPSCALER_NAMES.get(upscaler.lower())
    if native is None:
        fields["upscaler"], fields["upscaler_model"] = "model", upscaler
    else:
        fields["upscaler"] = native
    if body.hr_scale is not None:
        fields["scale"] = body.hr_scale
    if body.hr_resize_x:
        fields["width"] = body.hr_resize_x
    if body.hr_resize_y:
        fields["height"] = body.hr_resize_y
    if body.hr_second_pass_steps:
        fields["steps"] = body.hr_second_pass_steps
    if body.denoising_strength is not None:  # in txt2img, A1111 applies it to the second pass
        fields["denoising_strength"] = body.denoising_strength
    return fields


def _img2img_fields(body: Img2ImgBody) -> RequestLayer:
    fields: RequestLayer = {}
    if not body.init_images:
        raise InvalidRequestError("img2img needs one image in init_images", field="init_images")
    if len(body.init_images) > 1:
        raise InvalidRequestError("only one image in init_images is supported", field="init_images")
    fields["init_image"] = body.init_images[0]
    if body.mask is not None:
        fields["mask_image"] = body.mask
        fields["inpaint"] = scripts.inpaint_fields(body)
    if body.denoising_strength is not None:
        fields["strength"] = body.denoising_strength
    return fields


def to_request(body: Txt2ImgBody, ctx: Context, hold: DecodeHold | None = None) -> ImgGenRequest:
    """Translate a decoded txt2img or img2img body onto the canonical request (may decode images:
    call it off the event loop for img2img, under a decode ``hold``)."""
    prompt, extra = split_extra_args(body.prompt or "")
    tag_loras: list[LoraSpec] = []
    if ctx.prompt_lora_names is not None:
        prompt, tag_loras = extract_prompt_loras(prompt, ctx.prompt_lora_names)
    model = _model(body, extra, ctx)
    fields = _wire_fields(body, prompt, tag_loras, ctx)
    if model is not None:
        fields["model"] = model
    # The extra-args block wins over the A1111 fields, which win over the preset's defaults.
    request = compose_request(ctx.defaults_for(model), fields, extra)
    if isinstance(body, Img2ImgBody):
        request = _prepare_images(request, body, ctx, hold)
    return request


def _prepare_images(
    request: ImgGenRequest, body: Img2ImgBody, ctx: Context, hold: DecodeHold | None
) -> ImgGenRequest:
    limits = ctx.limits
    mode = body.resize_mode if body.resize_mode is not None else imageprep.JUST_RESIZE
    width, height = request.width, request.height
    # SD upscale and full-resolution inpainting start from the image as sent (the job crops
    # and scales it); A1111 resizes nothing either. The mask then follows the image's size.
    keep_size = request.tiled_upscale.enabled or request.inpaint.full_res
    init = request.init_image
    if init is not None:
        background = _option(body, ctx, "img2img_background_color")
        init, (width, height) = imageprep.prepare_init_image(
            init, width, height, mode, limits, hold=hold, keep_size=keep_size,
            background=background if isinstance(background, str) else "#ffffff",
        )  # fmt: skip
    mask = request.mask_image
    if mask is not None:
        mask = imageprep.prepare_mask(
            mask,
            width,
            height,
            mode,
            limits,
            invert=bool(body.inpainting_mask_invert),
            hold=hold,  # the blur is the job's (inpaint.mask_blur), so the infotext says it
        )
    return msgspec.structs.replace(request, init_image=init, mask_image=mask)


# -- responses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultInfo:
    """What a response needs besides the job: the echo, the model hash, the images."""

    parameters: dict[str, Any]
    """The body echoed as sent (free-form)."""
    images: list[str]
    model_hash: str | None = None
    batch_size: int | None = None
    n_iter: int | None = None
    subseed: int = -1
    img2img: bool = False


def info_object(job: Job, extra: ResultInfo) -> InfoObject:
    """The object ``info`` holds (as a JSON string), keyed as A1111's ``Processed.js()``."""
    request = job.request or ImgGenRequest()
    sample = request.sample_params
    count = len(job.result.images) if job.result else 0
    seeds = [ref.seed for ref in job.result.images] if job.result else []
    batch_size, n_iter = extra.batch_size or 1, extra.n_iter or 1
    if batch_size * n_iter != request.batch_count:  # extra args or a preset changed the count
        batch_size, n_iter = request.batch_count, 1
    return InfoObject(
        prompt=request.prompt,
        all_prompts=[request.prompt] * count,
        negative_prompt=request.negative_prompt,
        all_negative_prompts=[request.negative_prompt] * count,
        seed=seeds[0] if seeds else request.seed,
        all_seeds=seeds,
        subseed=extra.subseed,
        all_subseeds=[extra.subseed] * count,
        width=request.width,
        height=request.height,
        sampler_name=samplers.sampler_display_name(sample.sample_method) or "Default",
        scheduler=samplers.scheduler_display_name(sample.scheduler),
        cfg_scale=sample.guidance.txt_cfg,
        steps=sample.sample_steps,
        batch_size=batch_size,
        n_iter=n_iter,
        sd_model_name=job.model,
        sd_model_hash=extra.model_hash,
        denoising_strength=request.strength if extra.img2img else None,
        infotexts=list(job.result.infotexts) if job.result else [],
        job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(job.started or job.created)),
        clip_skip=request.clip_skip,
        job_id=job.id,
        interrupted=job.status == "cancelled",
    )


def generation_response(job: Job, extra: ResultInfo) -> GenerationAnswer:
    """``{images, parameters, info}`` with ``info`` a JSON string, as A1111 answers."""
    return GenerationAnswer(extra.images, extra.parameters, info_object(job, extra).as_json())


IMAGE_FIELDS = ("init_images", "mask", "extra_images")


def echo_parameters(raw: Mapping[str, Any], include_images: bool) -> dict[str, Any]:  # free-form
    """The request echoed back; input images left out (megabytes) unless asked for, as A1111."""
    echo = dict(raw)
    if not include_images:
        for name in IMAGE_FIELDS:
            if name in echo:
                echo[name] = None
    return echo
