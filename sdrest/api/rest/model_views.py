"""Views of the models for /api/models: one model's document, filters, sort, paging and
statistics, and the header check and hash of one file.

No Request here: handlers pass ``service.models`` (the catalog) and call these off the event
loop where they read the disk (stat, headers, hashes); the listing functions only shape views.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from sdrest.api.common import parse_flag, parse_int
from sdrest.api.rest.model_responses import (
    FileCheck,
    FileHash,
    ModelListing,
    ModelPage,
    ModelStats,
    ModelView,
    TypeTotals,
)
from sdrest.api.rest.templates import MAX_TEMPLATE_BYTES, Template, scan_templates
from sdrest.errors import InvalidRequestError, ModelNotFoundError, SdrestError
from sdrest.model_catalog import Model, ModelCatalog
from sdrest.models import (
    GENERATION_TYPES,
    PRESET_FIELDS,
    HeaderError,
    ModelEntry,
    ModelPreset,
    detect,
)

SORT_KEYS = ("name", "size", "date", "type", "loaded")
# The spec's type names (and the C++ server's folders) -> the registry's types.
TYPE_ALIASES: dict[str, str] = {
    "checkpoints": "checkpoint",
    "esrgan": "upscaler",
    "upscale": "upscaler",
    "loras": "lora",
    "embeddings": "embedding",
    "diffusion": "diffusion_model",
    "unet": "diffusion_model",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
}
"""``presets`` is the spec's type of the ``presets/`` folder's files (templates); the configured
presets are ``preset``."""
SPEC_TYPES: dict[str, str] = {"upscaler": "esrgan"}
"""Registry types the spec names differently: answers say ``esrgan`` (``upscaler`` is accepted
as an alias in queries)."""


def spec_type(kind: str) -> str:
    """A registry type as the spec names it in answers."""
    return SPEC_TYPES.get(kind, kind)


class ModelQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters, sort and page of ``GET /api/models``."""

    type: str | None = None
    search: str | None = None
    architecture: str | None = None
    loaded: bool | None = None
    sort_by: str = "name"
    descending: bool = False
    limit: int = 50
    page: int = 1


def model_type(value: str) -> str:
    """A type name as clients spell it -> the registry's."""
    name = value.strip().lower()
    return TYPE_ALIASES.get(name, name)


def parse_model_query(params: Mapping[str, str]) -> ModelQuery:
    """Query parameters -> :class:`ModelQuery` (400 for a bad value)."""
    sort_by = params.get("sort_by", "name").strip().lower() or "name"
    if sort_by not in SORT_KEYS:
        raise InvalidRequestError(
            f"sort_by must be one of {', '.join(SORT_KEYS)}, got {sort_by!r}", field="sort_by"
        )
    order = params.get("sort_order", "asc").strip().lower() or "asc"
    if order not in ("asc", "desc"):
        raise InvalidRequestError("sort_order must be asc or desc", field="sort_order")
    loaded = params.get("loaded")
    return ModelQuery(
        type=model_type(params["type"]) if params.get("type") else None,
        search=params.get("search") or None,
        architecture=params.get("architecture") or None,
        loaded=None if loaded is None else parse_flag(loaded, "loaded"),
        sort_by=sort_by,
        descending=order == "desc",
        limit=parse_int(params.get("limit"), "limit", 50, 0, 10_000),
        page=parse_int(params.get("page"), "page", 1, 1, 1_000_000),
    )


def model_view(
    *,
    name: str,
    type: str,
    path: str,
    size: int,
    modified: float | None,
    architecture: str,
    format: str,
    loaded: bool,
    sha256: str | None,
    error: str | None = None,
    components: Mapping[str, str] | None = None,
) -> ModelView:
    """One model as the spec lists it (``id`` is the name, which every route also accepts)."""
    return ModelView(
        id=name,
        name=name,
        type=type,
        architecture=architecture,
        format=format,
        size=size,
        size_mb=round(size / (1024 * 1024), 2),
        path=path,
        modified=None if modified is None else int(modified),
        sha256=sha256,
        short_hash=None if sha256 is None else sha256[:10],
        loaded=loaded,
        valid=error is None,
        error=error,
        components=None if components is None else dict(components),
    )


