"""``/v1``: OpenAI-compatible image generation and editing, and the model list.

Synchronous for the client, but every request is an ordinary job (family ``openai``): it waits in
the same queue, shows in /sdcpp/v1/jobs/{id} and the /api queue, and is stopped when the client
disconnects before the answer.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sdrest.api.common import (
    CLIENT_CLOSED,
    JSONResponse,
    error_status,
    family_exception_handlers,
    read_body,
    service_of,
    wait_unless_disconnected,
)
from sdrest.api.openai import translate
from sdrest.api.openai.edits import REFERENCE_ARCHITECTURES, edit_to_request
from sdrest.api.openai.errors import error_body, exception_body, job_failure
from sdrest.api.openai.forms import read_edit_upload
from sdrest.api.openai.streaming import job_events
from sdrest.auth.principal import principal_of, require
from sdrest.errors import NotFoundError, SdrestError
from sdrest.service import SdrestService

logger = logging.getLogger(__name__)

JOB_HEADER = "x-sdrest-job-id"
"""Response header naming the job behind a reply."""


def _known_models(service: SdrestService) -> list[str]:
    return [model.name for model in service.registry.generation_models()]


async def list_models(request: Request) -> Response:
    """``GET /models``: the registry's generation models and presets, OpenAI-shaped."""
    require(request, "models:read")
    service = service_of(request)
    models = service.registry.generation_models()
    return JSONResponse(translate.models_list(models, service.started_at))


async def get_model(request: Request) -> Response:
    """``GET /models/{model}``: one model, or a 404 ``model_not_found``."""
    require(request, "models:read")
    service = service_of(request)
    name = request.path_params["model"]
    for model in service.registry.generation_models():
        if model.name == name:
            return JSONResponse(translate.model_object(model, service.started_at))
    raise NotFoundError(f"model {name!r} not found", field="model")


async def _answer(request: Request, translated: translate.Translated) -> Response:
    """Queue the job, wait for it (or for the client to leave), and render the reply."""
    service = service_of(request)
    owner = principal_of(request).username
    job = await service.submit(translated.request, owner=owner, family="openai")
    if translated.stream:
        prefix = "image_edit" if request.url.path.endswith("/edits") else "image_generation"
        return StreamingResponse(
            job_events(service, job, translated, prefix),
            media_type="text/event-stream",
            headers={JOB_HEADER: job.id, "Cache-Control": "no-cache"},
        )
    done = await wait_unless_disconnected(request, service, job)
    if done is None:
        logger.info("client left before job %s finished; the job was stopped", job.id)
        body = error_body(CLIENT_CLOSED, "client_closed", "the client closed the connection")
        return JSONResponse(body, status_code=CLIENT_CLOSED)
    # The job stays visible at /sdcpp/v1/jobs/{id} and in the /api queue: say which it was.
    headers = {JOB_HEADER: job.id}
    if done.status != "completed" or done.result is None:
        status, body = job_failure(done.error)
        return JSONResponse(body, status_code=status, headers=headers)

    # Reading and base64-encoding the files is blocking work: off the event loop.
    body = await asyncio.to_thread(
        translate.images_response,
        done,
        translated,
        str(request.base_url),
        lambda filename: service.output_b64(done.id, filename),
    )
    return JSONResponse(body, headers=headers)


async def generations(request: Request) -> Response:
    """``POST /images/generations``: text to image."""
    require(request, "generate")
    service = service_of(request)
    raw = await read_body(request)
    translated = translate.generation_to_request(
        raw, _known_models(service), service.request_defaults
    )
    return await _answer(request, translated)


def _is_reference_model(service: SdrestService, name: str | None) -> bool:
    """Whether the model edits through reference images (see ``edit_mode``)."""
    registry = service.registry
    try:
        name = name or service.default_model()
        try:
            return registry.get(name).architecture in REFERENCE_ARCHITECTURES
        except LookupError:
            preset = registry.preset(name)
            main = preset.model or preset.diffusion_model
            return main is not None and registry.get(main).architecture in REFERENCE_ARCHITECTURES
    except (SdrestError, LookupError):
        return False  # an unknown or odd model: planning reports it properly later


async def edits(request: Request) -> Response:
    """``POST /images/edits``: multipart image(s) [+ mask] + prompt -> edited images."""
    require(request, "generate")
    service = service_of(request)
    upload = await read_edit_upload(request, service.settings.limits)
    # Decoding images and masks is CPU work: off the event loop.
    translated = await asyncio.to_thread(
        edit_to_request,
        upload.fields,
        upload.images,
        upload.mask,
        _known_models(service),
        service.request_defaults,
        limits=service.settings.limits,
        is_reference_model=lambda name: _is_reference_model(service, name),
    )
    return await _answer(request, translated)


def _render_error(request: Request, exc: Exception) -> Response:
    # Unexpected exceptions are re-raised after this by Starlette and logged by the server.
    status, code, message = error_status(exc)
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return JSONResponse(
        exception_body(status, code, message, exc), status_code=status, headers=headers
    )


def create_openai_app(service: SdrestService) -> Starlette:
    """The /v1 family; every error, unknown routes included, is OpenAI-shaped."""
    app = Starlette(
        routes=[
            Route("/models", list_models, methods=["GET"]),
            Route("/models/{model}", get_model, methods=["GET"]),
            Route("/images/generations", generations, methods=["POST"]),
            Route("/images/edits", edits, methods=["POST"]),
        ],
        exception_handlers=family_exception_handlers(_render_error),
    )
    app.state.service = service
    return app
