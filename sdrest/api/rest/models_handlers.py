"""``/api/models`` endpoints: list, inspect, load/unload, refresh, stats, batch, validate, hash.

A model's id is anything ``service.models.find`` accepts: its registry name (file stem, or a
preset's name), the file name, the path relative to the models folder, or a SHA-256 prefix.
Lookups touch the disk (stat, headers, hashes), so they run off the event loop. Access rules,
bodies and answers are declared in :mod:`sdrest.api.rest.routes`.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest import model_views
from sdrest.api.rest.errors import ModelNotLoadedError, rest_code
from sdrest.api.rest.model_responses import (
    BatchItem,
    BatchReply,
    FileCheck,
    FileHash,
    HashReply,
    ModelAction,
    ModelFolder,
    ModelFolders,
    ModelReply,
    ModelTypeInfo,
    ModelTypes,
    RefreshReply,
)
from sdrest.api.rest.responses import RestProblem
from sdrest.api.rest.schemas import BatchBody, HashBody, ValidateModelBody
from sdrest.api.rest.templates import (
    TEMPLATE_FOLDERS,
    find_template,
    read_template,
    scan_templates,
)
from sdrest.api.rest.translate import decode
from sdrest.auth import principal_of
from sdrest.errors import InvalidRequestError, SdrestError
from sdrest.model_catalog import ModelCatalog
from sdrest.models import FOLDER_TYPES, GENERATION_TYPES, MODEL_SUFFIXES, ModelEntry
from sdrest.units import format_bytes

_batch_decoder = msgspec.json.Decoder(BatchBody)
_validate_decoder = msgspec.json.Decoder(ValidateModelBody)
_hash_decoder = msgspec.json.Decoder(HashBody)
_SMALL_BODY = 64 * 1024
_TYPE_INFO: dict[str, str] = {
    "checkpoint": "full models (diffusion + VAE [+ text encoders]), loaded as model_path",
    "diffusion_model": "standalone diffusion weights (Flux, Qwen-Image...), used through presets",
    "preset": "configured models made of several files, with default parameters",
    "vae": "VAE decoders/encoders",
    "taesd": "tiny autoencoders for fast decoding",
    "lora": "LoRA adapters",
    "upscaler": "ESRGAN upscalers (listed as esrgan, as the spec names them; upscaler works too)",
    "controlnet": "ControlNet models (listed; not usable for generation yet)",
    "embedding": "textual-inversion embeddings (listed; the pinned library cannot load them)",
    "text_encoder": "CLIP-L/G, T5-XXL and LLM text encoders",
    "presets": "generation preset files of the presets/ folder (.json, .yaml; their text)",
    "prompts": "prompt templates of the prompts/ folder (.txt, .json; their text)",
    "neg_prompts": "negative prompt templates of the neg_prompts/ folder (.txt, .json)",
    "unknown": "files whose header names no known architecture",
}


async def list_models(request: Request) -> Response:
    """Models and presets, filtered, sorted and paged (``limit=0``: all)."""
    models = service_of(request).models
    query = model_views.parse_model_query(request.query_params)
    views = await asyncio.to_thread(model_views.all_views, models)
    return JSONResponse(model_views.list_models(views, query, models.last_loaded))


async def get_model(request: Request) -> Response:
    """One model or preset (``?type=`` picks among files of the same name)."""
    models = service_of(request).models
    model_id = request.path_params["model_id"]
    kind = request.query_params.get("type")
    model_type = model_views.model_type(kind) if kind else None

    def lookup() -> ModelReply:
        if model_type in TEMPLATE_FOLDERS:  # a prompt template: its text comes with it
            template = find_template(models.models_dir, model_id, model_type)
            return ModelReply(model_views.template_view(template, read_template(template)))
        return ModelReply(model_views.view_of(models, models.find(model_id, model_type)))

    return JSONResponse(await asyncio.to_thread(lookup))


async def model_types(request: Request) -> Response:
    """The types, their folders and how many files each has."""
    models = service_of(request).models
    counts: dict[str, int] = {}
    for entry in models.entries():
        counts[entry.type] = counts.get(entry.type, 0) + 1
    counts["preset"] = len(models.presets())
    templates = await asyncio.to_thread(scan_templates, models.models_dir)
    for template in templates:
        counts[template.type] = counts.get(template.type, 0) + 1
    details = [
        ModelTypeInfo(
            type=model_views.spec_type(kind),
            description=text,
            folders=_folders_of(kind),
            extensions=_extensions_of(kind),
            count=counts.get(kind, 0),
        )
        for kind, text in _TYPE_INFO.items()
    ]
    return JSONResponse(ModelTypes([d.type for d in details], details))


def _folders_of(kind: str) -> list[str]:
    if kind in TEMPLATE_FOLDERS:
        return [kind]
    return sorted(f for f, t in FOLDER_TYPES.items() if t == kind)


def _extensions_of(kind: str) -> list[str]:
    if kind in TEMPLATE_FOLDERS:
        return list(TEMPLATE_FOLDERS[kind])
    return sorted(MODEL_SUFFIXES) if kind != "preset" else []


async def directories(request: Request) -> Response:
    """Which typed folders exist and how many files they hold (admins also see the path)."""
    models = service_of(request).models

    def scan() -> list[ModelFolder]:
        entries = models.entries()
        out = []
        for folder, kind in sorted(FOLDER_TYPES.items()):
            # The registry matches folder names ignoring case: count what it saw under them.
            count = sum(1 for e in entries if Path(e.relpath).parts[0].lower() == folder)
            exists = (models.models_dir / folder).is_dir()
            out.append(ModelFolder(folder, model_views.spec_type(kind), exists, count))
        for folder in TEMPLATE_FOLDERS:
            count = len(scan_templates(models.models_dir, folder))
            out.append(ModelFolder(folder, folder, (models.models_dir / folder).is_dir(), count))
        return out

    admin = principal_of(request).is_admin  # server paths only for admins
    return JSONResponse(
        ModelFolders(
            directories=await asyncio.to_thread(scan),
            models_dir_exists=models.models_dir.is_dir(),
            models_dir=str(models.models_dir.resolve()) if admin else None,
        )
    )


async def stats(request: Request) -> Response:
    """Counts and sizes by type and architecture, hashes known, duplicates."""
    models = service_of(request).models
    views = await asyncio.to_thread(model_views.all_views, models)
    return JSONResponse(model_views.model_stats(views, models.loaded, models.duplicates))


async def refresh(request: Request) -> Response:
    """Rescan the models folder: how many files were found, new or changed, gone."""
    models = service_of(request).models
    before = {(e.relpath, e.size, e.mtime) for e in models.entries()}
    await models.refresh()
    entries = models.entries()
    after = {(e.relpath, e.size, e.mtime) for e in entries}
    current = {e.relpath for e in entries}
    return JSONResponse(
        RefreshReply(
            message="Model refresh completed",
            models_found=len(entries),
            models_updated=len(after - before),
            models_removed=len({r for r, _, _ in before} - current),
        )
    )


async def _load(models: ModelCatalog, model_id: str) -> ModelAction:
    model = await asyncio.to_thread(models.find, model_id)
    if isinstance(model, ModelEntry) and model.type not in GENERATION_TYPES:
        raise InvalidRequestError(
            f"{model.name!r} is a {model.type}, not a model that generates images",
            field="model_id",
        )
    name = await models.load(model.name)
    # Loading makes it the model requests without model_name use, as the C++ server does.
    models.set_default(name)
    return ModelAction("Model loaded successfully", name)


async def _unload(models: ModelCatalog, model_id: str) -> ModelAction:
    model = await asyncio.to_thread(models.find, model_id)
    loaded = models.loaded
    if model.name not in loaded:
        raise ModelNotLoadedError(
            f"{model.name!r} is not loaded (loaded: {', '.join(loaded) or 'none'})"
        )
    await models.unload(model.name)
    return ModelAction("Model unloaded successfully", model.name)


async def load_model(request: Request) -> Response:
    """Load a model now (waits for the job running, if any); it becomes the default."""
    models = service_of(request).models
    return JSONResponse(await _load(models, request.path_params["model_id"]))


async def unload_model(request: Request) -> Response:
    """Free a model; 409 MODEL_NOT_LOADED when the engine does not hold it."""
    models = service_of(request).models
    return JSONResponse(await _unload(models, request.path_params["model_id"]))


async def validate(request: Request) -> Response:
    """Read a file's header (never the weights) and say what the file is."""
    body = decode(await read_body(request, _SMALL_BODY), _validate_decoder)
    models = service_of(request).models
    check = await asyncio.to_thread(model_views.check_file, models, body.model_name, body.path)
    return JSONResponse(check)


