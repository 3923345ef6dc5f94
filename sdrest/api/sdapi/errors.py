"""Error shapes of the whole ``/sdapi/v1`` family, as AUTOMATIC1111 answers.

- Validation errors (malformed JSON, a known field of the wrong type or out of range): 422
  ``{"detail": [{"loc": ["body", field...], "msg", "type"}]}``, FastAPI's shape
  (:class:`~sdrest.api.sdapi.responses.A1111ValidationError`).
- Everything else: A1111's API exception handler shape ``{"error", "detail", "body", "errors"}``
  (``error`` the exception class name, ``errors`` ``"<status>: <message>"``), plus sdrest's stable
  ``code`` and, when known, ``field`` (:class:`~sdrest.api.sdapi.responses.A1111Error`). JSON
  nested past the max depth is one of these (400 ``InvalidRequestError``), as FastAPI has no
  answer of its own for it (its decoder fails with a 500).
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import (
    JSONResponse,
    error_status,
    retry_headers,
    validation_message,
    validation_path,
)
from sdrest.api.json_limits import decode_client_json
from sdrest.api.sdapi.responses import A1111Error, A1111ValidationError, ValidationItem
from sdrest.errors import (
    InvalidRequestError,
    JobFailedError,
    NotImplementedFeatureError,
    SdrestError,
)

T = TypeVar("T")
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class ValidationFailed(InvalidRequestError):
    """A body that does not match the schema (422, FastAPI's ``detail`` list)."""

    status = 422
    code = "validation_error"

    def __init__(self, message: str, *, loc: list[str | int], kind: str) -> None:
        field = ".".join(str(p) for p in loc[1:]) or None
        super().__init__(message, field=field)
        self.loc = loc
        self.kind = kind


class RefusedFeatureError(InvalidRequestError):
    """A request for something A1111 would run and this server cannot (a script, an extension,
    face restoration, the interrogator): 422 in A1111's ``HTTPException`` shape, saying why,
    instead of an answer that silently leaves it out."""

    status = 422
    code = "not_available"
    a1111_name = "HTTPException"


class EndpointUnavailableError(NotImplementedFeatureError):
    """An A1111 endpoint whose feature this server lacks (``/interrogate``): 501 saying why."""

    a1111_name = "HTTPException"


def body_location(path: str | None) -> list[str | int]:
    """FastAPI's ``loc`` of a dotted field path: ``a.b[2]`` -> ``["body", "a", "b", 2]``."""
    loc: list[str | int] = ["body"]
    for name, index in _PART.findall(path or ""):
        loc.append(int(index) if index else name)
    return loc


def decode_body(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode with a typed decoder; every failure is a :class:`ValidationFailed` (422)."""
    if not body.strip():
        raise ValidationFailed("Field required", loc=["body"], kind="missing")
    try:
        return decode_client_json(body, decoder)  # too deeply nested: a 400
    except msgspec.ValidationError as exc:
        loc = body_location(validation_path(exc, named=False))
        raise ValidationFailed(validation_message(exc), loc=loc, kind="type_error") from exc
    except msgspec.DecodeError as exc:
        raise ValidationFailed(
            f"JSON decode error: {exc}", loc=["body"], kind="json_invalid"
        ) from exc


def render_error(request: Request, exc: Exception) -> Response:
    """The family's exception handler (routes only raise; this renders)."""
    if isinstance(exc, ValidationFailed):
        item = ValidationItem(exc.loc, exc.message, exc.kind)
        return JSONResponse(A1111ValidationError([item]), status_code=422)
    status, code, message = error_status(exc)
    if isinstance(exc, JobFailedError):
        message = exc.reason  # A1111 reports the job's own words
    if isinstance(exc, SdrestError):
        name = getattr(exc, "a1111_name", None) or type(exc).__name__
    elif status < 500:
        name = "HTTPException"
    else:  # Starlette's ServerErrorMiddleware re-raises it: the server logs the traceback
        name = "InternalServerError"
    field = getattr(exc, "field", None) or None
    body = A1111Error(name, message, "", f"{status}: {message}", code, field)
    return JSONResponse(body, status_code=status, headers=retry_headers(exc))
