"""The /api family's error shape, its UPPERCASE codes and the request-id middleware.

Every error under ``/api`` answers ``{"error": {"message", "code", "status_code", "request_id",
"timestamp"}}`` (plus ``field`` when one input is to blame). Codes come from ONE table keyed by the
domain error's stable lower-case code, so routes raise ordinary :class:`SdrestError` subclasses
(as the auth and utility routes do) and never pick a wire code by hand.
"""

from __future__ import annotations

import logging
import time

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdrest.api.common import JSONResponse, retry_headers
from sdrest.api.rest.responses import RestError, RestErrorDetail
from sdrest.errors import (
    ConflictError,
    InvalidRequestError,
    SdrestError,
)
from sdrest.logs import REQUEST_ID_KEY, new_request_id

logger = logging.getLogger(__name__)

# Domain error code -> the spec's UPPERCASE code. Codes missing here are upper-cased as they are.
REST_CODES: dict[str, str] = {
    "auth_required": "AUTH_REQUIRED",
    "invalid_credentials": "INVALID_CREDENTIALS",
    "forbidden": "INSUFFICIENT_PERMISSIONS",
    "invalid_request": "INVALID_PARAMETERS",
    "validation_error": "VALIDATION_ERROR",
    "not_found": "NOT_FOUND",
    "job_not_found": "JOB_NOT_FOUND",
    "model_not_found": "MODEL_NOT_FOUND",
    "model_not_loaded": "MODEL_NOT_LOADED",
    "conflict": "CONFLICT",
    "gone": "JOB_EXPIRED",
    "queue_full": "QUEUE_FULL",
    "server_busy": "SERVER_BUSY",
    "payload_too_large": "PAYLOAD_TOO_LARGE",
    "not_implemented": "NOT_IMPLEMENTED",
    "method_not_allowed": "METHOD_NOT_ALLOWED",
    "generation_failed": "GENERATION_FAILED",
    "model_load_failed": "MODEL_LOAD_FAILED",
    "internal_error": "INTERNAL_ERROR",
}


class ModelNotLoadedError(ConflictError):
    """The named model is not among those the engine holds (409 MODEL_NOT_LOADED)."""

    code = "model_not_loaded"


class ValidationFailedError(InvalidRequestError):
    """The body is well-formed JSON but a field has the wrong type or value (400)."""

    code = "validation_error"


def rest_code(code: str) -> str:
    """The wire code for a domain error code."""
    return REST_CODES.get(code, code.upper())


def request_id_of(conn: HTTPConnection) -> str:
    """The id the middleware gave this request (a fresh one if it ran outside it)."""
    value = conn.scope.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else new_request_id()


def error_body(
    status: int, code: str, message: str, request_id: str, field: str | None = None
) -> RestError:
    """The spec's error document (``code``: the domain code, written as the wire's)."""
    detail = RestErrorDetail(
        message, rest_code(code), status, request_id, int(time.time()), field or None
    )
    return RestError(detail)


def _status_of(exc: Exception) -> tuple[int, str, str, str | None]:
    if isinstance(exc, SdrestError):
        return exc.status, exc.code, exc.message, exc.field
    if isinstance(exc, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = {404: "no such endpoint", 405: "method not allowed"}.get(
            exc.status_code, str(exc.detail)
        )
        return exc.status_code, code, detail, None
    return 500, "internal_error", "internal server error", None


def render_error(request: HTTPConnection, exc: Exception) -> Response:
    """Exception handler for the /api sub-app (domain errors, 404/405 and the rest)."""
    status, code, message, field = _status_of(exc)
    request_id = request_id_of(request)
    headers = {"X-Request-ID": request_id, **retry_headers(exc)}
    if isinstance(exc, HTTPException) and exc.headers:
        headers.update(exc.headers)  # e.g. Allow on a 405
    return JSONResponse(
        error_body(status, code, message, request_id, field), status_code=status, headers=headers
    )


class RequestIdMiddleware:
    """Give every HTTP request an id (the one the app's middleware gave it, when it runs under
    :func:`sdrest.app.create_app`), send it back as ``X-Request-ID`` on every response, and
    answer an unexpected exception with the family's 500 document (logged with the id) instead of
    a bare text page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = scope.get(REQUEST_ID_KEY)
        request_id = given if isinstance(given, str) else new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception(
                "unhandled error in %s %s (%s)", scope.get("method"), scope.get("path"), request_id
            )
            if started:
                raise  # too late for an error document: let the server close the connection
            response = JSONResponse(
                error_body(500, "internal_error", "internal server error", request_id),
                status_code=500,
                headers={"X-Request-ID": request_id},
            )
            await response(scope, receive, send)
