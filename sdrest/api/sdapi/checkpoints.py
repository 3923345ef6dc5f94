"""A1111 checkpoint titles <-> registry model names.

A1111 names a checkpoint by its title, ``"model.safetensors [0123456789]"`` (file name and the
10-character SHA-256 prefix), and clients send back whatever they last saw: the title, the file
name, the stem, sometimes the hash alone. All of them map onto the registry's generation models
(files and presets) here, in one place, so ``override_settings``, ``options`` and ``sd-models``
agree.
"""

from __future__ import annotations

import re
from pathlib import Path

from sdrest.errors import NotFoundError
from sdrest.models import ModelEntry, ModelPreset, ModelRegistry
from sdrest.models.hashing import short_hash

_TITLE = re.compile(r"^(?P<name>.*?)\s*\[(?P<hash>[0-9a-fA-F]{8,64})\]$")
_HASH = re.compile(r"^[0-9a-fA-F]{8,64}$")


def checkpoint_title(name: str, registry: ModelRegistry) -> str:
    """The A1111 title of a model: ``"file.safetensors [hash]"``; a preset's title is its name.

    The hash part appears once the background hashing has reached the file.
    """
    model = _find(name, registry)
    if model is None or isinstance(model, ModelPreset):
        return name
    return title_of_model(model, registry.sha256(model.name, model.type))


def title_of_model(model: ModelEntry | ModelPreset, sha256: str | None) -> str:
    """:func:`checkpoint_title` for a model already found, with its hash already read."""
    if isinstance(model, ModelPreset):
        return model.name
    filename = Path(model.path).name
    return f"{filename} [{short_hash(sha256)}]" if sha256 else filename


def _find(name: str, registry: ModelRegistry) -> ModelEntry | ModelPreset | None:
    for model in registry.generation_models():
        if model.name == name:
            return model
    return None


def _names(model: ModelEntry | ModelPreset) -> set[str]:
    if isinstance(model, ModelPreset):
        return {model.name.lower()}
    path = Path(model.path)
    relpath = Path(model.relpath)
    names = (model.name, path.name, path.stem, str(relpath), str(relpath.with_suffix("")))
    return {n.lower() for n in names}


def resolve_checkpoint(title: str, registry: ModelRegistry) -> str:
    """The registry name (file stem or preset name) a title, file name, path or hash names.

    Matching ignores case. A hash part that contradicts the file's known hash is refused rather
    than quietly loading another file of the same name. Unknown -> 404 listing the models.
    """
    text = title.strip()
    match = _TITLE.match(text)
    wanted_hash = match["hash"].lower() if match else None
    base = (match["name"] if match else text).strip()
    models = registry.generation_models()
    if base:
        key = base.lower()
        for model in models:
            if key in _names(model):
                _check_hash(model, wanted_hash, registry, title)
                return model.name
    else:
        return _by_hash(wanted_hash or "", models, registry, title)
    if _HASH.match(base):
        return _by_hash(base.lower(), models, registry, title)
    raise _unknown(title, models)


def _check_hash(
    model: ModelEntry | ModelPreset, wanted: str | None, registry: ModelRegistry, title: str
) -> None:
    if wanted is None or isinstance(model, ModelPreset):
        return
    known = registry.sha256(model.name, model.type)
    if known is not None and not known.lower().startswith(wanted):
        raise NotFoundError(
            f"checkpoint {title!r}: {model.name} has hash {known[:10]}, not {wanted}",
            field="sd_model_checkpoint",
        )


def _by_hash(
    wanted: str, models: list[ModelEntry | ModelPreset], registry: ModelRegistry, title: str
) -> str:
    for model in models:
        if isinstance(model, ModelEntry):
            known = registry.sha256(model.name, model.type)
            if wanted and known is not None and known.lower().startswith(wanted):
                return model.name
    raise _unknown(title, models)


def _unknown(title: str, models: list[ModelEntry | ModelPreset]) -> NotFoundError:
    names = ", ".join(sorted(m.name for m in models)) or "none"
    return NotFoundError(
        f"unknown checkpoint {title!r}; available models: {names}", field="sd_model_checkpoint"
    )
