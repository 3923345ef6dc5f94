"""Error shapes of the whole ``/sdapi/v1`` family, as AUTOMATIC1111 answers.

- Validation errors (malformed JSON, a known field of the wrong type or out of range): 422
  ``{"detail": [{"loc": ["body", field...], "msg", "type"}]}``, FastAPI's shape.
- Everything else: A1111's API exception handler shape ``{"error", "detail", "body", "errors"}``
  (``error`` the exception class name, ``errors`` ``"<status>: <message>"``), plus sdrest's stable
  ``code`` and, when known, ``field``.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, error_status
from sdrest.errors import InvalidRequestError, SdrestError

T = TypeVar("T")
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


class ValidationFailed(InvalidRequestError):
    """A body that does not match the schema (422, FastAPI's ``detail`` list)."""

    status = 422
    code = "validation_error"

    def __init__(self, message: str, *, loc: list[str | int], kind: str) -> None:
        field = ".".join(str(p) for p in loc[1:]) or None
        super().__init__(message, field=field)
        self.loc = loc
        self.kind = kind


def _location(message: str) -> tuple[str, list[str | int]]:
    match = _PATH.search(message)
    if match is None:
        return message, ["body"]
    loc: list[str | int] = ["body"]
    for name, index in _PART.findall(match["path"]):
        loc.append(int(index) if index else name)
    return message[: match.start()], loc


def decode_body(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode with a typed decoder; every failure is a :class:`ValidationFailed` (422)."""
    if not body.strip():
        raise ValidationFailed("Field required", loc=["body"], kind="missing")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        message, loc = _location(str(exc))
        raise ValidationFailed(message, loc=loc, kind="type_error") from exc
    except msgspec.DecodeError as exc:
        raise ValidationFailed(
            f"JSON decode error: {exc}", loc=["body"], kind="json_invalid"
        ) from exc


def render_error(request: Request, exc: Exception) -> Response:
    """The family's exception handler (routes only raise; this renders)."""
    if isinstance(exc, ValidationFailed):
        detail = [{"loc": exc.loc, "msg": exc.message, "type": exc.kind}]
        return JSONResponse({"detail": detail}, status_code=422)
    status, code, message = error_status(exc)
    if isinstance(exc, SdrestError):
        name = type(exc).__name__
    elif status < 500:
        name = "HTTPException"
    else:  # Starlette's ServerErrorMiddleware re-raises it: the server logs the traceback
        name = "InternalServerError"
    body: dict[str, Any] = {
        "error": name,
        "detail": message,
        "body": "",
        "errors": f"{status}: {message}",
        "code": code,
    }
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)
