"""``/api/models``: list, inspect, load/unload, refresh, stats, batch, validate, hash, convert.

A model's id is its registry name (file stem, or a preset's name); the file name, the path
relative to the models folder, the full SHA-256 or its 10-digit short form work too. Registry
lookups touch the disk (stat, headers), so they run off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest import model_views
from sdrest.api.rest.errors import ModelNotFoundError, ModelNotLoadedError, rest_code
from sdrest.api.rest.schemas import BatchBody, HashBody, ValidateModelBody
from sdrest.api.rest.translate import decode
from sdrest.auth import require
from sdrest.errors import InvalidRequestError, SdrestError
from sdrest.models import (
    FOLDER_TYPES,
    MODEL_SUFFIXES,
    HeaderError,
    ModelEntry,
    ModelPreset,
    PathNotAllowedError,
    UnknownModelError,
    detect,
)
from sdrest.models.registry import GENERATION_TYPES, PRESET_FIELDS
from sdrest.service import SdrestService

logger = logging.getLogger(__name__)

_batch_decoder = msgspec.json.Decoder(BatchBody)
_validate_decoder = msgspec.json.Decoder(ValidateModelBody)
_hash_decoder = msgspec.json.Decoder(HashBody)
_HEX = re.compile(r"^[0-9a-fA-F]{10}([0-9a-fA-F]{54})?$")
_SMALL_BODY = 64 * 1024
_TYPE_INFO: dict[str, str] = {
    "checkpoint": "full models (diffusion + VAE [+ text encoders]), loaded as model_path",
    "diffusion_model": "standalone diffusion weights (Flux, Qwen-Image...), used through presets",
    "preset": "configured models made of several files, with default parameters",
    "vae": "VAE decoders/encoders",
    "taesd": "tiny autoencoders for fast decoding",
    "lora": "LoRA adapters",
    "upscaler": "ESRGAN upscalers (the spec's esrgan)",
    "controlnet": "ControlNet models (listed; not usable for generation yet)",
    "embedding": "textual-inversion embeddings (listed; the pinned library cannot load them)",
    "text_encoder": "CLIP-L/G, T5-XXL and LLM text encoders",
    "unknown": "files whose header names no known architecture",
}


Model = ModelEntry | ModelPreset


def find_model(service: SdrestService, model_id: str, type: str | None = None) -> Model:
    """A file or preset by name, file name, relative path, SHA-256 or short hash (touches disk).

    Raises :class:`ModelNotFoundError` (404 MODEL_NOT_FOUND).
    """
    registry = service.registry
    if type in (None, "preset"):
        try:
            return registry.preset(model_id)
        except UnknownModelError:
            pass
    if type != "preset":
        try:
            return registry.get(model_id, type)
        except UnknownModelError as exc:
            missing = str(exc)
        if _HEX.fullmatch(model_id):
            wanted = model_id.lower()
            for entry in registry.entries(type):
                digest = registry.hashes.sha256_of(entry)
                if digest is not None and digest.startswith(wanted):
                    return entry
        raise ModelNotFoundError(missing)
    raise ModelNotFoundError(f"unknown preset {model_id!r}")


def _preset_view(
    service: SdrestService, preset: ModelPreset, loaded: Collection[str]
) -> dict[str, Any]:
    registry = service.registry
    components: dict[str, str] = {}
    size, architecture, error = 0, "preset", registry.preset_error(preset.name)
    for field in PRESET_FIELDS:
        value = getattr(preset, field)
        if not value:
            continue
        try:
            path = registry.resolve_component(field, value)
            components[field] = str(path.relative_to(registry.models_dir.resolve()))
            size += path.stat().st_size
        except (UnknownModelError, PathNotAllowedError, OSError, ValueError) as exc:
            error = error or f"{field}: {exc}"
            continue
        if field in ("model", "diffusion_model"):
            with contextlib.suppress(UnknownModelError):
                architecture = registry.get(value).architecture
    return model_views.model_view(
        name=preset.name,
        type="preset",
        path="",
        size=size,
        modified=None,
        architecture=architecture,
        format="preset",
        loaded=preset.name in loaded,
        sha256=None,
        error=error,
        components=components,
    )


def _entry_view(
    service: SdrestService, entry: ModelEntry, loaded: Collection[str]
) -> dict[str, Any]:
    return model_views.model_view(
        name=entry.name,
        type=entry.type,
        path=entry.relpath,
        size=entry.size,
        modified=entry.mtime,
        architecture=entry.architecture,
        format=entry.format,
        loaded=entry.name in loaded and entry.type in GENERATION_TYPES,
        sha256=service.registry.hashes.sha256_of(entry),
        error=entry.error,
    )


def all_views(service: SdrestService) -> list[dict[str, Any]]:
    """Every model file and preset as a view (stats files for hashes: call off the loop)."""
    loaded = service.loaded_models  # several within --memory-budget-mb
    views = [_entry_view(service, e, loaded) for e in service.registry.entries()]
    views += [_preset_view(service, p, loaded) for p in service.registry.presets()]
    return views


def _view_of(service: SdrestService, model: Model) -> dict[str, Any]:
    if isinstance(model, ModelPreset):
        return _preset_view(service, model, service.loaded_models)
    return _entry_view(service, model, service.loaded_models)


async def list_models(request: Request) -> Response:
    """``GET /api/models``: ``type``, ``search``, ``architecture``, ``loaded``, ``sort_by``,
    ``sort_order``, ``limit`` (0 = all), ``page``."""
    require(request, "models:read")
    service = service_of(request)
    query = model_views.parse_model_query(request.query_params)
    views = await asyncio.to_thread(all_views, service)
    body = model_views.list_models(views, query)
    body["loaded_model"] = service.loaded_model
    return JSONResponse(body)


async def get_model(request: Request) -> Response:
    """``GET /api/models/{model_id}`` (``?type=`` picks among files of the same name)."""
    require(request, "models:read")
    service = service_of(request)
    model_id = request.path_params["model_id"]
    kind = request.query_params.get("type")
    model_type = model_views.model_type(kind) if kind else None

    def lookup() -> dict[str, Any]:
        return _view_of(service, find_model(service, model_id, model_type))

    return JSONResponse({"model": await asyncio.to_thread(lookup)})


async def model_types(request: Request) -> Response:
    """``GET /api/models/types``: the types, their folders and how many files each has."""
    require(request, "models:read")
    service = service_of(request)
    counts: dict[str, int] = {}
    for entry in service.registry.entries():
        counts[entry.type] = counts.get(entry.type, 0) + 1
    counts["preset"] = len(service.registry.presets())
    details = [
        {
            "type": kind,
            "description": text,
            "folders": sorted(f for f, t in FOLDER_TYPES.items() if t == kind),
            "extensions": sorted(MODEL_SUFFIXES) if kind != "preset" else [],
            "count": counts.get(kind, 0),
        }
        for kind, text in _TYPE_INFO.items()
    ]
    return JSONResponse({"types": list(_TYPE_INFO), "details": details})


async def directories(request: Request) -> Response:
    """``GET /api/models/directories``: which typed folders exist and how many files they hold."""
    principal = require(request, "models:read")
    service = service_of(request)
    registry = service.registry

    def scan() -> list[dict[str, Any]]:
        entries = registry.entries()
        out = []
        for folder, kind in sorted(FOLDER_TYPES.items()):
            path = registry.models_dir / folder
            # The registry matches folder names ignoring case: count what it saw under them.
            count = sum(1 for e in entries if Path(e.relpath).parts[0].lower() == folder)
            out.append({"name": folder, "type": kind, "exists": path.is_dir(), "files": count})
        return out

    body: dict[str, Any] = {
        "directories": await asyncio.to_thread(scan),
        "models_dir_exists": registry.models_dir.is_dir(),
    }
    if principal.is_admin:  # server paths only for admins
        body["models_dir"] = str(registry.models_dir.resolve())
    return JSONResponse(body)


async def stats(request: Request) -> Response:
    """``GET /api/models/stats``."""
    require(request, "models:read")
    service = service_of(request)
    views = await asyncio.to_thread(all_views, service)
    body = model_views.model_stats(views, service.loaded_models)
    body["duplicates"] = service.registry.duplicates
    return JSONResponse(body)


async def refresh(request: Request) -> Response:
    """``POST /api/models/refresh``: rescan; how many files were found, new or changed, gone."""
    require(request, "models:manage")
    service = service_of(request)
    before = {(e.relpath, e.size, e.mtime) for e in service.registry.entries()}
    await service.refresh_models()
    entries = service.registry.entries()
    after = {(e.relpath, e.size, e.mtime) for e in entries}
    current = {e.relpath for e in entries}
    return JSONResponse(
        {
            "message": "Model refresh completed",
            "models_found": len(entries),
            "models_updated": len(after - before),
            "models_removed": len({r for r, _, _ in before} - current),
        }
    )


async def _load(service: SdrestService, model_id: str) -> dict[str, Any]:
    model = await asyncio.to_thread(find_model, service, model_id)
    if isinstance(model, ModelEntry) and model.type not in GENERATION_TYPES:
        raise InvalidRequestError(
            f"{model.name!r} is a {model.type}, not a model that generates images",
            field="model_id",
        )
    name = await service.load_model(model.name)
    # Loading makes it the model requests without model_name use, as the C++ server does.
    service.set_default_model(name)
    return {"message": "Model loaded successfully", "model": name}


async def _unload(service: SdrestService, model_id: str) -> dict[str, Any]:
    model = await asyncio.to_thread(find_model, service, model_id)
    loaded = service.loaded_models
    if model.name not in loaded:
        raise ModelNotLoadedError(
            f"{model.name!r} is not loaded (loaded: {', '.join(loaded) or 'none'})"
        )
    await service.unload_model(model.name)
    return {"message": "Model unloaded successfully", "model": model.name}


async def load_model(request: Request) -> Response:
    """``POST /api/models/{model_id}/load``: load now (waits for the job running, if any)."""
    require(request, "models:manage")
    return JSONResponse(await _load(service_of(request), request.path_params["model_id"]))


async def unload_model(request: Request) -> Response:
    """``POST /api/models/{model_id}/unload``: 409 MODEL_NOT_LOADED when it is not the one held."""
    require(request, "models:manage")
    return JSONResponse(await _unload(service_of(request), request.path_params["model_id"]))


def _validate_file(service: SdrestService, name: str | None, path: str | None) -> dict[str, Any]:
    registry = service.registry
    if name:
        model = find_model(service, name)
        if isinstance(model, ModelPreset):
            raise InvalidRequestError("a preset is several files: validate its components")
        file = Path(model.path)
    elif path:
        try:
            file = registry.resolve_component("model", path)
        except PathNotAllowedError as exc:
            raise InvalidRequestError(str(exc), field="path") from exc
        except UnknownModelError as exc:
            raise ModelNotFoundError(str(exc), field="path") from exc
    else:
        raise InvalidRequestError("give model_name or path", field="model_name")
    rel = str(file.resolve().relative_to(registry.models_dir.resolve()))
    result: dict[str, Any] = {"path": rel, "name": file.stem, "errors": [], "warnings": []}
    try:
        result["size"] = file.stat().st_size
        header = registry.header(file)
    except (HeaderError, OSError) as exc:
        result.update(valid=False, format=None, architecture=None, role=None)
        result["errors"].append(str(exc))
        return result
    found = detect(header, file.name)
    result.update(
        valid=True,
        format=header.format,
        architecture=found.architecture,
        role=found.role,
        tensor_count=len(header.tensors),
    )
    if found.role == "unknown":
        result["warnings"].append("no known architecture detected from the tensor names")
    return result


async def validate(request: Request) -> Response:
    """``POST /api/models/validate``: read a header (never the weights), say what the file is."""
    require(request, "models:read")
    body = decode(await read_body(request, _SMALL_BODY), _validate_decoder)
    service = service_of(request)
    return JSONResponse(
        await asyncio.to_thread(_validate_file, service, body.model_name, body.path)
    )


def _hash_one(service: SdrestService, model_id: str) -> dict[str, Any]:
    model = find_model(service, model_id)
    if isinstance(model, ModelPreset):
        raise InvalidRequestError(f"{model.name!r} is a preset (several files): hash its files")
    digest = service.registry.hashes.compute(model.path)  # cached by (path, size, mtime)
    return {"model": model.name, "path": model.relpath, "sha256": digest, "short_hash": digest[:10]}


async def hash_models(request: Request) -> Response:
    """``POST /api/models/hash``: SHA-256 of the named files (computed once, then cached)."""
    require(request, "models:manage")
    body = decode(await read_body(request, _SMALL_BODY), _hash_decoder)
    names = list(body.models or []) + ([body.model_name] if body.model_name else [])
    if not names:
        raise InvalidRequestError("give models (a list) or model_name", field="models")
    service = service_of(request)
    hashes = [await asyncio.to_thread(_hash_one, service, name) for name in names]
    return JSONResponse({"message": "Hashes computed", "hashes": hashes})


async def _batch_item(service: SdrestService, operation: str, model_id: str) -> dict[str, Any]:
    try:
        if operation == "load":
            outcome = await _load(service, model_id)
        elif operation == "unload":
            outcome = await _unload(service, model_id)
        elif operation == "validate":
            outcome = await asyncio.to_thread(_validate_file, service, model_id, None)
        else:
            outcome = await asyncio.to_thread(_hash_one, service, model_id)
    except SdrestError as exc:
        return {
            "model": model_id,
            "success": False,
            "error": {"code": rest_code(exc.code), "message": exc.message},
        }
    return {"model": model_id, "success": outcome.get("valid", True), "result": outcome}


async def batch(request: Request) -> Response:
    """``POST /api/models/batch``: ``{"operation": load|unload|validate|hash, "models": [...]}``."""
    require(request, "models:manage")
    body = decode(await read_body(request, _SMALL_BODY), _batch_decoder)
    if body.operation == "load" and len(body.models) > 1:
        raise InvalidRequestError(
            "the engine holds one model at a time: load takes exactly one model", field="models"
        )
    service = service_of(request)
    results = [await _batch_item(service, body.operation, name) for name in body.models]
    return JSONResponse(
        {
            "operation": body.operation,
            "results": results,
            "succeeded": sum(1 for r in results if r["success"]),
            "failed": sum(1 for r in results if not r["success"]),
        }
    )


MODEL_ROUTES: list[BaseRoute] = [
    Route("/models", list_models, methods=["GET"]),
    Route("/models/types", model_types, methods=["GET"]),
    Route("/models/directories", directories, methods=["GET"]),
    Route("/models/stats", stats, methods=["GET"]),
    Route("/models/refresh", refresh, methods=["POST"]),
    Route("/models/batch", batch, methods=["POST"]),
    Route("/models/validate", validate, methods=["POST"]),
    Route("/models/hash", hash_models, methods=["POST"]),
    Route("/models/{model_id}", get_model, methods=["GET"]),
    Route("/models/{model_id}/load", load_model, methods=["POST"]),
    Route("/models/{model_id}/unload", unload_model, methods=["POST"]),
]
"""Routes of /api/models, in match order (fixed paths before ``{model_id}``)."""
