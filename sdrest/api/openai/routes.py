"""``/v1``: the OpenAI images family's complete route index and its sub-application.

Every error, unknown routes included, is OpenAI-shaped (:class:`OpenAIError`).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, family_exception_handlers, retry_headers
from sdrest.api.openai import handlers
from sdrest.api.openai.errors import exception_error
from sdrest.api.openai.responses import ImagesResponse, ModelList, OpenAIModel
from sdrest.api.openai.schemas import EditFields, GenerationBody
from sdrest.api.routing import JSON, Multipart, route
from sdrest.errors import JobFailedError
from sdrest.service import SdrestService

_IMAGES = (JSON, "text/event-stream")
"""A JSON answer, or server-sent events with ``stream: true``."""

ROUTES = [
    route("/models", handlers.list_models, access="models:read", answer=ModelList),
    route("/models/{model}", handlers.get_model, access="models:read", answer=OpenAIModel),
    route(
        "/images/generations",
        handlers.generations,
        "POST",
        access="generate",
        body=GenerationBody,
        answer=ImagesResponse,
        media_types=_IMAGES,
    ),
    route(
        "/images/edits",
        handlers.edits,
        "POST",
        access="generate",
        body=Multipart(
            fields=EditFields,
            files=("image", "mask"),
            file_lists=("image[]",),
            description="One or more images (`image`, or repeated `image[]`), an optional"
            " `mask` (transparent pixels are repainted) and the text fields.",
        ),
        answer=ImagesResponse,
        media_types=_IMAGES,
    ),
]


def _render_error(request: Request, exc: Exception) -> Response:
    # Unexpected exceptions are re-raised after this by Starlette and logged by the server.
    status, body = exception_error(exc)
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else retry_headers(exc)
    if isinstance(exc, JobFailedError):  # the job stays visible: say which it was
        headers = {handlers.JOB_HEADER: exc.job_id}
    return JSONResponse(body, status_code=status, headers=headers)


def create_openai_app(service: SdrestService) -> Starlette:
    """The /v1 family; every error is an :class:`OpenAIError`."""
    app = Starlette(routes=ROUTES, exception_handlers=family_exception_handlers(_render_error))
    app.state.service = service
    return app
