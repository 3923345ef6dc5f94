"""Pure translations between the /api wire shapes and the service's structs.

Nothing here touches the network, the disk or the engine: routes call these with the values they
looked up, and the unit tests call them directly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import msgspec

from sdrest.api.common import convert, decode_json
from sdrest.api.rest.errors import ValidationFailedError
from sdrest.api.rest.schemas import GenerateBody, UpscaleBody
from sdrest.errors import InvalidRequestError
from sdrest.schemas import ImgGenRequest, Job, UpscaleRequest
from sdrest.settings import LoadOptions, deep_merge

T = TypeVar("T")
Mode = Literal["text2img", "img2img", "inpainting", "controlnet"]

# Spec field -> canonical dotted path (also used to name fields in errors the way clients sent
# them: a limit error on ``sample_params.sample_steps`` is reported as ``steps``).
FIELD_PATHS: dict[str, str] = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "width": "width",
    "height": "height",
    "steps": "sample_params.sample_steps",
    "cfg_scale": "sample_params.guidance.txt_cfg",
    "distilled_guidance": "sample_params.guidance.distilled_guidance",
    "sampling_method": "sample_params.sample_method",
    "scheduler": "sample_params.scheduler",
    "batch_count": "batch_count",
    "clip_skip": "clip_skip",
    "strength": "strength",
    "init_image": "init_image",
    "mask_image": "mask_image",
    "control_image": "control_image",
    "control_strength": "control_strength",
    "output_format": "output_format",
    "output_compression": "output_compression",
    "model_name": "model",
}
WIRE_FIELDS: dict[str, str] = {path: name for name, path in FIELD_PATHS.items()}

# Request load option -> the server's LoadOptions field (and its flag, for the message).
LOAD_OPTIONS: dict[str, str] = {
    "offload_params_to_cpu": "offload_to_cpu",
    "clip_on_cpu": "clip_on_cpu",
    "vae_on_cpu": "vae_on_cpu",
    "diffusion_flash_attn": "diffusion_flash_attn",
    "diffusion_conv_direct": "diffusion_conv_direct",
    "vae_conv_direct": "vae_conv_direct",
}
COMPONENT_FIELDS: dict[str, str] = {
    "vae_path": "vae_path",
    "vae_model": "vae_path",
    "clip_l_path": "clip_l_path",
    "clip_g_path": "clip_g_path",
    "t5xxl_path": "t5xxl_path",
    "taesd_path": "taesd_path",
}
FOLDER_FIELDS: dict[str, str] = {"embedding_dir": "embedding", "lora_model_dir": "lora"}

STATUS_NAMES: dict[str, str] = {
    "queued": "queued",
    "generating": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


def decode(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode a wire body: malformed JSON is INVALID_PARAMETERS, a wrong field VALIDATION_ERROR."""
    return decode_json(body, decoder, invalid=ValidationFailedError)


def wire_field(path: str | None) -> str | None:
    """A canonical field path as the client named it (unknown paths unchanged)."""
    if path is None:
        return None
    return WIRE_FIELDS.get(path, path)


def parse_seed(value: int | str | None) -> int | None:
    """``"random"``, ``""`` or a negative number -> -1 (random); a number or numeric string."""
    if value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else -1
    text = value.strip().lower()
    if text in ("", "random", "rand", "-1"):
        return -1
    try:
        seed = int(text)
    except ValueError:
        raise ValidationFailedError(
            f'seed must be a number or "random", got {value!r}', field="seed"
        ) from None
    return seed if seed >= 0 else -1


def sampler_name(value: str) -> str:
    """The spec's sampler spellings (``dpmpp2m``, ``Euler a``) -> the library's (``dpm++2m``)."""
    name = value.strip().lower().replace(" ", "_")
    return name.replace("dpmpp", "dpm++")


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def load_option_problems(body: GenerateBody, load: LoadOptions) -> list[str]:
    """Requested load options that differ from the server's (they cannot be honoured per job)."""
    problems = []
    for field, option in LOAD_OPTIONS.items():
        wanted = getattr(body, field)
        if wanted is not None and wanted != getattr(load, option):
            flag = "--" + option.replace("_", "-")
            problems.append(
                f"{field}={str(wanted).lower()} differs from the server setting {flag}"
                f"={str(getattr(load, option)).lower()}"
            )
    return problems


