"""``/sdapi/v1``: the AUTOMATIC1111 API over the one job system.

txt2img and img2img submit an ordinary job and wait for it (a client that disconnects stops its
job), so A1111 jobs show in the same queue, progress and history as every other family's. The
listing/management half of the family lives in ``info_routes``; both raise SdrestErrors only and
share the error renderer in ``errors``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdrest.api.common import (
    CLIENT_CLOSED,
    JSONResponse,
    family_exception_handlers,
    read_body,
    service_of,
    wait_unless_disconnected,
)
from sdrest.api.sdapi import samplers, state, translate
from sdrest.api.sdapi.checkpoints import checkpoint_title, resolve_checkpoint
from sdrest.api.sdapi.errors import ValidationFailed, decode_body, render_error
from sdrest.api.sdapi.info_routes import INFO_ROUTES
from sdrest.api.sdapi.schemas import (
    ANY_DECODER,
    IMG2IMG_DECODER,
    TXT2IMG_DECODER,
    Img2ImgBody,
    OverrideSettings,
    Txt2ImgBody,
)
from sdrest.api.sdapi.url_images import fetch_url_images
from sdrest.auth.principal import require
from sdrest.errors import EngineError, ForbiddenError, InvalidRequestError
from sdrest.images import image_to_b64
from sdrest.schemas import Job
from sdrest.service import SdrestService

_OPTIONS_DECODER: msgspec.json.Decoder[dict[str, Any]] = msgspec.json.Decoder(dict[str, Any])
MAX_OPTIONS_BODY = 1024 * 1024


def _options(request: Request) -> state.OptionsStore:
    store: state.OptionsStore = request.app.state.options
    return store


def _context(request: Request) -> translate.Context:
    service = service_of(request)
    settings = service.settings
    names = None
    if settings.a1111_prompt_loras:
        names = frozenset(entry.name for entry in service.registry.entries("lora"))
    registry = service.registry
    return translate.Context(
        defaults_for=service.request_defaults,
        resolve_checkpoint=lambda title: resolve_checkpoint(title, registry),
        limits=settings.limits,
        prompt_lora_names=names,
        options=dict(_options(request).values),
    )


def _read_images(service: SdrestService, job: Job) -> list[str]:
    if job.result is None:
        return []
    return [service.output_b64(job.id, ref.filename) for ref in job.result.images]


class GenerationFailedError(EngineError):
    """The job failed in the engine; ``code`` is the job's own error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _generate(request: Request, decoder: msgspec.json.Decoder[Any]) -> Response:
    principal = require(request, "generate")
    service = service_of(request)
    raw = await read_body(request)
    body: Txt2ImgBody = decode_body(raw, decoder)
    body = await fetch_url_images(body, service.settings)
    context = _context(request)
    if isinstance(body, Img2ImgBody) or body.extra_images is not None:
        # Resizing and blurring input images is CPU work: keep it off the event loop.
        gen_request = await asyncio.to_thread(translate.to_request, body, context)
    else:
        gen_request = translate.to_request(body, context)
    job = await service.submit(gen_request, owner=principal.username, family="sdapi")
    finished = await wait_unless_disconnected(request, service, job)
    if finished is None:
        return Response(status_code=CLIENT_CLOSED)  # nobody is listening any more
    if finished.status == "failed":
        error = finished.error
        raise GenerationFailedError(
            error.code if error else "generation_failed",
            error.message if error else "generation failed",
        )
    images: list[str] = []
    if finished.status == "completed" and body.send_images is not False:
        images = await asyncio.to_thread(_read_images, service, finished)
    include = isinstance(body, Img2ImgBody) and bool(body.include_init_images)
    # The echo re-reads the body as sent, base64 images and all: off the event loop.
    parameters = await asyncio.to_thread(
        lambda: translate.echo_parameters(ANY_DECODER.decode(raw), include)
    )
    extra = translate.ResultInfo(
        parameters=parameters,
        images=images,
        model_hash=service.registry.short_hash(finished.model),
        batch_size=body.batch_size,
        n_iter=body.n_iter,
        subseed=body.subseed if body.subseed is not None else -1,
        img2img=isinstance(body, Img2ImgBody),
    )
    return JSONResponse(translate.generation_response(finished, extra))


async def txt2img(request: Request) -> Response:
    """``POST /txt2img``: generate and answer ``{images, parameters, info}``."""
    return await _generate(request, TXT2IMG_DECODER)


async def img2img(request: Request) -> Response:
    """``POST /img2img``: like txt2img from ``init_images[0]`` (``mask`` for inpainting)."""
    return await _generate(request, IMG2IMG_DECODER)


