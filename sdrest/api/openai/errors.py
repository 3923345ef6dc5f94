"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, for every failure.

The official SDKs pick their exception class from the status alone (400 -> BadRequestError, 404 ->
NotFoundError...), then read ``error.message``; ``param`` names the request field in OpenAI's own
terms, so canonical field paths are translated back (``batch_count`` -> ``n``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from sdrest.errors import SdrestError
from sdrest.schemas import JobError

_TYPES: MappingProxyType[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "invalid_request_error",
        405: "invalid_request_error",
        409: "invalid_request_error",
        410: "invalid_request_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
        501: "not_implemented_error",
    }
)

# Canonical request field (as planning and validation name it) -> the OpenAI parameter.
_PARAMS: MappingProxyType[str, str] = MappingProxyType(
    {
        "batch_count": "n",
        "width": "size",
        "height": "size",
        "sample_params.sample_steps": "steps",
        "sample_params.guidance.txt_cfg": "cfg_scale",
        "sample_params.guidance": "cfg_scale",
        "sample_params.sample_method": "sampler",
        "sample_params.scheduler": "scheduler",
        "init_image": "image",
        "mask_image": "mask",
        "output_compression": "output_compression",
    }
)

_MISSING = "missing required field `"

# Why a job failed (JobError.code) -> the status a synchronous client sees. Engine failures are
# the only 5xx; a job someone else stopped is a conflict, a vanished server is "unavailable".
_JOB_STATUS: MappingProxyType[str, int] = MappingProxyType(
    {
        "invalid_request": 400,
        "not_found": 404,
        "cancelled": 409,
        "interrupted": 409,
        "not_implemented": 501,
        "server_restarted": 503,
        "model_load_failed": 500,
        "generation_failed": 500,
        "internal_error": 500,
    }
)
_JOB_MESSAGES: MappingProxyType[str, str] = MappingProxyType(
    {
        "model_load_failed": "the model could not be loaded",
        "generation_failed": "image generation failed",
        "cancelled": "the job was cancelled before it ran",
        "interrupted": "the job was stopped while generating",
        "server_restarted": "the server restarted while the job was running",
    }
)


def param_of(field: str | None) -> str | None:
    """The OpenAI parameter for a canonical field path (``ref_images[2]`` -> ``image``)."""
    if field is None:
        return None
    if field.startswith("ref_images"):
        return "image"
    if field.startswith("lora"):
        return "lora"
    return _PARAMS.get(field, field)


def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status."""
    if status >= 500 and status != 501:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error document."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def exception_body(status: int, code: str, message: str, exc: Exception) -> dict[str, Any]:
    """The error document of an exception, unknown models with OpenAI's own code."""
    field = exc.field if isinstance(exc, SdrestError) else None
    if field is None and _MISSING in message:  # msgspec names a missing field only in the text
        field = message.split(_MISSING, 1)[1].split("`", 1)[0]
    if status == 404 and field == "model":
        code = "model_not_found"
    return error_body(status, code, message, param_of(field))


def job_failure(error: JobError | None) -> tuple[int, dict[str, Any]]:
    """(status, body) for a job that did not complete; 5xx only when the engine failed."""
    if error is None:
        return 500, error_body(500, "internal_error", "the job ended without a result")
    status = _JOB_STATUS.get(error.code, 500)
    lead = _JOB_MESSAGES.get(error.code)
    message = f"{lead}: {error.message}" if lead and error.message else (lead or error.message)
    return status, error_body(status, error.code, message)
