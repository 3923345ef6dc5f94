"""Pure translations between the OpenAI images wire shapes and the service's structs.

Field precedence, lowest first: the model's preset defaults < what the request implies (for edits,
the input image's size) < ``<sd_cpp_extra_args>`` in the prompt < explicit top-level fields. So a
client's own ``size``, ``n`` or ``steps`` always wins, and the native block fills in the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from sdrest.api.common import convert, decode_json
from sdrest.api.extra_args import split_extra_args
from sdrest.api.openai.schemas import (
    OPENAI_MODEL_ALIASES,
    CommonFields,
    GenerationBody,
    OpenAIModel,
    ResponseFormat,
)
from sdrest.errors import InvalidRequestError, NotFoundError
from sdrest.models import ModelEntry, ModelPreset
from sdrest.schemas import ImgGenRequest, Job
from sdrest.settings import deep_merge

DefaultsFor = Callable[[str | None], Mapping[str, Any]]

_generation_decoder = msgspec.json.Decoder(GenerationBody)
_SIZE = re.compile(r"\s*(\d{1,6})\s*[xX\u00d7]\s*(\d{1,6})\s*")
_FORMAT_ALIASES: Mapping[str, str] = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}


class Translated(msgspec.Struct, frozen=True):
    """A canonical request plus what the reply needs from the original body."""

    request: ImgGenRequest
    response_format: ResponseFormat
    revised_prompt: str | None
    """The prompt as generated, when it differs from the one sent (extra-args block removed)."""
    stream: bool = False
    partial_images: int = 0


def parse_size(size: str | None) -> tuple[int, int] | None:
    """``"WxH"`` -> (W, H); None or ``"auto"`` -> None (the default applies)."""
    if size is None or size.strip().lower() in ("", "auto"):
        return None
    match = _SIZE.fullmatch(size)
    if match is None:
        raise InvalidRequestError(
            f"size must be WIDTHxHEIGHT (for example 512x512) or auto, got {size!r}",
            field="size",
        )
    return int(match.group(1)), int(match.group(2))


def output_format(value: str | None) -> str | None:
    """png, jpeg (or jpg) or webp, case-insensitive."""
    if value is None:
        return None
    fmt = _FORMAT_ALIASES.get(value.strip().lower())
    if fmt is None:
        raise InvalidRequestError(
            f"output_format must be png, jpeg or webp, got {value!r}", field="output_format"
        )
    return fmt


def resolve_model(name: str | None, known: Collection[str]) -> str | None:
    """A registry model or preset name; None for the server's default model.

    OpenAI's own model names mean the default model (stock clients hard-code them), unless the
    registry holds a model of that very name. Anything else is a 404 naming what exists.
    """
    if name is None or name in known:
        return name
    if name in OPENAI_MODEL_ALIASES:
        return None
    available = ", ".join(sorted(known)) or "none"
    raise NotFoundError(f"model {name!r} not found; available: {available}", field="model")


def _model(name: str | None, extra: Mapping[str, Any], known: Collection[str]) -> str | None:
    model = resolve_model(name, known)
    if model is None and isinstance(extra.get("model"), str):
        model = resolve_model(extra["model"], known)
    return model


def request_model(body: CommonFields, known_models: Collection[str]) -> str | None:
    """The model a request asks for: top-level ``model``, else the native block's; None = the
    server's default."""
    return _model(body.model, split_extra_args(body.prompt)[1], known_models)