async def hash_models(request: Request) -> Response:
    """SHA-256 of the named files (computed once, then cached)."""
    body = decode(await read_body(request, _SMALL_BODY), _hash_decoder)
    names = list(body.models or []) + ([body.model_name] if body.model_name else [])
    if not names:
        raise InvalidRequestError("give models (a list) or model_name", field="models")
    models = service_of(request).models
    hashes = [await asyncio.to_thread(model_views.hash_file, models, name) for name in names]
    return JSONResponse(HashReply("Hashes computed", hashes))


async def _batch_item(models: ModelCatalog, operation: str, model_id: str) -> BatchItem:
    outcome: ModelAction | FileCheck | FileHash
    try:
        if operation == "load":
            outcome = await _load(models, model_id)
        elif operation == "unload":
            outcome = await _unload(models, model_id)
        elif operation == "validate":
            outcome = await asyncio.to_thread(model_views.check_file, models, model_id, None)
        else:
            outcome = await asyncio.to_thread(model_views.hash_file, models, model_id)
    except SdrestError as exc:
        return BatchItem(model_id, False, error=RestProblem(rest_code(exc.code), exc.message))
    success = outcome.valid if isinstance(outcome, FileCheck) else True
    return BatchItem(model_id, success, result=outcome)


def _check_fits(models: ModelCatalog, wanted: list[str], budget: int) -> None:
    """Several models load together only when their files fit ``--memory-budget-mb`` (else the
    engine would free the first to load the last): a 400 saying what fits."""
    sizes: dict[str, int] = {}
    for model_id in dict.fromkeys(wanted):
        with contextlib.suppress(SdrestError):  # an unknown name fails in its own result
            sizes[model_id] = models.footprint(models.find(model_id).name)
    total = sum(sizes.values())
    if len(sizes) <= 1 or (budget > 0 and total <= budget):
        return
    fits, used = [], 0
    for model_id, size in sizes.items():
        if budget > 0 and used + size <= budget:
            fits.append(model_id)
            used += size
    if budget <= 0:
        limit = "--memory-budget-mb is 0 (one model at a time)"
    else:
        limit = f"--memory-budget-mb allows {format_bytes(budget)}"
    raise InvalidRequestError(
        f"these models need {format_bytes(total)} together; {limit}: load at most"
        f" {', '.join(fits) if fits else 'one of them'}",
        field="models",
    )


async def batch(request: Request) -> Response:
    """``{"operation": load|unload|validate|hash, "models": [...]}``, one result per model."""
    body = decode(await read_body(request, _SMALL_BODY), _batch_decoder)
    service = service_of(request)
    models = service.models
    if body.operation == "load" and len(body.models) > 1:
        budget = service.settings.engine.memory_budget_bytes
        await asyncio.to_thread(_check_fits, models, body.models, budget)
    results = [await _batch_item(models, body.operation, name) for name in body.models]
    return JSONResponse(
        BatchReply(
            operation=body.operation,
            results=results,
            succeeded=sum(1 for r in results if r.success),
            failed=sum(1 for r in results if not r.success),
        )
    )
