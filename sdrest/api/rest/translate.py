"""Pure translation of the /api request bodies onto the service's canonical requests.

Nothing here touches the network, the disk or the engine: handlers call these with the values
they looked up, and the unit tests call them directly. The answers live in
:mod:`sdrest.api.rest.views`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal, NamedTuple, TypeVar, cast

import msgspec

from sdrest.api.common import compose_request, decode_json
from sdrest.api.rest.errors import ValidationFailedError
from sdrest.api.rest.schemas import GenerateBody, UpscaleBody
from sdrest.errors import InvalidRequestError
from sdrest.schemas import (
    ImgGenRequest,
    LoraLayer,
    ModelOptionsLayer,
    RequestLayer,
    SampleLayer,
    UpscaleRequest,
    sample_layer,
)

T = TypeVar("T")
Mode = Literal["text2img", "img2img", "inpainting", "controlnet"]

# Spec field -> canonical dotted path (also used to name fields in errors the way clients sent
# them: a limit error on ``sample_params.sample_steps`` is reported as ``steps``).
FIELD_PATHS: dict[str, str] = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "width": "width",
    "height": "height",
    "scheduler": "sample_params.scheduler",
    "sampling_method": "sample_params.sample_method",
    "steps": "sample_params.sample_steps",
    "cfg_scale": "sample_params.guidance.txt_cfg",
    "distilled_guidance": "sample_params.guidance.distilled_guidance",
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
# Request component / load option -> its ModelOptions field (a request that sets one differently
# from the model gets a model context of its own, scheduled like any model switch).
COMPONENT_FIELDS: dict[str, str] = {
    "vae_path": "vae",
    "vae_model": "vae",
    "clip_l_path": "clip_l",
    "clip_g_path": "clip_g",
    "t5xxl_path": "t5xxl",
    "taesd_path": "taesd",
}
LOAD_OPTIONS: dict[str, str] = {
    "offload_params_to_cpu": "offload_to_cpu",
    "clip_on_cpu": "clip_on_cpu",
    "vae_on_cpu": "vae_on_cpu",
    "diffusion_flash_attn": "diffusion_flash_attn",
    "diffusion_conv_direct": "diffusion_conv_direct",
    "vae_conv_direct": "vae_conv_direct",
}
for _field, _option in (COMPONENT_FIELDS | LOAD_OPTIONS).items():
    FIELD_PATHS.setdefault(_field, f"model_options.{_option}")
FIELD_PATHS["tiling"] = "model_options.circular_x"
# The first spelling wins when two name one path (vae_path before its alias vae_model).
WIRE_FIELDS = {path: name for name, path in reversed(FIELD_PATHS.items())}
FOLDER_FIELDS: dict[str, str] = {"embedding_dir": "embedding", "lora_model_dir": "lora"}


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


# <lora:name>, <lora:name:0.8> (and A1111's <lora:name:te:unet>: the first weight is used).
_LORA_TAG = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>", re.IGNORECASE)


def prompt_loras(prompt: str) -> tuple[str, list[LoraLayer]]:
    """``<lora:name:weight>`` tags, as the C++ server's library reads them: (the prompt without
    the tags, one LoRA per tag). Names resolve later, inside the LoRA folder only."""
    loras: list[LoraLayer] = []
    for match in _LORA_TAG.finditer(prompt):
        name, raw = match[1].strip(), (match[2] or "").strip()
        try:
            weight = float(raw) if raw else 1.0
        except ValueError:
            raise ValidationFailedError(
                f"prompt tag <lora:{name}:{raw}>: the weight must be a number", field="prompt"
            ) from None
        if not name or not math.isfinite(weight) or abs(weight) > 100:
            raise ValidationFailedError(f"prompt tag {match[0]!r} is not valid", field="prompt")
        loras.append({"path": name, "multiplier": weight})
    if not loras:
        return prompt, loras
    return _LORA_TAG.sub("", prompt).strip(), loras  # as the library removes them


_raw_object = msgspec.json.Decoder(dict[str, msgspec.Raw])


def unknown_fields(body: bytes, known: type[msgspec.Struct]) -> list[str]:
    """Top-level fields of a JSON object body that ``known`` does not declare, in body order
    (their values are not decoded)."""
    fields = set(known.__struct_fields__)
    try:
        names = _raw_object.decode(body)
    except msgspec.ValidationError:
        return []  # not an object: the typed decode has said so already
    return [name for name in names if name not in fields]


def unknown_field_warnings(unknown: list[str], strict: bool) -> list[str]:
    """The warnings of fields a client sent that this server does not know; with ``strict``
    (``--strict-requests``) the first one is a 400 instead."""
    if unknown and strict:
        raise ValidationFailedError(
            f"unknown field `{unknown[0]}` (the server runs with --strict-requests)",
            field=unknown[0],
        )
    return [f"unknown field `{name}` ignored" for name in unknown]


def _model_options(body: GenerateBody) -> ModelOptionsLayer:
    """Components and load options the body sets (the rest: as the model is configured)."""
    layer: dict[str, object] = {}
    for field, option in (COMPONENT_FIELDS | LOAD_OPTIONS).items():
        value = getattr(body, field)
        if value is not None:
            layer[option] = value
    if body.tiling:
        layer["circular_x"] = layer["circular_y"] = True
    return cast(ModelOptionsLayer, layer)


class _Images(NamedTuple):
    """The images a mode needs (field, how to name it) and the ones it refuses."""

    needs: tuple[tuple[str, str], ...] = ()
    refuses: tuple[str, ...] = ()
    instead: str = ""
    """The route to use for the refused images."""


MODE_IMAGES: dict[Mode, _Images] = {
    "text2img": _Images(
        refuses=("init_image", "mask_image"),
        instead="/api/generate/img2img or /api/generate/inpainting",
    ),
    "img2img": _Images(
        needs=(("init_image", "an init_image (base64)"),),
        refuses=("mask_image",),
        instead="/api/generate/inpainting",
    ),
    "inpainting": _Images(
        needs=(("init_image", "an init_image (base64)"), ("mask_image", "a mask_image (base64)"))
    ),
    "controlnet": _Images(needs=(("control_image", "a control_image"),)),
}
"""What each generation route requires of the request's images (checked in this order)."""


