"""A1111 checkpoint titles <-> registry model names.

A1111 names a checkpoint by its title, ``"model.safetensors [0123456789]"`` (file name and the
10-character SHA-256 prefix), and clients send back whatever they last saw: the title, the file
name, the stem, sometimes the hash alone. All of them map onto the registry's generation models
(files and presets) here, in one place, so ``override_settings``, ``options`` and ``sd-models``
agree. Lookups go through ``service.models`` (the catalog); hash prefixes are its ``find``'s.
"""

from __future__ import annotations

import re
from pathlib import Path

from sdrest.errors import ModelNotFoundError, NotFoundError
from sdrest.model_catalog import Model, ModelCatalog
from sdrest.models import ModelPreset
from sdrest.models.hashing import short_hash

_TITLE = re.compile(r"^(?P<name>.*?)\s*\[(?P<hash>[0-9a-fA-F]{8,64})\]$")


def checkpoint_title(name: str, models: ModelCatalog) -> str:
    """The A1111 title of a model: ``"file.safetensors [hash]"``; a preset's title is its name.

    The hash part appears once the background hashing has reached the file.
    """
    model = next((m for m in models.generation_models() if m.name == name), None)
    if model is None or isinstance(model, ModelPreset):
        return name
    return title_of_model(model, models.sha256(model))


def title_of_model(model: Model, sha256: str | None) -> str:
    """:func:`checkpoint_title` for a model already found, with its hash already read."""
    if isinstance(model, ModelPreset):
        return model.name
    filename = Path(model.path).name
    return f"{filename} [{short_hash(sha256)}]" if sha256 else filename


def _names(model: Model) -> set[str]:
    if isinstance(model, ModelPreset):
        return {model.name.lower()}
    path = Path(model.path)
    relpath = Path(model.relpath)
    names = (model.name, path.name, path.stem, str(relpath), str(relpath.with_suffix("")))
    return {n.lower() for n in names}


def resolve_checkpoint(title: str, models: ModelCatalog) -> str:
    """The model name (file stem or preset name) a title, file name, path or hash names.

    A1111's own aliasing is done here: titles ``"name [hash]"`` and names, file names and paths
    in any case. Anything else (a SHA-256 prefix...) is :meth:`ModelCatalog.find`'s. A hash
    part that contradicts the file's known hash is refused rather than quietly loading another
    file of the same name. Unknown, or not a generation model -> 404 listing the models.
    """
    text = title.strip()
    match = _TITLE.match(text)
    wanted_hash = match["hash"].lower() if match else None
    base = (match["name"] if match else text).strip()
    generation = models.generation_models()
    key = base.lower()
    model = next((m for m in generation if key in _names(m)), None) if base else None
    if model is None:
        model = _found(base or wanted_hash or "", models, generation)
    if model is None:
        raise _unknown(title, generation)
    if base:
        _check_hash(model, wanted_hash, models, title)
    return model.name


def _found(identifier: str, models: ModelCatalog, generation: list[Model]) -> Model | None:
    """The catalog's answer for ``identifier`` when it is a generation model, else None."""
    if not identifier:
        return None
    try:
        found = models.find(identifier)
    except ModelNotFoundError:
        return None  # A1111 answers its own 404, listing the models (below)
    return found if found in generation else None


def _check_hash(model: Model, wanted: str | None, models: ModelCatalog, title: str) -> None:
    if wanted is None or isinstance(model, ModelPreset):
        return
    known = models.sha256(model)
    if known is not None and not known.lower().startswith(wanted):
        raise NotFoundError(
            f"checkpoint {title!r}: {model.name} has hash {known[:10]}, not {wanted}",
            field="sd_model_checkpoint",
        )


def _unknown(title: str, models: list[Model]) -> NotFoundError:
    names = ", ".join(sorted(m.name for m in models)) or "none"
    return NotFoundError(
        f"unknown checkpoint {title!r}; available models: {names}", field="sd_model_checkpoint"
    )


AUTOMATIC_VAE = ("", "automatic", "none")
"""``sd_vae`` values that mean "the model's own VAE" (A1111: "Automatic", "None")."""


def resolve_vae(value: str, models: ModelCatalog) -> str | None:
    """The registry VAE an ``sd_vae`` option names (its file name as ``/sd-vae`` lists it, its
    stem or its path); None for "Automatic" and "None". Unknown -> 404 listing the VAEs."""
    key = value.strip().lower()
    if key in AUTOMATIC_VAE:
        return None
    entries = models.entries("vae")
    for entry in entries:
        if key in (entry.name.lower(), Path(entry.path).name.lower(), entry.relpath.lower()):
            return entry.name
    names = ", ".join(["Automatic", "None", *(Path(e.path).name for e in entries)])
    raise ModelNotFoundError(f"sd_vae {value!r} not found; valid: {names}", field="sd_vae")