def to_request(
    body: GenerateBody,
    mode: Mode,
    model: str | None,
    defaults: Mapping[str, Any],
    load: LoadOptions,
) -> ImgGenRequest:
    """A generation body -> the canonical request. ``model`` is the resolved registry name (None =
    the server's default); ``defaults`` are that model's preset defaults (for fields left out).
    """
    problems = load_option_problems(body, load)
    if problems:
        raise InvalidRequestError(
            "load options are server-wide and cannot change per request: " + "; ".join(problems),
            field=next(f for f in LOAD_OPTIONS if getattr(body, f) is not None),
        )
    init_image = body.init_image or body.source_image
    if mode == "text2img" and (init_image or body.mask_image):
        raise InvalidRequestError(
            "text2img takes no init_image or mask_image: use /api/generate/img2img or"
            " /api/generate/inpainting",
            field="init_image",
        )
    if mode in ("img2img", "inpainting") and not init_image:
        raise InvalidRequestError(f"{mode} needs an init_image (base64)", field="init_image")
    if mode == "inpainting" and not body.mask_image:
        raise InvalidRequestError("inpainting needs a mask_image (base64)", field="mask_image")
    if mode == "img2img" and body.mask_image:
        raise InvalidRequestError(
            "img2img takes no mask_image: use /api/generate/inpainting", field="mask_image"
        )
    if mode == "controlnet" and not body.control_image:
        raise InvalidRequestError("controlnet needs a control_image", field="control_image")
    if not body.prompt.strip():
        raise InvalidRequestError("prompt is required", field="prompt")

    raw: dict[str, Any] = {}
    values: dict[str, Any] = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "width": body.width,
        "height": body.height,
        "steps": body.steps,
        "cfg_scale": body.cfg_scale,
        "distilled_guidance": body.distilled_guidance,
        "sampling_method": None
        if body.sampling_method is None
        else sampler_name(body.sampling_method),
        "scheduler": body.scheduler,
        "batch_count": body.batch_count,
        "clip_skip": body.clip_skip,
        "strength": body.strength,
        "init_image": init_image,
        "mask_image": body.mask_image,
        "control_image": body.control_image,
        "control_strength": body.control_strength,
        "output_format": body.output_format,
        "output_compression": body.output_compression,
    }
    for name, value in values.items():
        if value is not None:
            _set(raw, FIELD_PATHS[name], value)
    seed = parse_seed(body.seed)
    if seed is not None:
        raw["seed"] = seed
    if body.vae_tiling is not None:
        raw["vae_tiling_params"] = {"enabled": body.vae_tiling}
    merged = deep_merge(defaults, raw) if defaults else raw
    merged["model"] = model
    try:
        return convert(merged, ImgGenRequest)
    except InvalidRequestError as exc:
        field = wire_field(exc.field)
        message = exc.message
        if exc.field and field != exc.field:
            message = message.replace(f"`$.{exc.field}`", f"`$.{field}`")
        raise ValidationFailedError(message, field=field) from exc


def to_upscale(body: UpscaleBody) -> UpscaleRequest:
    """An upscale body -> the canonical upscale request (the file decides the factor)."""
    image = body.image or body.init_image
    if not image:
        raise InvalidRequestError("upscale needs an image (base64)", field="image")
    upscaler = body.esrgan_model or body.model_name
    if not upscaler:
        raise InvalidRequestError("upscale needs an esrgan_model name", field="esrgan_model")
    if not 1 <= body.repeats <= 4:
        raise ValidationFailedError("repeats must be between 1 and 4", field="repeats")
    return UpscaleRequest(
        image=image, upscaler=upscaler, repeats=body.repeats, output_format=body.output_format
    )


def queued_reply(job: Job, position: int) -> dict[str, Any]:
    """The answer to every ``POST /api/generate/*``: the job id is the request id."""
    return {
        "request_id": job.id,
        "job_id": job.id,
        "status": "queued",
        "position": position,
        "message": "Generation request queued successfully",
        "status_url": f"/api/queue/job/{job.id}",
    }


def output_url(job_id: str, filename: str, *, thumb: bool = False) -> str:
    """Public download URL of an output file (``thumb`` for the 200 px JPEG thumbnail)."""
    url = f"/api/queue/job/{job_id}/output/{filename}"
    return url + "?thumb=true" if thumb else url


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def timing(job: Job, now: float) -> dict[str, Any]:
    """Progress numbers of a job: fraction, steps, elapsed/remaining (ms), speed (steps/s).

    ``progress`` and the steps count sampling (or upscaling tiles) only: while the model loads,
    the library counts tensors, which would make the bar run to 100% and back to 0.
    """
    progress = job.progress
    elapsed = (job.completed or now) - job.started if job.started is not None else 0.0
    stepping = progress.phase not in ("queued", "loading")
    step, steps = (progress.step, progress.steps) if stepping else (0, _planned_steps(job))
    remaining: int | None = None
    if job.status == "generating" and stepping and steps and progress.seconds_per_step > 0:
        remaining = round(progress.seconds_per_step * (steps - step) * 1000)
    elif job.finished:
        remaining = 0
    if job.status == "completed":
        fraction = 1.0
    else:
        fraction = min(1.0, step / steps) if stepping and steps else 0.0
    speed = 1.0 / progress.seconds_per_step if stepping and progress.seconds_per_step > 0 else 0.0
    return {
        "progress": round(fraction, 4),
        "current_step": step,
        "total_steps": steps,
        "phase": progress.phase,
        "time_elapsed": max(0, round(elapsed * 1000)),
        "time_remaining": remaining,
        "speed": round(speed, 3),
    }


