"""From a canonical request to an engine plan: names resolved to files, images decoded.

Everything here runs before a job is queued, so bad input (unknown names, sizes past the limits,
undecodable images, paths outside the models folder) is a 4xx and never reaches the engine.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import cast

from PIL import Image

from sdrest.decode_gate import DecodeHold
from sdrest.engine.base import (
    ConvertPlan,
    GenerationPlan,
    ModelSpec,
    ResolvedLora,
    UpscalePlan,
)
from sdrest.engine.params import parse_cache_option
from sdrest.errors import ConflictError, InvalidRequestError, ModelNotFoundError
from sdrest.images import decode_input_image, input_image_size, to_mask, to_rgb
from sdrest.img2img_ops import MAX_MODEL_PASSES, check_tiled_upscale
from sdrest.jobs.downloads import DownloadPlan
from sdrest.model_options import apply_model_options
from sdrest.model_specs import find_preset, model_spec, registry_entry
from sdrest.models import (
    HeaderError,
    ModelRegistry,
    PathNotAllowedError,
    UnknownModelError,
    detect,
)
from sdrest.models.compat import architecture_mismatch, lora_mismatch
from sdrest.models.detect import DEFAULT_ESRGAN_SCALE, esrgan_scale
from sdrest.models.pull import PullOptions, parse_ref
from sdrest.schemas import (
    ConvertRequest,
    DownloadRequest,
    ImgGenRequest,
    Job,
    RequestLayer,
    UpscaleRequest,
)
from sdrest.settings import Limits, Settings, deep_merge


def request_defaults(name: str, settings: Settings, registry: ModelRegistry) -> RequestLayer:
    """Server-wide defaults under a preset's defaults (canonical field names); often nothing."""
    base: RequestLayer = {"vae_tiling_params": {"enabled": True}} if settings.vae_tiling else {}
    preset = find_preset(registry, name)
    if preset is None:
        return base
    # A preset's defaults are TOML of unknown shape: they are checked where the request layered
    # over them is converted (a bad one is a 400 naming the field), not here.
    return cast(RequestLayer, deep_merge(base, preset.defaults))


def check_limits(request: ImgGenRequest, limits: Limits) -> None:
    """Enforce the configured limits (the ones capabilities advertise)."""
    for field_name in ("width", "height"):
        value = getattr(request, field_name)
        if not limits.min_size <= value <= limits.max_size:
            raise InvalidRequestError(
                f"{field_name} must be between {limits.min_size} and {limits.max_size},"
                f" got {value}",
                field=field_name,
            )
    if request.batch_count > limits.max_batch:
        raise InvalidRequestError(
            f"batch_count must be at most {limits.max_batch}", field="batch_count"
        )
    check_prompt_length(request, limits)
    if request.sample_params.sample_steps > limits.max_steps:
        raise InvalidRequestError(
            f"sample_steps must be at most {limits.max_steps}", field="sample_params.sample_steps"
        )
    hires = request.hires
    if hires.enabled:
        width, height = hires.target_size(request.width, request.height)
        if not (
            limits.min_size <= width <= limits.max_size
            and limits.min_size <= height <= limits.max_size
        ):
            raise InvalidRequestError(
                f"the hires fix size {width}x{height} is outside {limits.min_size}.."
                f"{limits.max_size}",
                field="hires",
            )
        if hires.steps > limits.max_steps:
            raise InvalidRequestError(
                f"hires steps must be at most {limits.max_steps}", field="hires.steps"
            )


NATIVE_PROMPT_BYTES = 16 * 1024
"""A prompt's UTF-8 size past which no ``max_prompt_chars`` lets it through: the library's prompt
parser overflows the stack (SIGSEGV) at about 26 KB, whatever the model (README, limits)."""


def check_prompt_length(request: ImgGenRequest, limits: Limits) -> None:
    """``prompt`` and ``negative_prompt`` within ``max_prompt_chars`` (the native text encoders
    crash or take many GiB on long prompts; the README's limits section has the numbers)."""
    for field_name in ("prompt", "negative_prompt"):
        text: str = getattr(request, field_name)
        if len(text) > limits.max_prompt_chars:
            raise InvalidRequestError(
                f"{field_name} is {len(text)} characters long; at most"
                f" {limits.max_prompt_chars} are allowed",
                field=field_name,
            )
        if len(text) * 4 > NATIVE_PROMPT_BYTES and len(text.encode()) > NATIVE_PROMPT_BYTES:
            raise InvalidRequestError(
                f"{field_name} is {len(text.encode())} bytes of UTF-8; the native library takes"
                f" at most {NATIVE_PROMPT_BYTES}",
                field=field_name,
            )


def _decode(
    value: str | None, field_name: str, mode: str, limits: Limits, hold: DecodeHold | None
) -> Image.Image | None:
    if value is None:
        return None
    image = decode_input_image(value, field_name, limits, hold)
    return to_mask(image) if mode == "L" else to_rgb(image)  # no copy when already in mode


