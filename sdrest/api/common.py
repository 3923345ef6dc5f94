"""Pieces every API family shares: JSON responses, body decoding, error rendering hooks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from sdrest.errors import InvalidRequestError, SdrestError
from sdrest.schemas import Job

if TYPE_CHECKING:
    from sdrest.service import SdrestService

T = TypeVar("T")
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
        raise PayloadTooLargeError(f"request body over {limit // (1024 * 1024)} MiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body over {limit // (1024 * 1024)} MiB")
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
) -> T:
    """Decode a body with a typed decoder; malformed JSON and type errors become 400s
    (``invalid``: the error class a family wants for a well-formed body with a bad field)."""
    if not body.strip():
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise invalid(f"invalid request: {exc}", field=_field_of(exc)) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"malformed JSON: {exc}") from exc


def convert(value: Any, type_: type[T]) -> T:
    """msgspec.convert with the same 400 mapping as :func:`decode_json`."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"invalid request: {exc}", field=_field_of(exc)) from exc


def _field_of(exc: msgspec.ValidationError) -> str | None:
    text = str(exc)
    marker = " - at `$."
    if marker in text:
        return text.split(marker, 1)[1].rstrip("`")
    return None


def error_status(exc: Exception) -> tuple[int, str, str]:
    """(status, code, message) for a domain error or a Starlette HTTPException."""
    if isinstance(exc, SdrestError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return exc.status_code, code, str(exc.detail)
    return 500, "internal_error", "internal server error"


def service_of(request: Request | WebSocket) -> SdrestService:
    """The service behind a request (every family's sub-app and the outer app carry it)."""
    service: SdrestService = request.app.state.service
    return service


def family_exception_handlers(render: ExceptionRenderer) -> dict[Any, ExceptionRenderer]:
    """Route every error of a family's sub-app (domain errors, unknown routes and methods,
    unexpected exceptions) to the family's own renderer, so it answers in one shape."""
    return {Exception: render, SdrestError: render, HTTPException: render}


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


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


ExceptionRenderer = Callable[[Request, Exception], Response]