def _planned_steps(job: Job) -> int:
    return job.request.sample_params.sample_steps if job.request is not None else 0


def _parameters(job: Job) -> dict[str, Any]:
    if job.upscale is not None:
        return {"esrgan_model": job.upscale.upscaler, "repeats": job.upscale.repeats}
    request = job.request
    if request is None:
        return {}
    sample = request.sample_params
    return {
        "width": request.width,
        "height": request.height,
        "steps": sample.sample_steps,
        "cfg_scale": sample.guidance.txt_cfg,
        "sampling_method": sample.sample_method,
        "scheduler": sample.scheduler,
        "seed": request.seed,
        "batch_count": request.batch_count,
        "clip_skip": request.clip_skip,
        "strength": request.strength,
    }


JOB_TYPES: dict[str, str] = {"img_gen": "generation", "upscale": "upscale", "convert": "convert"}


def job_view(job: Job, position: int, now: float | None = None) -> dict[str, Any]:
    """The spec's job document (queue listing and ``GET /api/queue/job/{id}``)."""
    now = time.time() if now is None else now
    outputs = []
    if job.status == "completed" and job.result is not None:
        outputs = [
            {
                "index": ref.index,
                "filename": ref.filename,
                "url": output_url(job.id, ref.filename),
                "thumbnail_url": output_url(job.id, ref.filename, thumb=True),
                "width": ref.width,
                "height": ref.height,
                "seed": ref.seed,
            }
            for ref in job.result.images
        ]
    request = job.request
    return {
        "id": job.id,
        "job_id": job.id,
        "type": JOB_TYPES.get(job.kind, job.kind),
        "status": STATUS_NAMES.get(job.status, job.status),
        "owner": job.owner,
        "family": job.family,
        "model": job.model,
        "prompt": request.prompt if request is not None else "",
        "negative_prompt": request.negative_prompt if request is not None else "",
        "queued_time": int(job.created),
        "start_time": _ts(job.started),
        "end_time": _ts(job.completed),
        "position": position,
        **timing(job, now),
        "parameters": _parameters(job),
        "outputs": outputs,
        "model_files": list(job.result.files) if job.result is not None else [],
        "error": None
        if job.error is None
        else {"code": job.error.code, "message": job.error.message},
    }


def ws_job_update(job: Job, now: float | None = None) -> dict[str, Any]:
    """``data`` of a WebSocket ``job_update`` message."""
    now = time.time() if now is None else now
    data: dict[str, Any] = {
        "job_id": job.id,
        "status": STATUS_NAMES.get(job.status, job.status),
        **timing(job, now),
    }
    if job.status == "completed" and job.result is not None:
        data["outputs"] = [output_url(job.id, ref.filename) for ref in job.result.images]
    if job.status == "generating" and job.progress.preview_step > 0:
        data["preview_url"] = preview_url(job.id, job.progress.preview_step)
    if job.error is not None:
        data["error"] = {"code": job.error.code, "message": job.error.message}
    return data


def preview_url(job_id: str, step: int) -> str:
    """The running job's live preview; ``step`` in the query makes each one a new URL."""
    return f"/api/queue/job/{job_id}/preview?step={step}"


def ws_message(kind: str, data: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
    """A WebSocket message: ``{"type", "data", "timestamp"}`` (timestamp in Unix ms)."""
    return {
        "type": kind,
        "data": dict(data),
        "timestamp": int((time.time() if now is None else now) * 1000),
    }


def parse_flag(value: str | None, name: str, default: bool = False) -> bool:
    """A boolean query parameter: true/1/yes/on or false/0/no/off."""
    if value is None:
        return default
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on", ""):  # a bare ``?thumb`` means yes
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidRequestError(f"{name} must be true or false, got {value!r}", field=name)


def parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``low..high`` (400 otherwise)."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequestError(f"{name} must be an integer, got {value!r}", field=name) from None
    if not low <= number <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}", field=name)
    return number