def _explicit(body: CommonFields, prompt: str) -> dict[str, Any]:
    """The canonical fields the client set explicitly (top level), nothing else."""
    out: dict[str, Any] = {"prompt": prompt}
    size = parse_size(body.size)
    if size is not None:
        out["width"], out["height"] = size
    fmt = output_format(body.output_format)
    if fmt is not None:
        out["output_format"] = fmt
    if body.output_compression is not None:
        out["output_compression"] = max(0, min(100, body.output_compression))
    for src, dst in (
        ("n", "batch_count"),
        ("negative_prompt", "negative_prompt"),
        ("seed", "seed"),
    ):
        value = getattr(body, src)
        if value is not None:
            out[dst] = value
    sample: dict[str, Any] = {}
    for src, dst in (("steps", "sample_steps"), ("sampler", "sample_method")):
        value = getattr(body, src)
        if value is not None:
            sample[dst] = value
    if body.scheduler is not None:
        sample["scheduler"] = body.scheduler
    if body.cfg_scale is not None:
        sample["guidance"] = {"txt_cfg": body.cfg_scale}
    if sample:
        out["sample_params"] = sample
    if isinstance(body, GenerationBody) and body.lora is not None:
        out["lora"] = msgspec.to_builtins(body.lora)
    return out


def build_request(
    body: CommonFields,
    known_models: Collection[str],
    defaults_for: DefaultsFor,
    *,
    implied: Mapping[str, Any] | None = None,
    attached: Mapping[str, Any] | None = None,
) -> Translated:
    """Merge the layers (see the module docstring) into one canonical request.

    ``implied`` sits above the preset defaults (an edit's image size); ``attached`` sits above
    everything (uploaded images: the native block cannot replace the files that were sent).
    """
    prompt, extra = split_extra_args(body.prompt)
    if not prompt.strip():
        raise InvalidRequestError("prompt is empty", field="prompt")
    model = _model(body.model, extra, known_models)
    merged = deep_merge(dict(defaults_for(model)), implied or {})
    merged = deep_merge(merged, extra)
    merged = deep_merge(merged, _explicit(body, prompt))
    merged = deep_merge(merged, attached or {})
    merged["model"] = model
    request = convert(merged, ImgGenRequest)
    return Translated(
        request=request,
        response_format=body.response_format or "b64_json",
        revised_prompt=prompt if prompt != body.prompt else None,
        stream=body.stream,
        partial_images=body.partial_images or 0,
    )


def generation_to_request(
    raw: bytes, known_models: Collection[str], defaults_for: DefaultsFor
) -> Translated:
    """Decode a ``/v1/images/generations`` body (400 for malformed JSON or a bad field)."""
    body = decode_json(raw, _generation_decoder)
    return build_request(body, known_models, defaults_for)


def output_url(base_url: str, job_id: str, filename: str) -> str:
    """Absolute URL of an output image, as the /api family serves it."""
    return f"{base_url.rstrip('/')}/api/queue/job/{quote(job_id)}/output/{quote(filename)}"


def images_response(
    job: Job,
    translated: Translated,
    base_url: str,
    read_b64: Callable[[str], str],
) -> dict[str, Any]:
    """The reply to a completed job: ``{created, data: [...], output_format, size}``.

    ``read_b64(filename)`` returns an output file as base64 (file I/O stays with the caller).
    """
    if job.result is None:
        raise ValueError(f"job {job.id} has no result")
    data: list[dict[str, Any]] = []
    for ref in job.result.images:
        item: dict[str, Any]
        if translated.response_format == "url":
            item = {"url": output_url(base_url, job.id, ref.filename)}
        else:
            item = {"b64_json": read_b64(ref.filename)}
        if translated.revised_prompt is not None:
            item["revised_prompt"] = translated.revised_prompt
        data.append(item)
    body: dict[str, Any] = {
        "created": int(job.created),
        "data": data,
        "output_format": job.result.output_format,
    }
    if job.result.images:
        first = job.result.images[0]
        body["size"] = f"{first.width}x{first.height}"
    return body


def model_object(model: ModelEntry | ModelPreset, created: float) -> OpenAIModel:
    """One ``/v1/models`` entry; a file's mtime is its ``created``, a preset's the server start."""
    when = model.mtime if isinstance(model, ModelEntry) else created
    return OpenAIModel(id=model.name, created=int(when))


def models_list(models: Iterable[ModelEntry | ModelPreset], created: float) -> dict[str, Any]:
    """``GET /v1/models``: every generation model and preset."""
    return {
        "object": "list",
        "data": [msgspec.to_builtins(model_object(m, created)) for m in models],
    }
