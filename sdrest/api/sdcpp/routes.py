"""``/sdcpp/v1``: the family's complete route index and its sub-application.

Errors render as ``{"error": message, "code", "field"}`` (:class:`SdcppError`).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import (
    JSONResponse,
    error_status,
    family_exception_handlers,
    retry_headers,
)
from sdrest.api.routing import NO_BODY, Query, route
from sdrest.api.sdcpp import handlers
from sdrest.api.sdcpp.handlers import MAX_WAIT_SECONDS
from sdrest.api.sdcpp.responses import Capabilities, JobCreated, JobDocument, SdcppError
from sdrest.schemas import ImgGenRequest
from sdrest.service import SdrestService

_WAIT = Query(
    "wait",
    {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
    "Long poll: answer as soon as the job finishes, or after this many seconds.",
)

ROUTES = [
    route("/capabilities", handlers.capabilities, access="models:read", answer=Capabilities),
    route(
        "/img_gen",
        handlers.img_gen,
        "POST",
        access="generate",
        body=ImgGenRequest,
        answer=JobCreated,
        status=202,
    ),
    route(
        "/vid_gen", handlers.vid_gen, "POST", access="generate", body=NO_BODY, status=501,
        answer=SdcppError,
    ),
    route(
        "/jobs/{job_id}", handlers.get_job, access="identified", query=(_WAIT,), answer=JobDocument
    ),
    route(
        "/jobs/{job_id}/cancel",
        handlers.cancel_job,
        "POST",
        access="identified",
        body=NO_BODY,
        answer=JobDocument,
    ),
]


def _render_error(request: Request, exc: Exception) -> Response:
    status, code, message = error_status(exc)
    field = getattr(exc, "field", None)
    return JSONResponse(
        SdcppError(message, code, field or None), status_code=status, headers=retry_headers(exc)
    )


def create_sdcpp_app(service: SdrestService) -> Starlette:
    """The /sdcpp/v1 family; every error is an :class:`SdcppError`."""
    app = Starlette(routes=ROUTES, exception_handlers=family_exception_handlers(_render_error))
    app.state.service = service
    return app