def _lora_path(registry: ModelRegistry, path: str, field_name: str) -> str:
    try:
        return registry.get(path, type="lora").path
    except UnknownModelError:
        pass  # not a registry name: try it as a path inside the LoRA folder
    try:
        return str(registry.resolve_relative("lora", path))
    except PathNotAllowedError as exc:
        raise InvalidRequestError(f"{field_name}: {exc}", field=field_name) from exc
    except UnknownModelError as exc:
        raise ModelNotFoundError(f"{field_name}: unknown LoRA {path!r}", field=field_name) from exc


def _check_lora_fits(registry: ModelRegistry, spec: ModelSpec, lora: str, field_name: str) -> None:
    main = spec.model_path or spec.diffusion_model_path
    if not main:
        return
    try:
        model_header, lora_header = registry.header(main), registry.header(lora)
    except (HeaderError, OSError):
        return  # unreadable here: the library gives its own error
    problem = architecture_mismatch(
        detect(model_header).architecture, detect(lora_header).architecture
    ) or lora_mismatch(model_header, lora_header)
    if problem:
        raise InvalidRequestError(f"{field_name}: {problem}", field=field_name)


def resolve_loras(
    request: ImgGenRequest, registry: ModelRegistry, spec: ModelSpec, *, check_shapes: bool = True
) -> tuple[ResolvedLora, ...]:
    """Structured LoRAs: a registry LoRA name or a path inside the LoRA folder, nothing else.

    With ``check_shapes`` each must fit the model: a mismatched LoRA would abort the native
    library (in worker mode that fails only its job, so the check may be turned off).
    """
    resolved = []
    for i, lora in enumerate(request.lora):
        field_name = f"lora[{i}].path"
        path = _lora_path(registry, lora.path, field_name)
        if check_shapes:
            _check_lora_fits(registry, spec, path, field_name)
        resolved.append(ResolvedLora(path, lora.multiplier, lora.is_high_noise))
    return tuple(resolved)


def plan_generation(
    request: ImgGenRequest,
    model_name: str,
    settings: Settings,
    registry: ModelRegistry,
    hold: DecodeHold | None = None,
) -> GenerationPlan:
    """Validate and resolve a request into a plan. CPU work (image decoding): run off the loop.
    ``hold``: the request's place in the decode budget (None: not gated, as on recovery)."""
    check_limits(request, settings.limits)
    parse_cache_option(request.cache_option)  # a bad option is a 400 now, not a failed job
    spec = apply_model_options(
        model_spec(model_name, settings, registry), request.model_options, registry
    )
    if spec.options.vae_decode_only and (request.init_image or request.ref_images):
        raise InvalidRequestError(
            "this server loads models with vae_decode_only: init_image and ref_images are"
            " unavailable",
            field="init_image",
        )
    limits = settings.limits
    tile_upscaler_path = _plan_tiled_upscale(request, limits, registry)
    refs = tuple(
        img
        for i, value in enumerate(request.ref_images)
        if (img := _decode(value, f"ref_images[{i}]", "RGB", limits, hold)) is not None
    )
    seed = request.seed if request.seed >= 0 else secrets.randbelow(2**31)
    return GenerationPlan(
        model=spec,
        request=request,
        seed=seed,
        init_image=_decode(request.init_image, "init_image", "RGB", limits, hold),
        mask_image=_decode(request.mask_image, "mask_image", "L", limits, hold),
        control_image=_decode(request.control_image, "control_image", "RGB", limits, hold),
        ref_images=refs,
        loras=resolve_loras(request, registry, spec, check_shapes=settings.engine.lora_shape_check),
        hires_upscaler_path=_hires_upscaler_path(request, registry),
        tile_upscaler_path=tile_upscaler_path,
        preview_method=settings.preview,
        preview_interval=max(1, settings.preview_interval),
    )


def _hires_upscaler_path(request: ImgGenRequest, registry: ModelRegistry) -> str:
    if not request.hires.enabled or request.hires.upscaler != "model":
        return ""
    return registry_entry(
        registry, request.hires.upscaler_model, "hires.upscaler_model", "upscaler"
    ).path


def _plan_tiled_upscale(request: ImgGenRequest, limits: Limits, registry: ModelRegistry) -> str:
    """Check an SD upscale's sizes from the init image's header before anything is decoded
    (an ESRGAN pass's own output included); returns its ESRGAN file ("" when none)."""
    tiled = request.tiled_upscale
    if not tiled.enabled:
        return ""
    if request.init_image is None or request.mask_image is not None:
        raise InvalidRequestError(
            "tiled_upscale needs an init_image and no mask_image", field="tiled_upscale"
        )
    width, height = input_image_size(request.init_image, "init_image", limits)
    scale = tiled.scale if tiled.upscaler != "none" else 1.0
    tile = (request.width, request.height)
    check_tiled_upscale((width, height), scale, tile, tiled.overlap, limits)
    if tiled.upscaler != "model":
        return ""
    field = "tiled_upscale.upscaler_model"
    path = registry_entry(registry, tiled.upscaler_model, field, "upscaler").path
    native = esrgan_native_scale(registry, path)
    factor = 1
    for _ in range(MAX_MODEL_PASSES):  # the passes the job runs: until the factor is reached
        if factor >= scale:
            break
        factor *= native
    check_upscale_size(width, height, factor, limits, field=field)
    return path