def check_mode(mode: Mode, images: Mapping[str, str | None]) -> None:
    """400 naming the field when ``images`` (field -> base64 or None) do not suit ``mode``."""
    rule = MODE_IMAGES[mode]
    for field, what in rule.needs:
        if not images[field]:
            raise InvalidRequestError(f"{mode} needs {what}", field=field)
    if any(images[field] for field in rule.refuses):
        raise InvalidRequestError(
            f"{mode} takes no {' or '.join(rule.refuses)}: use {rule.instead}",
            field=rule.refuses[0],
        )


def _sample_fields(body: GenerateBody) -> SampleLayer:
    method = body.sampling_method
    return sample_layer(
        steps=body.steps,
        method=None if method is None else sampler_name(method),
        scheduler=body.scheduler,
        cfg=body.cfg_scale,
        distilled=body.distilled_guidance,
    )


def _fields(body: GenerateBody, init_image: str | None) -> RequestLayer:
    """The fields the body gives, as a partial canonical request (the paths of ``FIELD_PATHS``,
    in its order)."""
    layer: RequestLayer = {"prompt": body.prompt, "negative_prompt": body.negative_prompt}
    if body.width is not None:
        layer["width"] = body.width
    if body.height is not None:
        layer["height"] = body.height
    sample = _sample_fields(body)
    if sample:
        layer["sample_params"] = sample
    if body.batch_count is not None:
        layer["batch_count"] = body.batch_count
    if body.clip_skip is not None:
        layer["clip_skip"] = body.clip_skip
    if body.strength is not None:
        layer["strength"] = body.strength
    layer.update(_image_fields(body, init_image))
    layer.update(_output_fields(body))
    prompt, tag_loras = prompt_loras(body.prompt)
    layer["prompt"] = prompt
    loras = [msgspec.to_builtins(lora) for lora in body.lora or ()] + tag_loras
    if loras:
        layer["lora"] = loras
    options = _model_options(body)
    if options:
        layer["model_options"] = options
    return layer


def _image_fields(body: GenerateBody, init_image: str | None) -> RequestLayer:
    layer: RequestLayer = {}
    if init_image is not None:
        layer["init_image"] = init_image
    if body.mask_image is not None:
        layer["mask_image"] = body.mask_image
    if body.control_image is not None:
        layer["control_image"] = body.control_image
    if body.control_strength is not None:
        layer["control_strength"] = body.control_strength
    return layer


def _output_fields(body: GenerateBody) -> RequestLayer:
    layer: RequestLayer = {}
    if body.output_format is not None:
        layer["output_format"] = body.output_format
    if body.output_compression is not None:
        layer["output_compression"] = body.output_compression
    seed = parse_seed(body.seed)
    if seed is not None:
        layer["seed"] = seed
    if body.vae_tiling is not None:
        layer["vae_tiling_params"] = {"enabled": body.vae_tiling}
    return layer


def to_request(
    body: GenerateBody, mode: Mode, model: str | None, defaults: RequestLayer
) -> ImgGenRequest:
    """A generation body -> the canonical request. ``model`` is the resolved registry name (None =
    the server's default); ``defaults`` are that model's preset defaults (for fields left out).
    Components and load options become the request's ``model_options``; ``<lora:...>`` prompt
    tags and ``lora`` entries its ``lora`` list.
    """
    init_image = body.init_image or body.source_image
    images = {
        "init_image": init_image,
        "mask_image": body.mask_image,
        "control_image": body.control_image,
    }
    check_mode(mode, images)
    if not body.prompt.strip():
        raise InvalidRequestError("prompt is required", field="prompt")
    try:
        # Precedence: the model's defaults, then what the body gives; the model as resolved.
        return compose_request(defaults, _fields(body, init_image), {"model": model})
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
    try:
        return UpscaleRequest(
            image=image, upscaler=upscaler, repeats=body.repeats, output_format=body.output_format
        )
    except InvalidRequestError as exc:  # the request checks its own ranges (repeats)
        raise ValidationFailedError(exc.message, field=exc.field) from exc
