"""What the OpenAPI document cannot read from the routes themselves: the body each route decodes,
the query parameters it reads, the routes that ask for no credentials, the success answers that
are not a plain 200 JSON, and each family's error shape.

Every table is keyed by ``(METHOD, path)`` as the app serves it (mount prefix included). The
builder in :mod:`sdrest.api.openapi` walks the app's routes and looks each one up here; a POST
route missing from :data:`REQUEST_BODIES` is refused there (and by a test), so a new route can
never slip into the document without its body.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

from sdrest.api.openai.schemas import EditFields, GenerationBody
from sdrest.api.rest.auth_routes import LoginBody
from sdrest.api.rest.image_tools import CropBody, ResizeBody
from sdrest.api.rest.model_views import SORT_KEYS
from sdrest.api.rest.outputs import DEFAULT_THUMB
from sdrest.api.rest.schemas import (
    BatchBody,
    CancelBody,
    ConvertBody,
    GenerateBody,
    HashBody,
    UpscaleBody,
    ValidateModelBody,
)
from sdrest.api.sdapi.extras import ExtrasBatchRequest, ExtrasSingleRequest
from sdrest.api.sdapi.info_routes import PngInfoRequest
from sdrest.api.sdapi.schemas import Img2ImgBody, OverrideSettings, Txt2ImgBody
from sdrest.schemas import ImgGenRequest

Route = tuple[str, str]
"""``(METHOD, path)``, the path as the app serves it."""


class Multipart(msgspec.Struct, frozen=True, kw_only=True):
    """A ``multipart/form-data`` body: file parts plus the text fields of ``fields``."""

    fields: type[msgspec.Struct]
    """The Struct the text parts are converted to (numbers and booleans parsed from text)."""
    files: tuple[str, ...]
    """Parts carrying one file each."""
    file_lists: tuple[str, ...] = ()
    """Parts that may repeat, one file each (``image[]``)."""
    description: str = ""


class NoBody(msgspec.Struct, frozen=True):
    """The route reads no body (anything sent is ignored)."""


NO_BODY: Final = NoBody()

BodySpec = type[msgspec.Struct] | Multipart | NoBody

REQUEST_BODIES: Final[Mapping[Route, BodySpec]] = MappingProxyType(
    {
        # /sdcpp/v1
        ("POST", "/sdcpp/v1/img_gen"): ImgGenRequest,
        ("POST", "/sdcpp/v1/vid_gen"): NO_BODY,
        ("POST", "/sdcpp/v1/jobs/{job_id}/cancel"): NO_BODY,
        # /v1 (OpenAI)
        ("POST", "/v1/images/generations"): GenerationBody,
        ("POST", "/v1/images/edits"): Multipart(
            fields=EditFields,
            files=("image", "mask"),
            file_lists=("image[]",),
            description="One or more images (`image`, or repeated `image[]`), an optional"
            " `mask` (transparent pixels are repainted) and the text fields.",
        ),
        # /sdapi/v1 (AUTOMATIC1111)
        ("POST", "/sdapi/v1/txt2img"): Txt2ImgBody,
        ("POST", "/sdapi/v1/img2img"): Img2ImgBody,
        ("POST", "/sdapi/v1/interrupt"): NO_BODY,
        ("POST", "/sdapi/v1/skip"): NO_BODY,
        ("POST", "/sdapi/v1/options"): OverrideSettings,
        ("POST", "/sdapi/v1/refresh-checkpoints"): NO_BODY,
        ("POST", "/sdapi/v1/refresh-vae"): NO_BODY,
        ("POST", "/sdapi/v1/refresh-loras"): NO_BODY,
        ("POST", "/sdapi/v1/unload-checkpoint"): NO_BODY,
        ("POST", "/sdapi/v1/reload-checkpoint"): NO_BODY,
        ("POST", "/sdapi/v1/png-info"): PngInfoRequest,
        ("POST", "/sdapi/v1/extra-single-image"): ExtrasSingleRequest,
        ("POST", "/sdapi/v1/extra-batch-images"): ExtrasBatchRequest,
        # /api (stable-diffusion.cpp-rest)
        ("POST", "/api/auth/login"): LoginBody,
        ("POST", "/api/auth/logout"): NO_BODY,
        ("POST", "/api/auth/refresh"): NO_BODY,
        ("POST", "/api/system/restart"): NO_BODY,
        ("POST", "/api/models/refresh"): NO_BODY,
        ("POST", "/api/models/batch"): BatchBody,
        ("POST", "/api/models/validate"): ValidateModelBody,
        ("POST", "/api/models/hash"): HashBody,
        ("POST", "/api/models/{model_id}/load"): NO_BODY,
        ("POST", "/api/models/{model_id}/unload"): NO_BODY,
        ("POST", "/api/models/convert"): ConvertBody,
        ("POST", "/api/generate/text2img"): GenerateBody,
        ("POST", "/api/generate/img2img"): GenerateBody,
        ("POST", "/api/generate/inpainting"): GenerateBody,
        ("POST", "/api/generate/controlnet"): GenerateBody,
        ("POST", "/api/generate/upscale"): UpscaleBody,
        ("POST", "/api/queue/cancel"): CancelBody,
        ("POST", "/api/queue/clear"): NO_BODY,
        ("POST", "/api/validate"): GenerateBody,
        ("POST", "/api/estimate"): GenerateBody,
        ("POST", "/api/image/resize"): ResizeBody,
        ("POST", "/api/image/crop"): CropBody,
    }
)
"""The body each route decodes. Every POST route has an entry (``NO_BODY`` when it reads none)."""


def _query(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


_FLAG = {"type": "boolean"}
_THUMB = (
    _query("thumb", _FLAG, "Answer a JPEG thumbnail instead of the file."),
    _query(
        "size",
        {"type": "integer", "minimum": 50, "maximum": 500},
        f"Longest side of the thumbnail (with `thumb`; default {DEFAULT_THUMB}).",
    ),
)
_MODE = (
    _query(
        "mode",
        {"type": "string", "enum": ["text2img", "img2img", "inpainting", "controlnet"]},
        "The generation mode to check the body against (default: what its images imply).",
    ),
)

QUERY_PARAMETERS: Final[Mapping[Route, tuple[dict[str, Any], ...]]] = MappingProxyType(
    {
        ("GET", "/sdcpp/v1/jobs/{job_id}"): (
            _query(
                "wait",
                {"type": "number", "minimum": 0, "maximum": 60},
                "Long poll: answer as soon as the job finishes, or after this many seconds.",
            ),
        ),
        ("GET", "/sdapi/v1/progress"): (
            _query("skip_current_image", _FLAG, "Leave out the live preview image."),
        ),
        ("GET", "/api/models"): (
            _query("type", {"type": "string"}, "Model type (checkpoint, lora, vae, ...)."),
            _query("search", {"type": "string"}, "Substring of the name."),
            _query("architecture", {"type": "string"}, "Detected architecture (sd1, flux...)."),
            _query("loaded", _FLAG, "Only the loaded (or only the unloaded) models."),
            _query("sort_by", {"type": "string", "enum": list(SORT_KEYS)}, "Sort key."),
            _query("sort_order", {"type": "string", "enum": ["asc", "desc"]}, "Sort order."),
            _query("limit", {"type": "integer", "minimum": 0, "maximum": 10_000}, "Page size."),
            _query(
                "page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "Page, from 1."
            ),
        ),
        ("GET", "/api/models/{model_id}"): (
            _query("type", {"type": "string"}, "Pick among files of the same name by type."),
        ),
        ("GET", "/api/queue/job/{job_id}/output/{filename}"): _THUMB,
        ("GET", "/api/v1/jobs/{job_id}/output/{filename}"): _THUMB,
        ("POST", "/api/validate"): _MODE,
        ("POST", "/api/estimate"): _MODE,
        ("GET", "/api/image/download"): (
            _query("url", {"type": "string"}, "The http(s) URL of the image.", required=True),
            _query(
                "encoding",
                {"type": "string", "enum": ["binary", "raw", "base64", "json"]},
                "`binary` answers the image itself, `base64` a JSON document.",
            ),
        ),
    }
)
"""The query parameters routes read (``request.query_params``), typed."""

PUBLIC_ROUTES: Final[frozenset[Route]] = frozenset(
    {
        ("GET", "/"),
        ("GET", "/openapi.json"),
        ("GET", "/api/health"),
        ("GET", "/internal/ping"),
        ("GET", "/api/status"),
        ("GET", "/api/version"),
        ("GET", "/api/queue/job/{job_id}/output/{filename}"),
        ("GET", "/api/v1/jobs/{job_id}/output/{filename}"),
        ("GET", "/api/image/download"),
        ("POST", "/api/validate"),
        ("POST", "/api/auth/login"),
    }
)
"""Routes that ask for no credentials, whatever the auth mode."""

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")

SUCCESS: Final[Mapping[Route, tuple[str, tuple[str, ...]]]] = MappingProxyType(
    {
        ("GET", "/"): ("307", ()),
        ("POST", "/sdcpp/v1/img_gen"): ("202", ("application/json",)),
        ("POST", "/sdcpp/v1/vid_gen"): ("501", ("application/json",)),
        ("POST", "/v1/images/generations"): ("200", ("application/json", "text/event-stream")),
        ("POST", "/v1/images/edits"): ("200", ("application/json", "text/event-stream")),
        ("POST", "/api/system/restart"): ("202", ("application/json",)),
        ("POST", "/api/models/convert"): ("202", ("application/json",)),
        ("POST", "/api/generate/text2img"): ("202", ("application/json",)),
        ("POST", "/api/generate/img2img"): ("202", ("application/json",)),
        ("POST", "/api/generate/inpainting"): ("202", ("application/json",)),
        ("POST", "/api/generate/controlnet"): ("501", ("application/json",)),
        ("POST", "/api/generate/upscale"): ("202", ("application/json",)),
        ("GET", "/api/queue/job/{job_id}/output/{filename}"): ("200", _IMAGE_TYPES),
        ("GET", "/api/v1/jobs/{job_id}/output/{filename}"): ("200", _IMAGE_TYPES),
        ("GET", "/api/queue/job/{job_id}/preview"): ("200", ("image/png",)),
        ("GET", "/api/image/download"): ("200", (*_IMAGE_TYPES, "application/json")),
    }
)
"""Status and media types of success where it is not ``200 application/json``."""

FAMILIES: Final[tuple[tuple[str, str, str], ...]] = (
    # (path prefix, tag, error schema name); the first match wins.
    ("/sdcpp/v1/", "sdcpp", "SdcppError"),
    ("/v1/", "openai", "OpenAIError"),
    ("/sdapi/v1/", "a1111", "A1111Error"),
    ("/api/health", "server", ""),
    ("/api/", "rest", "RestError"),
    ("/", "server", ""),
)

TAGS: Final[tuple[dict[str, str], ...]] = (
    {"name": "sdcpp", "description": "Native async jobs (stable-diffusion.cpp server API)."},
    {"name": "openai", "description": "OpenAI images API."},
    {"name": "a1111", "description": "AUTOMATIC1111 web UI API."},
    {"name": "rest", "description": "stable-diffusion.cpp-rest: auth, models, queue, utilities."},
    {"name": "server", "description": "Health, A1111 ping, this document, the UI redirect."},
)

_STR = {"type": "string"}
ERROR_SCHEMAS: Final[Mapping[str, dict[str, Any]]] = MappingProxyType(
    {
        "SdcppError": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {"error": _STR, "code": _STR, "field": _STR},
        },
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "message": _STR,
                        "type": _STR,
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "A1111Error": {
            "type": "object",
            "description": "A1111's error shape; validation errors (422) carry `detail` as a"
            " list of `{loc, msg, type}` (FastAPI's shape).",
            "properties": {
                "error": _STR,
                "detail": {"anyOf": [_STR, {"type": "array", "items": {"type": "object"}}]},
                "body": {},
                "errors": _STR,
                "code": _STR,
            },
        },
        "RestError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "message": _STR,
                        "code": _STR,
                        "status_code": {"type": "integer"},
                        "request_id": _STR,
                        "timestamp": {"type": "integer"},
                        "field": _STR,
                    },
                }
            },
        },
    }
)
"""Each family's error body, by component name."""
