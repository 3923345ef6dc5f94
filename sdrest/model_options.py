"""Per-request components and load options: a request's :class:`ModelOptions` over a model spec.

A request may name its own VAE, TAESD or text encoders and its own load options (CPU placement,
flash attention, direct convolutions, seamless tiling). Each of these is fixed when the native
context is created, so the request gets a spec of its own: the engine keys its contexts by the
whole spec, loads the new one in the job's turn (a model switch like any other) and keeps recently
used ones while they fit ``--memory-budget-mb``. A request whose options equal the model's own
shares the model's context.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec

from sdrest.engine.base import ModelSpec
from sdrest.errors import InvalidRequestError, ModelNotFoundError
from sdrest.models import ModelRegistry, PathNotAllowedError, UnknownModelError
from sdrest.schemas import ModelOptions

# ModelOptions component -> the ModelSpec field it fills.
COMPONENT_SPEC_FIELDS: dict[str, str] = {
    "vae": "vae_path",
    "taesd": "taesd_path",
    "clip_l": "clip_l_path",
    "clip_g": "clip_g_path",
    "t5xxl": "t5xxl_path",
}
LOAD_OPTION_FIELDS: tuple[str, ...] = (
    "offload_to_cpu",
    "clip_on_cpu",
    "vae_on_cpu",
    "diffusion_flash_attn",
    "diffusion_conv_direct",
    "vae_conv_direct",
    "circular_x",
    "circular_y",
)


def component_file(registry: ModelRegistry, kind: str, value: str, field: str) -> str:
    """A component by registry name (type ``kind`` first) or by a path inside the models folder
    (relative, or absolute but inside it): 400 outside the folder, 404 when missing."""
    path = Path(value)
    if path.is_absolute() and "\x00" not in value:
        try:
            value = str(path.resolve().relative_to(registry.models_dir.resolve()))
        except ValueError:
            raise InvalidRequestError(
                f"{field}: {value!r} is outside the models folder", field=field
            ) from None
    try:
        return str(registry.resolve_component(kind, value))
    except PathNotAllowedError as exc:
        raise InvalidRequestError(f"{field}: {exc}", field=field) from exc
    except UnknownModelError as exc:
        raise ModelNotFoundError(f"{field}: {exc}", field=field) from exc


def apply_model_options(
    spec: ModelSpec, options: ModelOptions, registry: ModelRegistry
) -> ModelSpec:
    """``spec`` with the request's components and load options; ``spec`` itself when they change
    nothing (so the request shares the model's context)."""
    files: dict[str, str] = {}
    for kind, spec_field in COMPONENT_SPEC_FIELDS.items():
        value = getattr(options, kind)
        if value is not None:
            files[spec_field] = component_file(registry, kind, value, f"model_options.{kind}")
    load = {
        name: value for name in LOAD_OPTION_FIELDS if (value := getattr(options, name)) is not None
    }
    load_options = msgspec.structs.replace(spec.options, **load) if load else spec.options
    changed = dataclasses.replace(spec, options=load_options, **files)
    return spec if changed == spec else changed
