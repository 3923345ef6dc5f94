"""Which files make up a model: a registry name (or preset) resolved to a :class:`ModelSpec`.

Light on purpose (the registry and the engine's plain types only): ``sdrest serve`` resolves
its default model with it before it imports the rest of the server, to send the engine worker
the model's load as early as it can (see sdrest/head_start.py).
"""

from __future__ import annotations

from sdrest.engine.base import ModelSpec
from sdrest.errors import InvalidRequestError, ModelNotFoundError
from sdrest.models import (
    ModelEntry,
    ModelPreset,
    ModelRegistry,
    PathNotAllowedError,
    UnknownModelError,
)
from sdrest.settings import Settings

# Roles a user can pick as "the model" and the ModelSpec field each one fills.
_ROLE_FIELD = {"checkpoint": "model_path", "diffusion_model": "diffusion_model_path"}
_PRESET_COMPONENTS = {
    "vae": "vae_path",
    "taesd": "taesd_path",
    "clip_l": "clip_l_path",
    "clip_g": "clip_g_path",
    "t5xxl": "t5xxl_path",
    "llm": "llm_path",
    "clip_vision": "clip_vision_path",
}


def default_model_name(
    settings: Settings, registry: ModelRegistry, recent: str | None = None
) -> str:
    """The configured default model, else the only model there is, else (several) ``recent``
    (the most recently loaded) when it is one of them, else the first by name."""
    if settings.model:
        return settings.model
    names = sorted(m.name for m in registry.generation_models())
    if not names:
        raise InvalidRequestError(
            f"no model available: put a model file in {settings.models_path}", field="model"
        )
    return recent if recent in names else names[0]


def find_preset(registry: ModelRegistry, name: str) -> ModelPreset | None:
    """The preset called ``name``; None when there is none."""
    try:
        return registry.preset(name)
    except (KeyError, LookupError):
        return None


def _component_path(registry: ModelRegistry, kind: str, value: str) -> str:
    # The registry's own rule, the one presets are checked with at scan time: the component's
    # type first, then any name, then a path that stays inside the models folder.
    try:
        return str(registry.resolve_component(kind, value))
    except (UnknownModelError, PathNotAllowedError) as exc:
        raise ModelNotFoundError(f"preset {kind} {value!r}: {exc}") from exc


def registry_entry(
    registry: ModelRegistry, name: str, field: str, type: str | None = None
) -> ModelEntry:
    """A registry entry by name; 404 naming ``field`` when there is none."""
    try:
        return registry.get(name, type=type)
    except UnknownModelError as exc:
        raise ModelNotFoundError(str(exc), field=field) from exc


def model_spec(name: str, settings: Settings, registry: ModelRegistry) -> ModelSpec:
    """The files and load options that make up the model (or preset) called ``name``."""
    lora_dir = str(registry.models_dir / "lora")
    preset = find_preset(registry, name)
    if preset is not None:
        fields: dict[str, str] = {}
        main = preset.model or preset.diffusion_model
        if main:
            key = "model_path" if preset.model else "diffusion_model_path"
            fields[key] = _component_path(registry, key.removesuffix("_path"), main)
        for attr, field_name in _PRESET_COMPONENTS.items():
            value = getattr(preset, attr)
            if value:
                fields[field_name] = _component_path(registry, attr, value)
        return ModelSpec(name=name, lora_dir=lora_dir, options=settings.load, **fields)
    entry = registry_entry(registry, name, "model")
    field_name = _ROLE_FIELD.get(entry.role, _ROLE_FIELD.get(entry.type, ""))
    if not field_name:
        raise InvalidRequestError(
            f"{name!r} is a {entry.type} ({entry.role}), not a model that generates images",
            field="model",
        )
    return ModelSpec(
        name=name, lora_dir=lora_dir, options=settings.load, **{field_name: entry.path}
    )