def plan_upscale(
    request: UpscaleRequest,
    settings: Settings,
    registry: ModelRegistry,
    hold: DecodeHold | None = None,
) -> UpscalePlan:
    """Resolve the upscaler by registry name, check the output size (from the image's header
    and the file's native scale) and only then decode the image."""
    entry = registry_entry(registry, request.upscaler, "upscaler", "upscaler")
    width, height = input_image_size(request.image, "image", settings.limits)
    factor = esrgan_native_scale(registry, entry.path) ** request.repeats
    check_upscale_size(width, height, factor, settings.limits)
    image = _decode(request.image, "image", "RGB", settings.limits, hold)
    assert image is not None
    return UpscalePlan(
        upscaler_path=entry.path,
        image=image,
        repeats=request.repeats,
        threads=settings.load.threads,
        output_format=request.output_format,
        output_compression=request.output_compression,
    )


def esrgan_native_scale(registry: ModelRegistry, path: str) -> int:
    """An ESRGAN file's native scale from its (cached) header; the larger default when the
    header does not tell (or cannot be read: the engine then reports its own error)."""
    try:
        scale = esrgan_scale(registry.header(path).tensors)
    except (HeaderError, OSError):
        scale = None
    return scale or DEFAULT_ESRGAN_SCALE


def check_upscale_size(
    width: int, height: int, factor: int, limits: Limits, field: str = "image"
) -> None:
    """THE output-size check of an ESRGAN upscale (every family, the library): ``width`` x
    ``height`` times ``factor`` (native scale ** repeats) may be at most ``limits.max_size``
    on each side, as a generation may; a 400 naming ``field`` before anything is queued."""
    out_w, out_h = width * factor, height * factor
    if max(out_w, out_h) > limits.max_size:
        raise InvalidRequestError(
            f"upscaling {width}x{height} by {factor}x gives {out_w}x{out_h}; the largest side"
            f" allowed is {limits.max_size}: send a smaller image or fewer repeats",
            field=field,
        )


def convert_target(models_dir: Path, source: Path, weight_type: str, output: str | None) -> Path:
    """Where a conversion writes: ``output`` (a relative ``.gguf`` path inside the models folder)
    or ``<source stem>.<weight type>.gguf`` beside the source; never outside, never over a file."""
    root = models_dir.resolve()
    if output is None:
        target = source.with_name(f"{source.stem}.{weight_type}.gguf")
    else:
        rel = Path(output)
        if rel.is_absolute() or ".." in rel.parts or rel.suffix.lower() != ".gguf":
            raise InvalidRequestError(
                "output_path must be a relative .gguf path inside the models folder",
                field="output_path",
            )
        target = root / rel
    # resolve() follows a symlinked parent folder: the real place must still be inside.
    if not target.parent.resolve().is_relative_to(root):
        raise InvalidRequestError(
            "output_path leads outside the models folder", field="output_path"
        )
    if target.exists():
        raise ConflictError(f"{target.name} already exists", field="output_path")
    return target


def plan_convert(request: ConvertRequest, registry: ModelRegistry) -> ConvertPlan:
    """Resolve a conversion: the source file by registry name, the target inside the models folder
    (``request.output_path`` is relative to it; None: beside the source)."""
    entry = registry_entry(registry, request.model, "model_name")
    target = convert_target(
        registry.models_dir, Path(entry.path), request.weight_type, request.output_path
    )
    return ConvertPlan(str(entry.path), str(target), request.weight_type)


def plan_download(
    request: DownloadRequest, settings: Settings, registry: ModelRegistry
) -> DownloadPlan:
    """Check a download's names (the hub is asked only when it runs): the repository and file
    paths, the revision; presets go to the config file the settings came from."""
    ref = parse_ref(request.repo, request.files)
    revision = request.revision
    if revision is not None and (not revision.strip() or len(revision) > 256 or ".." in revision):
        raise InvalidRequestError("revision must be a branch, tag or commit", field="revision")
    options = PullOptions(
        models_dir=registry.models_dir,
        config_file=Path(settings.config_file) if settings.config_file else None,
        revision=revision,
        all_files=request.all_files,
        presets=frozenset(p.name for p in registry.presets()),
    )
    return DownloadPlan(ref, options)


def plan_for_job(
    job: Job, settings: Settings, registry: ModelRegistry
) -> GenerationPlan | UpscalePlan | ConvertPlan | DownloadPlan:
    """Re-plan a stored job (after a restart)."""
    if job.download is not None:
        return plan_download(job.download, settings, registry)
    if job.upscale is not None:
        return plan_upscale(job.upscale, settings, registry)
    if job.convert is not None:
        return plan_convert(job.convert, registry)
    if job.request is None:
        raise InvalidRequestError("the stored job has no request")
    return plan_generation(job.request, job.model, settings, registry)
