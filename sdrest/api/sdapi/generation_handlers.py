"""``/sdapi/v1`` generation endpoints: txt2img, img2img, progress, interrupt, options, flags.

txt2img and img2img submit an ordinary job and wait for it (a client that disconnects stops its
job), so A1111 jobs show in the same queue, progress and history as every other family's. The
route index (access rules, bodies, answers) is ``routes``; errors render in ``errors``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import (
    CLIENT_CLOSED,
    JSONResponse,
    client_address,
    read_body,
    run_sync,
    service_of,
    validation_path,
)
from sdrest.api.json_limits import decode_client_json
from sdrest.api.sdapi import samplers, state, translate
from sdrest.api.sdapi.checkpoints import checkpoint_title, resolve_checkpoint, resolve_vae
from sdrest.api.sdapi.errors import ValidationFailed, body_location, decode_body
from sdrest.api.sdapi.listings import upscaler_names
from sdrest.api.sdapi.responses import Empty
from sdrest.api.sdapi.schemas import (
    ANY_DECODER,
    IMG2IMG_DECODER,
    TXT2IMG_DECODER,
    Img2ImgBody,
    OverrideSettings,
    Txt2ImgBody,
)
from sdrest.api.sdapi.url_images import fetch_url_images
from sdrest.auth import principal_of
from sdrest.images import image_to_b64

_OPTIONS_DECODER: msgspec.json.Decoder[dict[str, Any]] = msgspec.json.Decoder(dict[str, Any])
MAX_OPTIONS_BODY = 1024 * 1024


def options_store(request: Request) -> state.OptionsStore:
    """The options clients set through ``POST /options`` (``app.state.options``)."""
    store: state.OptionsStore = request.app.state.options
    return store


def _context(request: Request) -> translate.Context:
    service = service_of(request)
    settings = service.settings
    models = service.models
    names = None
    if settings.a1111_prompt_loras:
        names = frozenset(entry.name for entry in models.entries("lora"))
    return translate.Context(
        defaults_for=models.defaults_for,
        resolve_checkpoint=lambda title: resolve_checkpoint(title, models),
        limits=settings.limits,
        prompt_lora_names=names,
        options=dict(options_store(request).values),
        resolve_vae=lambda value: resolve_vae(value, models),
        upscaler_names=upscaler_names(models.entries("upscaler")),
    )


async def _generate(request: Request, decoder: msgspec.json.Decoder[Any]) -> Response:
    service = service_of(request)
    raw = await read_body(request)
    body: Txt2ImgBody = decode_body(raw, decoder)
    body = await fetch_url_images(
        body, service.settings, service.url_fetches, client_address(request)
    )
    context = _context(request)
    if isinstance(body, Img2ImgBody) or body.extra_images is not None:
        # Resizing and blurring input images is CPU work: keep it off the event loop.
        gen_request = await asyncio.to_thread(
            service.decodes.call, lambda hold: translate.to_request(body, context, hold)
        )
    else:
        gen_request = translate.to_request(body, context)
    owner = principal_of(request).username
    job = await service.submit(gen_request, owner=owner, family="sdapi")
    # A1111 answers an interrupted job with what it has (no images, "interrupted": true).
    finished = await run_sync(request, service, job, cancelled_ok=True)
    if finished is None:
        return Response(status_code=CLIENT_CLOSED)  # nobody is listening any more
    images: list[str] = []
    if finished.status == "completed" and body.send_images is not False:
        images = await asyncio.to_thread(service.outputs_b64, finished)
    include = isinstance(body, Img2ImgBody) and bool(body.include_init_images)
    # The echo re-reads the body as sent, base64 images and all: off the event loop.
    parameters = await asyncio.to_thread(
        lambda: translate.echo_parameters(decode_client_json(raw, ANY_DECODER), include)
    )
    extra = translate.ResultInfo(
        parameters=parameters,
        images=images,
        model_hash=service.models.short_hash(finished.model) if finished.model else None,
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
    """``GET /progress``: the caller's running or queued job, whichever family sent it (an
    admin: the current job); the idle answer when it has none."""
    service = service_of(request)
    job, waiting = state.callers_job(service.queue_snapshot(), principal_of(request))
    current_image = None
    skip = request.query_params.get("skip_current_image", "").lower() in ("1", "true")
    if job is not None and not skip:
        preview = await service.preview_png(job)
        current_image = image_to_b64(preview[1]) if preview is not None else None
    view = state.progress_view(
        job,
        queued=waiting,
        visible=True,
        stop_requested=job is not None and service.stop_requested(job.id),
        current_image=current_image,
    )
    return JSONResponse(view)


async def interrupt(request: Request) -> Response:
    """``POST /interrupt``: stop the caller's job, the one ``/progress`` shows (an admin: the
    current job), at once in worker mode, in-process when the native call returns. The answer
    is the same whether or not there was one to stop."""
    service = service_of(request)
    job, _ = state.callers_job(service.queue_snapshot(), principal_of(request))
    if job is not None:
        await service.request_stop(job.id)
    return JSONResponse(Empty())


async def list_samplers(request: Request) -> Response:
    """``GET /samplers``: the samplers stable-diffusion.cpp really has, by A1111 name."""
    return JSONResponse(samplers.samplers_listing())


async def list_schedulers(request: Request) -> Response:
    """``GET /schedulers``: the schedulers stable-diffusion.cpp really has, by A1111 name."""
    return JSONResponse(samplers.schedulers_listing())


async def get_options(request: Request) -> Response:
    """``GET /options``: A1111's options object; ``sd_model_checkpoint`` is the default model."""
    service = service_of(request)
    name = service.models.default_or_none()  # no model, or several and none chosen: still answer
    return JSONResponse(
        state.options_view(
            options_store(request).values,
            checkpoint=checkpoint_title(name, service.models) if name else None,
            checkpoint_hash=service.models.sha256(name) if name else None,
            settings=service.settings,
            admin=principal_of(request).is_admin,
        )
    )