async def progress(request: Request) -> Response:
    """``GET /progress``: the current job of the whole server, whichever family sent it."""
    principal = require(request, "generate")  # whoever may generate may watch it happen
    service = service_of(request)
    job = service.current_job
    visible = job is not None and principal.may_see(job.owner)
    current_image = None
    skip = request.query_params.get("skip_current_image", "").lower() in ("1", "true")
    if job is not None and visible and not skip:
        preview = await service.preview_png(job)
        current_image = image_to_b64(preview[1]) if preview is not None else None
    return JSONResponse(
        state.progress_view(
            job,
            queued=len(service.queued_ids()),
            visible=visible,
            stop_requested=job is not None and service.stop_requested(job.id),
            current_image=current_image,
        )
    )


async def interrupt(request: Request) -> Response:
    """``POST /interrupt``: stop the current job (at once in worker mode; in-process when the
    native call returns)."""
    principal = require(request, "generate")
    service = service_of(request)
    job = service.current_job
    if job is not None:
        if not principal.may_see(job.owner):
            raise ForbiddenError("the running job belongs to another user")
        await service.request_stop(job.id)
    return JSONResponse({})


async def list_samplers(request: Request) -> Response:
    """``GET /samplers``: the samplers stable-diffusion.cpp really has, by A1111 name."""
    require(request, "models:read")
    return JSONResponse(samplers.samplers_listing())


async def list_schedulers(request: Request) -> Response:
    """``GET /schedulers``: the schedulers stable-diffusion.cpp really has, by A1111 name."""
    require(request, "models:read")
    return JSONResponse(samplers.schedulers_listing())


async def get_options(request: Request) -> Response:
    """``GET /options``: A1111's options object; ``sd_model_checkpoint`` is the default model."""
    require(request, "models:read")
    service = service_of(request)
    try:
        name: str | None = service.default_model()
    except InvalidRequestError:
        name = None  # no model, or several and none chosen: still answer
    return JSONResponse(
        state.options_view(
            _options(request).values,
            checkpoint=checkpoint_title(name, service.registry) if name else None,
            checkpoint_hash=service.registry.sha256(name) if name else None,
            settings=service.settings,
        )
    )


def _check_options(values: dict[str, Any]) -> OverrideSettings:
    try:
        checked = msgspec.convert(values, OverrideSettings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        name = next((k for k in values if f"`$.{k}`" in message), None)
        loc: list[str | int] = ["body", name] if name else ["body"]
        raise ValidationFailed(message, loc=loc, kind="type_error") from exc
    if checked.samples_format is not None:
        translate.samples_format(checked.samples_format, "samples_format")
    return checked


async def set_options(request: Request) -> Response:
    """``POST /options``: ``sd_model_checkpoint`` switches the default model; other keys are
    kept in memory for this server's lifetime."""
    require(request, "models:manage")
    service = service_of(request)
    values = decode_body(await read_body(request, MAX_OPTIONS_BODY), _OPTIONS_DECODER)
    checked = _check_options(values)
    # Everything that can fail is checked before anything changes: a refused POST changes nothing.
    model = None
    if checked.sd_model_checkpoint:
        model = resolve_checkpoint(checked.sd_model_checkpoint, service.registry)
    _options(request).update({k: v for k, v in values.items() if k != "sd_model_checkpoint"})
    if model is not None:
        service.set_default_model(model)
    return JSONResponse(None)


async def cmd_flags(request: Request) -> Response:
    """``GET /cmd-flags``: A1111's flags and sdrest's settings (no secrets)."""
    require(request, "models:read")
    return JSONResponse(state.cmd_flags(service_of(request).settings))


ROUTES = [
    Route("/txt2img", txt2img, methods=["POST"]),
    Route("/img2img", img2img, methods=["POST"]),
    Route("/progress", progress, methods=["GET"]),
    Route("/interrupt", interrupt, methods=["POST"]),
    # A1111 skips one image of a batch; the native call cannot be split, so skip stops the job.
    Route("/skip", interrupt, methods=["POST"]),
    Route("/samplers", list_samplers, methods=["GET"]),
    Route("/schedulers", list_schedulers, methods=["GET"]),
    Route("/options", get_options, methods=["GET"]),
    Route("/options", set_options, methods=["POST"]),
    Route("/cmd-flags", cmd_flags, methods=["GET"]),
]


def create_sdapi_app(service: SdrestService) -> Starlette:
    """The family's sub-application over the one service; A1111-shaped errors throughout."""
    app = Starlette(
        routes=[*ROUTES, *INFO_ROUTES],
        exception_handlers=family_exception_handlers(render_error),
    )
    app.state.service = service
    app.state.options = state.OptionsStore()
    return app
