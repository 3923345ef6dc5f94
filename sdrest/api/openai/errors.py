"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, for every failure.

The official SDKs pick their exception class from the status alone (400 -> BadRequestError, 404 ->
NotFoundError...), then read ``error.message``; ``param`` names the request field in OpenAI's own
terms, so canonical field paths are translated back (``batch_count`` -> ``n``). A job that ended
without images is a :class:`~sdrest.errors.JobFailedError` (its status from the one table,
``JOB_FAILURE_STATUS``; its code the job's own).
"""

from __future__ import annotations

from types import MappingProxyType

from sdrest.api.common import error_status
from sdrest.api.openai.responses import OpenAIError, OpenAIErrorDetail
from sdrest.errors import SdrestError

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


def error_body(status: int, code: str, message: str, param: str | None = None) -> OpenAIError:
    """The OpenAI error document."""
    return OpenAIError(OpenAIErrorDetail(message, error_type(status), param, code))


def exception_error(exc: Exception) -> tuple[int, OpenAIError]:
    """(status, error document) of any exception: a domain error keeps its code (an unknown
    model's is ``model_not_found``, a failed job's is the job's own), its field becomes
    ``param``; anything unexpected is a 500 ``internal_error``."""
    status, code, message = error_status(exc)
    field = exc.field if isinstance(exc, SdrestError) else None
    return status, error_body(status, code, message, param_of(field))