def _check_options(values: dict[str, Any]) -> OverrideSettings:
    try:
        checked = msgspec.convert(values, OverrideSettings, strict=False)
    except msgspec.ValidationError as exc:
        loc = body_location(validation_path(exc, named=False))
        raise ValidationFailed(str(exc), loc=loc, kind="type_error") from exc
    if checked.samples_format is not None:
        translate.samples_format(checked.samples_format, "samples_format")
    return checked


def _check_vae(checked: OverrideSettings, request: Request) -> None:
    if checked.sd_vae is not None:
        resolve_vae(checked.sd_vae, service_of(request).models)  # unknown: 404, nothing stored


async def set_options(request: Request) -> Response:
    """``POST /options``: ``sd_model_checkpoint`` switches the default model; the honoured keys
    (``options_table.HONOURED``) are checked, then every key is kept in memory for this
    server's lifetime and applies to later generations."""
    service = service_of(request)
    values = decode_body(await read_body(request, MAX_OPTIONS_BODY), _OPTIONS_DECODER)
    checked = _check_options(values)
    _check_vae(checked, request)
    # Everything that can fail is checked before anything changes: a refused POST changes nothing.
    model = None
    if checked.sd_model_checkpoint:
        model = resolve_checkpoint(checked.sd_model_checkpoint, service.models)
    options_store(request).update({k: v for k, v in values.items() if k != "sd_model_checkpoint"})
    if model is not None:
        service.models.set_default(model)
    return JSONResponse(None)


async def cmd_flags(request: Request) -> Response:
    """``GET /cmd-flags``: A1111's flags and sdrest's settings (no secrets; server paths for
    admins only)."""
    admin = principal_of(request).is_admin  # folders on the server: the operator's business
    return JSONResponse(state.cmd_flags(service_of(request).settings, admin=admin))