def component_path(models: ModelCatalog, kind: str, value: str, field: str) -> Path:
    """A component file by registry name (type ``kind`` first) or by a path inside the models
    folder: 400 outside it, 404 when missing, either naming the request's ``field``."""
    try:
        return models.resolve_component(kind, value)
    except SdrestError as exc:
        exc.field = field  # the catalog cannot know which request field named the file
        raise


def _preset_view(models: ModelCatalog, preset: ModelPreset, loaded: Collection[str]) -> ModelView:
    components: dict[str, str] = {}
    size, architecture, error = 0, "preset", models.preset_error(preset.name)
    root = models.models_dir.resolve()
    for field in PRESET_FIELDS:
        value = getattr(preset, field)
        if not value:
            continue
        try:
            path = models.resolve_component(field, value)
            components[field] = str(path.relative_to(root))
            size += path.stat().st_size
        except (SdrestError, OSError, ValueError) as exc:  # shown on the preset, not raised
            error = error or f"{field}: {exc}"
            continue
        if field in ("model", "diffusion_model"):
            with contextlib.suppress(ModelNotFoundError):
                architecture = models.main_entry(value).architecture
    return model_view(
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


def template_view(template: Template, content: str | None = None) -> ModelView:
    """A ``presets/``, ``prompts/`` or ``neg_prompts/`` file (with its text when asked for)."""
    too_large = template.size > MAX_TEMPLATE_BYTES
    view = model_view(
        name=template.name,
        type=template.type,
        path=template.relpath,
        size=template.size,
        modified=template.modified,
        architecture="template",
        format=template.path.suffix.lstrip(".").lower(),
        loaded=False,
        sha256=None,
        error=f"larger than {MAX_TEMPLATE_BYTES // 1024} KiB: not served" if too_large else None,
    )
    view.content = content
    return view


def _entry_view(models: ModelCatalog, entry: ModelEntry, loaded: Collection[str]) -> ModelView:
    return model_view(
        name=entry.name,
        type=spec_type(entry.type),
        path=entry.relpath,
        size=entry.size,
        modified=entry.mtime,
        architecture=entry.architecture,
        format=entry.format,
        loaded=entry.name in loaded and entry.type in GENERATION_TYPES,
        sha256=models.sha256(entry),
        error=entry.error,
    )


def view_of(models: ModelCatalog, model: Model) -> ModelView:
    """One file's or preset's view (stats files: call off the loop)."""
    if isinstance(model, ModelPreset):
        return _preset_view(models, model, models.loaded)
    return _entry_view(models, model, models.loaded)


def all_views(models: ModelCatalog) -> list[ModelView]:
    """Every model file and preset as a view (stats files: call off the loop)."""
    loaded = models.loaded  # several within --memory-budget-mb
    views = [_entry_view(models, e, loaded) for e in models.entries()]
    views += [_preset_view(models, p, loaded) for p in models.presets()]
    views += [template_view(t) for t in scan_templates(models.models_dir)]
    return views


def _search_blob(view: ModelView) -> str:
    return " ".join((view.name, view.path, view.architecture, view.type)).lower()


def _sort_key(sort_by: str) -> Callable[[ModelView], tuple[Any, ...]]:
    def key(view: ModelView) -> tuple[Any, ...]:
        name = view.name.lower()
        if sort_by == "size":
            return (view.size, name)
        if sort_by == "date":
            return (view.modified or 0, name)
        if sort_by == "type":
            return (view.type, name)
        if sort_by == "loaded":
            return (not view.loaded, name)  # loaded first when ascending
        return (name, view.path)

    return key


def _selected(view: ModelView, query: ModelQuery) -> bool:
    return (
        (query.type is None or view.type == spec_type(query.type))
        and (query.architecture is None or view.architecture == query.architecture.lower())
        and (query.loaded is None or view.loaded == query.loaded)
        and (query.search is None or query.search.lower() in _search_blob(view))
    )


def list_models(
    views: list[ModelView], query: ModelQuery, loaded_model: str | None = None
) -> ModelListing:
    """Filter, sort and page model views; the answer of ``GET /api/models``."""
    selected = [v for v in views if _selected(v, query)]
    selected.sort(key=_sort_key(query.sort_by), reverse=query.descending)
    total = len(selected)
    if query.limit == 0:
        page_items, pages = selected, 1
    else:
        start = (query.page - 1) * query.limit
        page_items = selected[start : start + query.limit]
        pages = max(1, -(-total // query.limit))
    page = ModelPage(
        page=query.page if query.limit else 1,
        limit=query.limit,
        total_count=total,
        total_pages=pages,
        has_next=query.limit > 0 and query.page < pages,
        has_prev=query.limit > 0 and query.page > 1,
    )
    return ModelListing(page_items, page, total, loaded_model)


def model_stats(
    views: list[ModelView],
    loaded: Sequence[str],
    duplicates: Mapping[str, list[str]] | None = None,
) -> ModelStats:
    """``GET /api/models/stats``: counts and sizes by type and architecture; ``loaded`` are
    the loaded models, the most recently used last."""
    by_type: dict[str, list[int]] = {}
    by_arch: dict[str, int] = {}
    for view in views:
        slot = by_type.setdefault(view.type, [0, 0])
        slot[0] += 1
        slot[1] += view.size
        by_arch[view.architecture] = by_arch.get(view.architecture, 0) + 1
    files = [v for v in views if v.type != "preset"]
    return ModelStats(
        total_models=len(views),
        total_files=len(files),
        total_size=sum(v.size for v in files),
        by_type={kind: TypeTotals(*slot) for kind, slot in sorted(by_type.items())},
        by_architecture=dict(sorted(by_arch.items())),
        hashed=sum(1 for v in files if v.sha256),
        invalid=sum(1 for v in views if not v.valid),
        loaded_model=loaded[-1] if loaded else None,
        loaded_count=len(loaded),
        duplicates=dict(duplicates or {}),
    )


# -- one file: header check and hash (read the disk: call off the loop) -------------------


def _file_to_check(models: ModelCatalog, name: str | None, path: str | None) -> Path:
    if name:
        model = models.find(name)
        if isinstance(model, ModelPreset):
            raise InvalidRequestError("a preset is several files: validate its components")
        return Path(model.path)
    if path:
        return component_path(models, "model", path, "path")
    raise InvalidRequestError("give model_name or path", field="model_name")


def check_file(models: ModelCatalog, name: str | None, path: str | None) -> FileCheck:
    """Read a file's header (never the weights) and say what the file is."""
    file = _file_to_check(models, name, path)
    rel = str(file.resolve().relative_to(models.models_dir.resolve()))
    size = None
    try:
        size = file.stat().st_size
        header = models.header(file)
    except (HeaderError, OSError) as exc:
        return FileCheck(
            path=rel,
            name=file.stem,
            errors=[str(exc)],
            warnings=[],
            size=size,
            valid=False,
            format=None,
            architecture=None,
            role=None,
        )
    found = detect(header, file.name)
    warnings = []
    if found.role == "unknown":
        warnings.append("no known architecture detected from the tensor names")
    return FileCheck(
        path=rel,
        name=file.stem,
        errors=[],
        warnings=warnings,
        size=size,
        valid=True,
        format=header.format,
        architecture=found.architecture,
        role=found.role,
        tensor_count=len(header.tensors),
    )


def hash_file(models: ModelCatalog, model_id: str) -> FileHash:
    """A file's SHA-256, computed now unless cached by (path, size, mtime): seconds per GB."""
    model = models.find(model_id)
    if isinstance(model, ModelPreset):
        raise InvalidRequestError(f"{model.name!r} is a preset (several files): hash its files")
    digest = models.hash_now(model)
    return FileHash(model.name, model.relpath, digest, digest[:10])
