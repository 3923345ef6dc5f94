"""What the A1111 listings and extras read from model files, through ``service.models``.

ESRGAN native scales and LoRA training metadata come from the files' (cached) headers, and
``upscaler_1`` names an upscaler the A1111 way. Blocking (header reads): call these off the
event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdrest.api.sdapi import listings
from sdrest.errors import InvalidRequestError, ModelNotFoundError, NotFoundError
from sdrest.model_catalog import ModelCatalog
from sdrest.models import HeaderError, ModelEntry


def upscaler_scales(models: ModelCatalog, entries: list[ModelEntry]) -> dict[str, int | None]:
    """Native scale of each ESRGAN file, from its (cached) header; blocking file reads."""
    scales: dict[str, int | None] = {}
    for entry in entries:
        if entry.error is not None:
            continue
        try:
            scales[entry.name] = listings.esrgan_scale(models.header(entry.path).tensors)
        except (HeaderError, OSError):
            scales[entry.name] = None
    return scales


def lora_metadata(models: ModelCatalog, entries: list[ModelEntry]) -> dict[str, dict[str, Any]]:
    """Training metadata of each safetensors LoRA, from its (cached) header; blocking reads."""
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.error is not None:
            continue
        try:
            header = models.header(entry.path)
        except (HeaderError, OSError):
            continue
        if header.format == "safetensors" and header.metadata:
            found[entry.name] = listings.lora_metadata(header.metadata)
    return found


@dataclass(frozen=True)
class Upscaler:
    """The resolved ``upscaler_1``: "None", a Pillow resampler, or an ESRGAN file."""

    label: str
    entry: ModelEntry | None = None
    native: int = listings.DEFAULT_ESRGAN_SCALE


def resolve_upscaler(models: ModelCatalog, name: str | None) -> Upscaler:
    """The upscaler ``name`` means; 404 when none has it.

    A1111's own names ("None", "Lanczos", "Nearest") and its case-insensitive matching of the
    listed names are done here; anything else (a file name, a relative path, a hash prefix) is
    :meth:`ModelCatalog.find`'s. Blocking (reads the ESRGAN header once for its native scale).
    """
    wanted = (name or listings.NONE_UPSCALER).strip()
    if wanted.lower() == listings.NONE_UPSCALER.lower():
        return Upscaler(listings.NONE_UPSCALER)
    if wanted.lower() in listings.PIL_UPSCALERS:
        return Upscaler(listings.PIL_UPSCALERS[wanted.lower()])
    entries = models.entries("upscaler")
    entry = next((e for e in entries if e.name == wanted), None) or next(
        (e for e in entries if e.name.lower() == wanted.lower()), None
    )
    if entry is None:
        entry = _find_upscaler(models, wanted)
    if entry.error is not None:
        raise InvalidRequestError(
            f"upscaler {entry.name!r} cannot be used: its file is unreadable ({entry.error})",
            field="upscaler_1",
        )
    native = upscaler_scales(models, [entry]).get(entry.name)
    return Upscaler(entry.name, entry, native or listings.DEFAULT_ESRGAN_SCALE)


def _find_upscaler(models: ModelCatalog, wanted: str) -> ModelEntry:
    try:
        found = models.find(wanted, "upscaler")
    except ModelNotFoundError as exc:
        # A1111's 404 names the field and where the names are listed.
        raise NotFoundError(
            f"unknown upscaler {wanted!r}: GET /sdapi/v1/upscalers lists them ({exc})",
            field="upscaler_1",
        ) from None
    assert isinstance(found, ModelEntry)  # a typed lookup never answers a preset
    return found
