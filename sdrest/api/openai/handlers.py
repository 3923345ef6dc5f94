"""``/v1`` endpoints: the model list, image generation and image editing.

Access rules, bodies and answers are declared in :mod:`sdrest.api.openai.routes`. Synchronous for
the client, but every request is an ordinary job (family ``openai``): it waits in the same queue,
shows in /sdcpp/v1/jobs/{id} and the /api queue, and is stopped when the client disconnects
before the answer.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sdrest.api.common import CLIENT_CLOSED, JSONResponse, read_body, run_sync, service_of
from sdrest.api.openai import translate
from sdrest.api.openai.edits import edit_to_request
from sdrest.api.openai.errors import error_body
from sdrest.api.openai.forms import read_edit_upload
from sdrest.api.openai.responses import ImagesResponse, ModelList, OpenAIModel
from sdrest.api.openai.streaming import job_events
from sdrest.auth import principal_of
from sdrest.errors import JobFailedError, ModelNotFoundError

logger = logging.getLogger(__name__)

JOB_HEADER = "x-sdrest-job-id"
"""Response header naming the job behind a reply (a failed one's too)."""


async def list_models(request: Request) -> Response:
    """The registry's generation models and presets, OpenAI-shaped."""
    service = service_of(request)
    return JSONResponse(ModelList.of(service.models.generation_models(), service.started_at))


async def get_model(request: Request) -> Response:
    """One model, or a 404 ``model_not_found``."""
    service = service_of(request)
    name = request.path_params["model"]
    for model in service.models.generation_models():
        if model.name == name:
            return JSONResponse(OpenAIModel.of(model, service.started_at))
    raise ModelNotFoundError(f"model {name!r} not found", field="model")


async def generations(request: Request) -> Response:
    """Text to image."""
    service = service_of(request)
    translated = translate.generation_to_request(await read_body(request), service.models)
    return await _answer(request, translated, "image_generation")


async def edits(request: Request) -> Response:
    """Multipart image(s) [+ mask] + prompt -> edited images."""
    service = service_of(request)
    upload = await read_edit_upload(request, service.settings.limits)
    parsed = translate.parse_body(upload.fields)
    model = translate.choose_model(parsed, service.models, edit=True)
    # Decoding images and masks is CPU work: off the event loop.
    limits = service.settings.limits
    translated = await asyncio.to_thread(
        service.decodes.call,
        lambda hold: edit_to_request(
            parsed, upload.images, upload.mask, model, limits=limits, hold=hold
        ),
    )
    return await _answer(request, translated, "image_edit")


async def _answer(request: Request, translated: translate.ImagesJob, prefix: str) -> Response:
    """Queue the job, wait for it (or for the client to leave), and render the reply
    (``prefix``: the streamed events' name, ``image_generation`` or ``image_edit``)."""
    service = service_of(request)
    owner = principal_of(request).username
    job = await service.submit(translated.request, owner=owner, family="openai")
    if translated.stream:
        return StreamingResponse(
            job_events(service, job, translated, prefix),
            media_type="text/event-stream",
            headers={JOB_HEADER: job.id, "Cache-Control": "no-cache"},
        )
    done = await run_sync(request, service, job)  # a failed job: JobFailedError, job header on
    if done is None:
        logger.info("client left before job %s finished; the job was stopped", job.id)
        error = error_body(CLIENT_CLOSED, "client_closed", "the client closed the connection")
        return JSONResponse(error, status_code=CLIENT_CLOSED)
    if done.result is None:
        raise JobFailedError.from_job(done)
    if translated.response_format == "url":
        # From the configured address, never the request's Host header (a client sets that).
        url_base = service.settings.public_base_url
        body = ImagesResponse.of(
            done, [], url_base=url_base, revised_prompt=translated.revised_prompt
        )
    else:
        # Reading and base64-encoding the files is blocking work: off the event loop.
        images = await asyncio.to_thread(service.outputs_b64, done)
        body = ImagesResponse.of(done, images, revised_prompt=translated.revised_prompt)
    # The job stays visible at /sdcpp/v1/jobs/{id} and in the /api queue: say which it was.
    return JSONResponse(body, headers={JOB_HEADER: job.id})
