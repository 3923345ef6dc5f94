"""Pieces every API family shares: JSON responses, body decoding, error rendering hooks."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from sdrest.api.json_limits import decode_client_json
from sdrest.auth.principal import ensure_visible, principal_of
from sdrest.errors import InvalidRequestError, JobFailedError, RetryLaterError, SdrestError
from sdrest.schemas import ImgGenRequest, Job
from sdrest.settings import deep_merge
from sdrest.units import format_bytes

if TYPE_CHECKING:
    from sdrest.service import SdrestService

T = TypeVar("T")
D = TypeVar("D")
_encoder = msgspec.json.Encoder()

MAX_JSON_BODY = 64 * 1024 * 1024
"""Largest JSON body accepted (base64 images included)."""


class JSONResponse(Response):
    """A JSON response encoded once, by msgspec."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode ``content`` (builtins or msgspec Structs) straight to JSON bytes."""
        return _encoder.encode(content)


async def read_body(request: Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The request body, refusing (413) anything larger than ``limit`` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body over {format_bytes(limit)}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body over {format_bytes(limit)}")
        chunks.append(chunk)
    return b"".join(chunks)


class PayloadTooLargeError(SdrestError):
    """The body is larger than the server accepts (413)."""

    status = 413
    code = "payload_too_large"


def decode_json(
    body: bytes,
    decoder: msgspec.json.Decoder[T],
    *,
    invalid: type[InvalidRequestError] = InvalidRequestError,
    named: bool = True,
) -> T:
    """Decode a body with a typed decoder; malformed JSON and type errors become 400s
    (``invalid``: the error class a family wants for a well-formed body with a bad field;
    ``named``: see :func:`validation_path`; nesting past the max depth is a 400 too:
    :mod:`sdrest.api.json_limits`)."""
    if not body.strip():
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        return decode_client_json(body, decoder)
    except msgspec.ValidationError as exc:
        field = validation_path(exc, named=named)
        raise invalid(f"invalid request: {exc}", field=field) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"malformed JSON: {exc}") from exc


def convert(value: Any, type_: type[T]) -> T:
    """msgspec.convert with the same 400 mapping as :func:`decode_json`."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"invalid request: {exc}", field=validation_path(exc)) from exc


def parse_choice(value: str | None, name: str, choices: Mapping[str, T], default: D) -> T | D:
    """A query parameter picked from names: ``choices`` maps each accepted spelling (aliases
    included) to its value, matched trimmed and case-insensitively; absent: ``default``; any
    other value is a 400 naming ``name``."""
    if value is None:
        return default
    found = choices.get(value.strip().lower())
    if found is None:
        accepted = ", ".join(dict.fromkeys(str(v) for v in choices.values()))
        raise InvalidRequestError(f"{name} must be one of {accepted}", field=name)
    return found


def parse_flag(value: str | None, name: str, default: bool = False) -> bool:
    """A boolean query parameter: true/1/yes/on (or bare, ``?thumb``) or false/0/no/off."""
    if value is None:
        return default
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on", ""):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidRequestError(f"{name} must be true or false, got {value!r}", field=name)


def parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``low..high`` (400 otherwise)."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequestError(f"{name} must be an integer, got {value!r}", field=name) from None
    if not low <= number <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}", field=name)
    return number


_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_NAMED = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def validation_path(exc: msgspec.ValidationError | str, *, named: bool = True) -> str | None:
    """The field a msgspec validation error blames, as a dotted path (``sample_params.steps``,
    ``ref_images[2]``), a missing or unknown field's name included (``named=False``: the
    object holding it, as FastAPI's ``loc`` does); None for the whole body.

    THE one reader of msgspec's message format (``... - at `$.a.b```); a test pins it.
    """
    text = str(exc)
    at = _AT.search(text)
    name = _NAMED.search(text) if named else None
    parts = [at.group(1) if at else "", name.group(1) if name else ""]
    return ".".join(part for part in parts if part) or None


def validation_message(exc: msgspec.ValidationError | str) -> str:
    """msgspec's message without its `` - at `$...``` location (:func:`validation_path`)."""
    return _AT.sub("", str(exc))


def compose_request(*layers: Mapping[str, object]) -> ImgGenRequest:
    """The canonical request from partial field layers, each over the ones before it (nested
    tables merge key by key): a family's precedence is the order it passes them in.

    Layers are :class:`~sdrest.schemas.RequestLayer` s (typed) or decoded JSON of unknown shape
    (a native block, a raw body): both are checked here, by the conversion."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged = deep_merge(merged, layer)
    return convert(merged, ImgGenRequest)


def error_status(exc: Exception) -> tuple[int, str, str]:
    """(status, code, message) for a domain error or a Starlette HTTPException."""
    if isinstance(exc, SdrestError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return exc.status_code, code, str(exc.detail)
    return 500, "internal_error", "internal server error"


def retry_headers(exc: Exception) -> dict[str, str]:
    """``Retry-After`` for an error that says when to come back (a full queue, a full decode
    budget); empty for any other. Every family's renderer adds these to its error answer."""
    if isinstance(exc, RetryLaterError):
        return {"Retry-After": str(exc.retry_after)}
    return {}


def service_of(request: Request | WebSocket) -> SdrestService:
    """The service behind a request (every family's sub-app and the outer app carry it)."""
    service: SdrestService = request.app.state.service
    return service


def family_exception_handlers(render: ExceptionRenderer) -> dict[Any, ExceptionRenderer]:
    """Route every error of a family's sub-app (domain errors, unknown routes and methods,
    unexpected exceptions) to the family's own renderer, so it answers in one shape."""
    return {Exception: render, SdrestError: render, HTTPException: render}


async def visible_job(request: Request, job_id: str) -> Job:
    """A job the caller may see (a copy): unknown and other users' jobs are both 404
    ``job_not_found``; an expired one is 410."""
    job = await service_of(request).get(job_id)
    ensure_visible(principal_of(request), job.owner, job_id)
    return job


CLIENT_CLOSED = 499
"""Status of an answer nobody reads: the client disconnected and its job was stopped."""


async def wait_unless_disconnected(
    request: Request, service: SdrestService, job: Job
) -> Job | None:
    """Await ``job`` for a synchronous family; None when the client went away first.

    A client that disconnects before the answer no longer wants the job: it is stopped (a queued
    job is cancelled, a generating one is stopped as soon as the engine allows) so the queue moves
    on. Call this after the body has been read: the next ASGI message is then the disconnect.
    """
    done = asyncio.ensure_future(service.wait(job.id))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await gone
    if done.done():
        return done.result()
    done.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await done
    await service.request_stop(job.id)
    return None


async def run_sync(
    request: Request, service: SdrestService, job: Job, *, cancelled_ok: bool = False
) -> Job | None:
    """THE run-to-completion step of the synchronous families: wait for ``job`` (None when the
    client left first: the job was stopped), raise :class:`JobFailedError` when it ended
    without a result. ``cancelled_ok``: a stopped job is an answer (A1111's interrupt), not an
    error."""
    done = await wait_unless_disconnected(request, service, job)
    if done is None or done.status == "completed":
        return done
    if cancelled_ok and done.status == "cancelled":
        return done
    raise JobFailedError.from_job(done)


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


ExceptionRenderer = Callable[[Request, Exception], Response]


def client_address(request: Request) -> str:
    """The peer address per-client limits (URL fetches) are counted against."""
    return request.client.host if request.client is not None else "unknown"
