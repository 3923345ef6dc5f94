"""Pure views of the model registry for /api/models: one model's document, filters, sort, paging
and statistics. The routes gather registry entries and hashes; these functions only shape them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from sdrest.api.rest.translate import parse_flag, parse_int
from sdrest.errors import InvalidRequestError

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
    "presets": "preset",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
}


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
) -> dict[str, Any]:
    """One model as the spec lists it (``id`` is the name, which every route also accepts)."""
    view: dict[str, Any] = {
        "id": name,
        "name": name,
        "type": type,
        "architecture": architecture,
        "format": format,
        "size": size,
        "size_mb": round(size / (1024 * 1024), 2),
        "path": path,
        "modified": None if modified is None else int(modified),
        "sha256": sha256,
        "short_hash": None if sha256 is None else sha256[:10],
        "loaded": loaded,
        "valid": error is None,
        "error": error,
    }
    if components is not None:
        view["components"] = dict(components)
    return view


def _search_blob(view: Mapping[str, Any]) -> str:
    return " ".join(
        str(view.get(k) or "") for k in ("name", "path", "architecture", "type")
    ).lower()


def _sort_key(sort_by: str) -> Any:
    def key(view: Mapping[str, Any]) -> Any:
        name = str(view["name"]).lower()
        if sort_by == "size":
            return (view["size"], name)
        if sort_by == "date":
            return (view["modified"] or 0, name)
        if sort_by == "type":
            return (view["type"], name)
        if sort_by == "loaded":
            return (not view["loaded"], name)  # loaded first when ascending
        return (name, str(view["path"]))

    return key


def list_models(views: list[dict[str, Any]], query: ModelQuery) -> dict[str, Any]:
    """Filter, sort and page model views; the answer of ``GET /api/models``."""
    selected = [
        v
        for v in views
        if (query.type is None or v["type"] == query.type)
        and (query.architecture is None or v["architecture"] == query.architecture.lower())
        and (query.loaded is None or v["loaded"] == query.loaded)
        and (query.search is None or query.search.lower() in _search_blob(v))
    ]
    selected.sort(key=_sort_key(query.sort_by), reverse=query.descending)
    total = len(selected)
    if query.limit == 0:
        page_items, pages = selected, 1
    else:
        start = (query.page - 1) * query.limit
        page_items = selected[start : start + query.limit]
        pages = max(1, -(-total // query.limit))
    return {
        "models": page_items,
        "pagination": {
            "page": query.page if query.limit else 1,
            "limit": query.limit,
            "total_count": total,
            "total_pages": pages,
            "has_next": query.limit > 0 and query.page < pages,
            "has_prev": query.limit > 0 and query.page > 1,
        },
        "total": total,
    }


def model_stats(views: list[dict[str, Any]], loaded: Sequence[str]) -> dict[str, Any]:
    """``GET /api/models/stats``: counts and sizes by type and architecture; ``loaded`` are
    the loaded models, the most recently used last."""
    by_type: dict[str, dict[str, int]] = {}
    by_arch: dict[str, int] = {}
    for view in views:
        slot = by_type.setdefault(view["type"], {"count": 0, "size": 0})
        slot["count"] += 1
        slot["size"] += view["size"]
        by_arch[view["architecture"]] = by_arch.get(view["architecture"], 0) + 1
    files = [v for v in views if v["type"] != "preset"]
    return {
        "total_models": len(views),
        "total_files": len(files),
        "total_size": sum(v["size"] for v in files),
        "by_type": dict(sorted(by_type.items())),
        "by_architecture": dict(sorted(by_arch.items())),
        "hashed": sum(1 for v in files if v["sha256"]),
        "invalid": sum(1 for v in views if not v["valid"]),
        "loaded_model": loaded[-1] if loaded else None,
        "loaded_count": len(loaded),
    }
