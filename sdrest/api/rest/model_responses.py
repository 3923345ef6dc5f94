"""The /api/models answers as typed Structs (encoded by msgspec, documented in /openapi.json).

Field order is the wire order; fields absent unless set default to None with
``omit_defaults=True``. Pure: :mod:`sdrest.api.rest.model_views` builds them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sdrest.api.rest.responses import RestProblem


class ModelView(msgspec.Struct, omit_defaults=True):
    """One model as the spec lists it (``id`` is the name, which every route also accepts)."""

    id: str
    name: str
    type: str
    architecture: str
    format: str
    size: int
    size_mb: float
    path: str
    modified: int | None
    sha256: str | None
    short_hash: str | None
    loaded: bool
    valid: bool
    error: str | None
    components: dict[str, str] | None = None
    """A preset's files (preset field -> path in the models folder); presets only."""
    content: str | None = None
    """A template's text (``presets``, ``prompts``, ``neg_prompts``), in ``GET
    /api/models/{model_id}`` only."""


class ModelPage(msgspec.Struct):
    """Where a page of the listing is."""

    page: int
    limit: int
    total_count: int
    total_pages: int
    has_next: bool
    has_prev: bool


class ModelListing(msgspec.Struct):
    """``GET /api/models``."""

    models: list[ModelView]
    pagination: ModelPage
    total: int
    loaded_model: str | None


class ModelReply(msgspec.Struct):
    """``GET /api/models/{model_id}``."""

    model: ModelView


class TypeTotals(msgspec.Struct):
    """How many files of a type, and their bytes."""

    count: int
    size: int


class ModelStats(msgspec.Struct):
    """``GET /api/models/stats``."""

    total_models: int
    total_files: int
    total_size: int
    by_type: dict[str, TypeTotals]
    by_architecture: dict[str, int]
    hashed: int
    invalid: int
    loaded_model: str | None
    loaded_count: int
    duplicates: dict[str, list[str]]
    """``"type/name" -> relative paths`` for names that are not unique per type."""


class ModelTypeInfo(msgspec.Struct):
    """One model type: what it is, its folders, its file extensions and how many there are."""

    type: str
    description: str
    folders: list[str]
    extensions: list[str]
    count: int


class ModelTypes(msgspec.Struct):
    """``GET /api/models/types``."""

    types: list[str]
    details: list[ModelTypeInfo]


class ModelFolder(msgspec.Struct):
    """One typed folder of the models folder."""

    name: str
    type: str
    exists: bool
    files: int


class ModelFolders(msgspec.Struct, omit_defaults=True):
    """``GET /api/models/directories`` (``models_dir``: for admins only)."""

    directories: list[ModelFolder]
    models_dir_exists: bool
    models_dir: str | None = None


class RefreshReply(msgspec.Struct):
    """``POST /api/models/refresh``."""

    message: str
    models_found: int
    models_updated: int
    models_removed: int


class ModelAction(msgspec.Struct):
    """``POST /api/models/{model_id}/load`` and ``/unload``."""

    message: str
    model: str


class FileCheck(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``POST /api/models/validate``: what a file's header says (``size`` is absent when the
    file cannot be read, ``tensor_count`` when its header cannot)."""

    path: str
    name: str
    errors: list[str]
    warnings: list[str]
    size: int | None = None
    valid: bool
    format: str | None
    architecture: str | None
    role: str | None
    tensor_count: int | None = None


class FileHash(msgspec.Struct):
    """One file's SHA-256."""

    model: str
    path: str
    sha256: str
    short_hash: str


class HashReply(msgspec.Struct):
    """``POST /api/models/hash``."""

    message: str
    hashes: list[FileHash]


class BatchItem(msgspec.Struct, omit_defaults=True):
    """One model of a batch: ``result`` on success, ``error`` on failure."""

    model: str
    success: bool
    error: RestProblem | None = None
    # ModelAction, FileCheck or FileHash by operation: Any because an untagged union of Structs
    # has no JSON schema in msgspec (and a tag would add a key to the wire).
    result: Any = None


class BatchReply(msgspec.Struct):
    """``POST /api/models/batch``."""

    operation: str
    results: list[BatchItem]
    succeeded: int
    failed: int


class ConvertReply(msgspec.Struct):
    """The 202 of ``POST /api/models/convert``."""

    request_id: str
    status: str
    message: str
    model: str
    quantization_type: str
    output_path: str


class ModelDownloadReply(msgspec.Struct):
    """The 202 of ``POST /api/models/download``."""

    request_id: str
    job_id: str
    status: str
    message: str
    repo: str
    files: list[str]
    status_url: str
