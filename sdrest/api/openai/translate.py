"""Translations of the OpenAI images bodies onto the canonical request (answers: ``responses``).

Field precedence, lowest first: the model's preset defaults < what the request implies (for edits,
the input image's size) < ``<sd_cpp_extra_args>`` in the prompt < explicit top-level fields. So a
client's own ``size``, ``n`` or ``steps`` always wins, and the native block fills in the rest.
(Uploaded edit images sit above all of them; the resolved model name is the last word.)

The model a request names is looked up once (:func:`choose_model`, through ``service.models``);
everything else here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from sdrest.api.common import compose_request, decode_json
from sdrest.api.extra_args import split_extra_args
from sdrest.api.openai.schemas import (
    OPENAI_MODEL_ALIASES,
    CommonFields,
    GenerationBody,
    ResponseFormat,
)
from sdrest.errors import InvalidRequestError, ModelNotFoundError, SdrestError
from sdrest.models import ModelEntry, ModelPreset
from sdrest.schemas import ImgGenRequest, RequestLayer, SampleLayer, sample_layer

Model = ModelEntry | ModelPreset

_generation_decoder = msgspec.json.Decoder(GenerationBody)
_SIZE = re.compile(r"\s*(\d{1,6})\s*[xX\u00d7]\s*(\d{1,6})\s*")
_FORMAT_ALIASES: Mapping[str, str] = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}


class ImagesJob(msgspec.Struct, frozen=True):
    """What to queue (the canonical request) and how to answer (from the original body)."""

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


class ModelLookup(Protocol):
    """What the translation asks of ``service.models`` (a ``ModelCatalog``)."""

    def find(self, identifier: str, type: str | None = None) -> Model:
        """A model or preset by any of its spellings (404)."""

    def generation_models(self) -> list[Model]:
        """Everything a request can name as "the model"."""

    def main_entry(self, name: str) -> ModelEntry:
        """The file that generates for ``name`` (404)."""

    def default(self) -> str:
        """The model a request that names none uses (400 when there is no unique one)."""

    def defaults_for(self, model: str | None) -> RequestLayer:
        """A model's default fields (its preset's, under the server's)."""


class ModelChoice(msgspec.Struct, frozen=True):
    """The model a request asked for, looked up once, and what the translation needs of it."""

    name: str | None
    """The registry model or preset; None for the server's default model."""
    defaults: RequestLayer
    """Its default fields, the lowest layer of the request."""
    architecture: str | None = None
    """The architecture of the file that generates (asked for by edits only; None when unknown)."""


Fields = TypeVar("Fields", bound=CommonFields)


class ParsedBody(msgspec.Struct, Generic[Fields], frozen=True):
    """A decoded body with its prompt split from its ``<sd_cpp_extra_args>`` block."""

    fields: Fields
    prompt: str
    """The prompt without the block."""
    extra: dict[str, Any]  # the native block: a partial request layer, free-form by nature

    @property
    def model_names(self) -> list[str]:
        """The models the request names, in the order they count: top level, then the block's."""
        names = [self.fields.model, self.extra.get("model")]
        return [name for name in names if isinstance(name, str)]


def parse_body(fields: Fields) -> ParsedBody[Fields]:
    """Split the native block out of the prompt (400 for a bad block or an empty prompt)."""
    prompt, extra = split_extra_args(fields.prompt)
    if not prompt.strip():
        raise InvalidRequestError("prompt is empty", field="prompt")
    return ParsedBody(fields, prompt, extra)


def resolve_model(name: str | None, models: ModelLookup) -> Model | None:
    """A generation model or preset by any spelling ``service.models`` accepts; None for the
    server's default model.

    OpenAI's own model names mean the default model (stock clients hard-code them), unless the
    registry holds a model of that very name. Anything else is a 404 ``model_not_found`` naming
    what exists.
    """
    if name is None:
        return None
    try:
        found: Model | None = models.find(name)
    except ModelNotFoundError:
        found = None
    if isinstance(found, ModelPreset) or (isinstance(found, ModelEntry) and found.generates):
        return found
    if name in OPENAI_MODEL_ALIASES:
        return None
    available = ", ".join(sorted(model.name for model in models.generation_models())) or "none"
    raise ModelNotFoundError(f"model {name!r} not found; available: {available}", field="model")


def choose_model(
    parsed: ParsedBody[Any], models: ModelLookup, *, edit: bool = False
) -> ModelChoice:
    """THE one lookup of the model a request names (the first name that is not an OpenAI
    alias), with its defaults; ``edit``: also the architecture of the file that generates."""
    found: Model | None = None
    for name in parsed.model_names:
        found = resolve_model(name, models)
        if found is not None:
            break
    chosen = found.name if found is not None else None
    defaults = models.defaults_for(chosen)
    architecture = _architecture(found, models) if edit else None
    return ModelChoice(chosen, defaults, architecture)


def _architecture(found: Model | None, models: ModelLookup) -> str | None:
    try:
        if isinstance(found, ModelEntry):
            return found.architecture
        return models.main_entry(found.name if found is not None else models.default()).architecture
    except SdrestError:
        return None  # no default model, or a preset without a usable file: planning says later


def _explicit(body: CommonFields, prompt: str) -> RequestLayer:
    """The canonical fields the client set explicitly (top level), nothing else."""
    out: RequestLayer = {"prompt": prompt}
    size = parse_size(body.size)
    if size is not None:
        out["width"], out["height"] = size
    fmt = output_format(body.output_format)
    if fmt is not None:
        out["output_format"] = fmt
    if body.output_compression is not None:
        out["output_compression"] = max(0, min(100, body.output_compression))
    if body.n is not None:
        out["batch_count"] = body.n
    if body.negative_prompt is not None:
        out["negative_prompt"] = body.negative_prompt
    if body.seed is not None:
        out["seed"] = body.seed
    sample = _sample_params(body)
    if sample:
        out["sample_params"] = sample
    if isinstance(body, GenerationBody) and body.lora is not None:
        out["lora"] = msgspec.to_builtins(body.lora)
    return out


def _sample_params(body: CommonFields) -> SampleLayer:
    return sample_layer(
        steps=body.steps, method=body.sampler, scheduler=body.scheduler, cfg=body.cfg_scale
    )


def build_request(
    parsed: ParsedBody[Any],
    model: ModelChoice,
    *,
    implied: RequestLayer | None = None,
    attached: RequestLayer | None = None,
) -> ImagesJob:
    """Layer the request (see the module docstring) into one canonical request.

    ``implied`` sits above the preset defaults (an edit's image size); ``attached`` sits above
    everything (uploaded images: the native block cannot replace the files that were sent).
    """
    body = parsed.fields
    request = compose_request(
        model.defaults,
        implied or {},
        parsed.extra,
        _explicit(body, parsed.prompt),
        attached or {},
        {"model": model.name},
    )
    return ImagesJob(
        request=request,
        response_format=body.response_format or "b64_json",
        revised_prompt=parsed.prompt if parsed.prompt != body.prompt else None,
        stream=body.stream,
        partial_images=body.partial_images or 0,
    )


def generation_to_request(raw: bytes, models: ModelLookup) -> ImagesJob:
    """Decode a ``/v1/images/generations`` body (400 for malformed JSON or a bad field), look
    its model up and build the canonical request."""
    parsed = parse_body(decode_json(raw, _generation_decoder))
    return build_request(parsed, choose_model(parsed, models))
