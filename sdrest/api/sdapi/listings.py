"""Pure builders of the AUTOMATIC1111 listing shapes (``/sdapi/v1`` models, upscalers, png-info).

Every function takes registry records (or plain values) and returns the typed answer
(:mod:`~sdrest.api.sdapi.responses`) in the shape real A1111 answers with, so clients that parse
A1111 (webuiapi, SillyTavern, Krita plugins...) keep working. Nothing here touches the service,
the network or the disk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from sdrest.api.json_limits import decode_client_json
from sdrest.api.sdapi.responses import (
    EmbeddingItem,
    Embeddings,
    LoraItem,
    PngInfo,
    RealesrganItem,
    SdModelItem,
    SdVaeItem,
    UpscalerItem,
)
from sdrest.api.sdapi.samplers import split_combined_name
from sdrest.errors import InvalidRequestError
from sdrest.images import parse_infotext
from sdrest.models import ModelEntry, ModelPreset
from sdrest.models.detect import DEFAULT_ESRGAN_SCALE as DEFAULT_ESRGAN_SCALE
from sdrest.models.detect import esrgan_scale as esrgan_scale  # the sdapi listings use it

_json_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()

# Upscalers that need no model file: Pillow does them on the request's own worker thread.
NONE_UPSCALER = "None"
PIL_UPSCALERS: Mapping[str, str] = {"lanczos": "Lanczos", "nearest": "Nearest"}

_EMBEDDING_SKIP_REASON = (
    "textual-inversion embeddings cannot be loaded by the stable-diffusion.cpp binding (0.4.7)"
)

HashOf = Callable[[str], str | None]
"""name (or path in the models folder) -> SHA-256 once computed, else None."""


TitleOf = Callable[[str], str]
"""model name -> its A1111 title (``sdrest.api.sdapi.checkpoints.checkpoint_title``)."""


def sd_models(
    models: Iterable[ModelEntry | ModelPreset], hash_of: HashOf, title_of: TitleOf
) -> list[SdModelItem]:
    """``GET /sd-models``: one item per generation model file and preset.

    ``title`` is what ``options`` reports and accepts as ``sd_model_checkpoint``. ``filename`` is
    the path inside the models folder (the server's own layout is not exposed). A preset is not
    one file: it has no hash, and its filename is its main component.
    """
    items = []
    for model in models:
        if isinstance(model, ModelPreset):
            sha = None
            filename = model.model or model.diffusion_model or model.name
        else:
            sha = hash_of(model.name)
            filename = model.relpath
        items.append(
            SdModelItem(
                title=title_of(model.name),
                model_name=model.name,
                hash=sha[:10] if sha else None,
                sha256=sha,
                filename=filename,
            )
        )
    return items


def sd_vae(entries: Iterable[ModelEntry]) -> list[SdVaeItem]:
    """``GET /sd-vae``: ``model_name`` is the file name, as A1111 lists VAEs."""
    return [SdVaeItem(Path(e.path).name, e.relpath) for e in entries]


def _relative_to_type_folder(entry: ModelEntry) -> str:
    parts = Path(entry.relpath).parts
    # "lora/sub/x.safetensors" -> "sub/x.safetensors": the form /sdcpp/v1 lora[].path accepts.
    return str(Path(*parts[1:])) if len(parts) > 1 else entry.relpath


def loras(
    entries: Iterable[ModelEntry], metadata: Mapping[str, Mapping[str, Any]] | None = None
) -> list[LoraItem]:
    """``GET /loras``: ``name`` is what ``<lora:name:1>`` and ``lora[].path`` accept;
    ``metadata`` is each file's training metadata (see :func:`lora_metadata`)."""
    metadata = metadata or {}
    return [
        LoraItem(e.name, e.name, _relative_to_type_folder(e), dict(metadata.get(e.name, {})))
        for e in entries
        if e.error is None
    ]


def lora_metadata(raw: Mapping[str, Any]) -> dict[str, Any]:  # free-form: the trainer's keys
    """A safetensors ``__metadata__`` as A1111 shows it: string values, except those that hold
    JSON objects or lists (``ss_tag_frequency``, ``ss_dataset_dirs``...), which are decoded."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        text = str(value)
        if text[:1] in ("{", "["):
            try:
                out[key] = decode_client_json(text, _json_decoder)
                continue
            except (msgspec.DecodeError, InvalidRequestError):
                pass  # not JSON after all (or nested past the max depth): keep the text
        out[key] = text
    return out


def _upscaler_item(
    name: str, model_name: str | None, path: str | None, scale: float
) -> UpscalerItem:
    return UpscalerItem(name, model_name, path, None, scale)


def upscalers(
    entries: Iterable[ModelEntry], scales: Mapping[str, int | None]
) -> list[UpscalerItem]:
    """``GET /upscalers``: "None", the Pillow resamplers, then every usable ESRGAN file.

    ``scales`` maps an upscaler name to its native scale (None: unknown, shown as 4 like A1111).
    Files whose header cannot be read are left out: they can never run.
    """
    items = [_upscaler_item(NONE_UPSCALER, None, None, DEFAULT_ESRGAN_SCALE)]
    items += [
        _upscaler_item(label, None, None, DEFAULT_ESRGAN_SCALE) for label in PIL_UPSCALERS.values()
    ]
    for e in entries:
        if e.error is None:
            scale = scales.get(e.name) or DEFAULT_ESRGAN_SCALE
            items.append(_upscaler_item(e.name, e.name, e.relpath, scale))
    return items


def upscaler_names(entries: Iterable[ModelEntry]) -> list[str]:
    """The names ``/upscalers`` lists, in its order (what an upscaler index points into)."""
    builtin = [NONE_UPSCALER, *PIL_UPSCALERS.values()]
    return builtin + [e.name for e in entries if e.error is None]


def sd_modules(entries: Iterable[ModelEntry]) -> list[SdVaeItem]:
    """``GET /sd-modules``: the component files a model may load beside it (VAEs, TAESD,
    text encoders), ``{model_name, filename}`` as Forge lists them."""
    return [SdVaeItem(Path(e.path).name, e.relpath) for e in entries]


def realesrgan_models(
    entries: Iterable[ModelEntry], scales: Mapping[str, int | None]
) -> list[RealesrganItem]:
    """``GET /realesrgan-models``: the usable ESRGAN files as ``{name, path, scale}``."""
    return [
        RealesrganItem(e.name, e.relpath, scales.get(e.name) or DEFAULT_ESRGAN_SCALE)
        for e in entries
        if e.error is None
    ]


def embeddings(entries: Iterable[ModelEntry]) -> Embeddings:
    """``GET /embeddings``: nothing loaded; every embedding file listed as skipped, with why."""
    skipped = {
        e.name: EmbeddingItem(None, None, None, None, None, _EMBEDDING_SKIP_REASON) for e in entries
    }
    return Embeddings(loaded={}, skipped=skipped)


_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


# What A1111's parse_generation_parameters fills in for keys an infotext leaves out, so "send to
# txt2img" sets every field (as strings, like every other value here).
PARSE_DEFAULTS: Mapping[str, str] = {
    "Clip skip": "1",
    "Hires resize-1": "0",
    "Hires resize-2": "0",
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": "32",
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": "0",
    "Schedule min sigma": "0",
    "Schedule rho": "0",
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
    "Cache FP16 weight for LoRA": "False",
    "Emphasis": "Original",
    "Refiner switch by sampling steps": "False",
}


def infotext_parameters(text: str) -> dict[str, str]:
    """A1111's ``parse_generation_parameters`` shape: ``Prompt``, ``Negative prompt``, then each
    key as a string; a ``WxH`` value is also split into ``Key-1`` / ``Key-2``, an old combined
    sampler ("DPM++ 2M Karras") into ``Sampler`` and ``Schedule type``, and the keys A1111
    fills in when absent (:data:`PARSE_DEFAULTS`) are filled in, as A1111 does."""
    parsed = parse_infotext(text) if text.strip() else {"prompt": "", "negative_prompt": ""}
    out: dict[str, str] = {
        "Prompt": parsed.pop("prompt"),
        "Negative prompt": parsed.pop("negative_prompt"),
    }
    for key, value in parsed.items():
        out[key] = value
        size = _SIZE.match(value)
        if size is not None:
            out[f"{key}-1"], out[f"{key}-2"] = size.group(1), size.group(2)
    if not parsed:
        return out  # no parameters at all: nothing to default
    if "Sampler" in out and "Schedule type" not in out:
        sampler, scheduler = split_combined_name(out["Sampler"])
        out["Sampler"] = sampler
        if scheduler is not None:
            out["Schedule type"] = scheduler
    for key, value in PARSE_DEFAULTS.items():
        out.setdefault(key, value)
    return out


def png_info(infotext: str | None, text_chunks: Mapping[str, str]) -> PngInfo:
    """``POST /png-info``: ``info`` (the infotext, "" when none), ``items`` (the image's other
    text fields, as A1111 leaves ``parameters`` out of them) and ``parameters`` (parsed)."""
    info = infotext or ""
    items = {k: v for k, v in text_chunks.items() if k != "parameters"}
    return PngInfo(info, items, infotext_parameters(info))
