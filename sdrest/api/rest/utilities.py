"""Routes for the /api utilities and image tools (paths relative to the ``/api`` mount).

samplers, schedulers, parameters and estimate need ``models:read``; validate and image/download
are public (as the spec says); image/resize and image/crop need ``generate``. Errors are raised
as :class:`SdrestError` subclasses and rendered by the /api sub-app in its own error shape.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest import planning
from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest import image_tools, translate
from sdrest.api.rest import utility_info as info
from sdrest.api.rest.errors import ValidationFailedError, rest_code
from sdrest.api.rest.models import find_model
from sdrest.api.rest.schemas import GenerateBody
from sdrest.auth import permissions_of, principal_of, require
from sdrest.errors import InvalidRequestError, SdrestError
from sdrest.images import image_to_b64
from sdrest.schemas import ImgGenRequest
from sdrest.service import SdrestService
from sdrest.settings import Limits

log = logging.getLogger(__name__)

_generate_decoder = msgspec.json.Decoder(GenerateBody)
_resize_decoder = msgspec.json.Decoder(image_tools.ResizeBody)
_crop_decoder = msgspec.json.Decoder(image_tools.CropBody)
_MODES: tuple[translate.Mode, ...] = ("text2img", "img2img", "inpainting", "controlnet")


# --- tables -----------------------------------------------------------------------------------


async def samplers(request: Request) -> Response:
    """``GET /api/samplers``."""
    require(request, "models:read")
    return JSONResponse(info.samplers_view())


async def schedulers(request: Request) -> Response:
    """``GET /api/schedulers``."""
    require(request, "models:read")
    return JSONResponse(info.schedulers_view())


async def parameters(request: Request) -> Response:
    """``GET /api/parameters``: ranges as enforced, defaults of the default model."""
    require(request, "models:read")
    service = service_of(request)
    try:
        model: str | None = service.default_model()
        defaults = service.request_defaults(model)
    except SdrestError:
        model, defaults = None, {}  # no default model yet: still describe the limits
    return JSONResponse(info.parameters_view(service.settings.limits, model, defaults))


# --- validate and estimate --------------------------------------------------------------------


def _mode(request: Request, body: GenerateBody) -> translate.Mode:
    """``?mode=`` if given, else what the body's images imply."""
    raw = request.query_params.get("mode")
    if raw is not None:
        for mode in _MODES:
            if raw == mode:
                return mode
        raise InvalidRequestError(f"mode must be one of {', '.join(_MODES)}", field="mode")
    if body.mask_image:
        return "inpainting"
    if body.init_image or body.source_image:
        return "img2img"
    if body.control_image:
        return "controlnet"
    return "text2img"


async def _model_name(service: SdrestService, wanted: str | None) -> str:
    """The registry name of ``model_name`` (any id /api/models accepts), else the default."""
    if wanted is None:
        return service.default_model()
    found = await asyncio.to_thread(find_model, service, wanted)
    return found.name


def _issue(exc: SdrestError, field: str | None = None) -> info.Issue:
    return info.Issue(translate.wire_field(exc.field) or field, exc.message, rest_code(exc.code))


def _translate(
    service: SdrestService, body: GenerateBody, mode: translate.Mode, model: str
) -> ImgGenRequest:
    defaults = service.request_defaults(model)
    return translate.to_request(body, mode, model, defaults, service.settings.load)


async def validate(request: Request) -> Response:
    """``POST /api/validate`` (public): check a generation body as /api/generate/* would,
    without queueing it. 200 ``{valid, errors, warnings}``; 400 only for a body that is not JSON.
    """
    service = service_of(request)
    raw = await read_body(request)
    try:
        body = translate.decode(raw, _generate_decoder)
    except ValidationFailedError as exc:  # wrong field or type: an answer, not a failure
        return JSONResponse(info.validation_view([_issue(exc)], [], None))
    mode = _mode(request, body)
    sizes = {"width": body.width, "height": body.height}
    errors = info.limit_issues(
        {**sizes, "steps": body.steps, "batch_count": body.batch_count}, service.settings.limits
    )
    sampler = None if body.sampling_method is None else translate.sampler_name(body.sampling_method)
    names = info.name_issues(sampler, body.scheduler)
    errors += names
    warnings: list[info.Issue] = []
    model: str | None = None
    try:
        model = await _model_name(service, body.model_name)
    except SdrestError as exc:
        errors.append(_issue(exc, "model_name"))
    if model is not None and not names:  # the translation would only repeat a name error
        try:
            gen = _translate(service, body, mode, model)
            warnings = info.request_warnings(gen, model, service.loaded_models)
            checked = gen
            if gen.has_images and "generate" not in permissions_of(principal_of(request)):
                # validate is public: decoding megabytes of images is for callers who may
                # generate, anyone else gets the other checks and a warning.
                checked = gen.without_images()
                warnings.append(
                    info.Issue(
                        "init_image",
                        "images were not decoded: sign in to have them checked",
                        "IMAGES_NOT_CHECKED",
                    )
                )
            # Everything submit checks, images and LoRAs included (CPU and disk: off the loop).
            await asyncio.to_thread(
                planning.plan_generation, checked, model, service.settings, service.registry
            )
        except SdrestError as exc:
            errors.append(_issue(exc))
    return JSONResponse(info.validation_view(errors, warnings, model))


def _file_sizes(service: SdrestService, gen: ImgGenRequest, model: str) -> dict[str, int]:
    """Sizes of the files a job of ``model`` loads (disk: run off the loop)."""
    spec = planning.model_spec(model, service.settings, service.registry)
    sizes: dict[str, int] = {}
    for role, path in spec.files().items():
        sizes[role] = os.stat(path).st_size
    check = service.settings.engine.lora_shape_check
    for lora in planning.resolve_loras(gen, service.registry, spec, check_shapes=check):
        sizes["lora:" + os.path.basename(lora.path)] = os.stat(lora.path).st_size
    return sizes


async def estimate(request: Request) -> Response:
    """``POST /api/estimate``: time (measured on recent jobs of the model, else a flagged
    heuristic) and memory (file sizes + latent and VAE sizes) of a generation body."""
    require(request, "models:read")
    service = service_of(request)
    body = translate.decode(await read_body(request), _generate_decoder)
    model = await _model_name(service, body.model_name)
    gen = _translate(service, body, _mode(request, body), model)
    planning.check_limits(gen, service.settings.limits)
    jobs = await service.list_jobs(statuses=("completed",), limit=200)
    try:
        weights = await asyncio.to_thread(_file_sizes, service, gen, model)
    except OSError as exc:
        log.warning("estimate: cannot stat the files of %s: %s", model, exc)
        weights = {}
    time_estimate = info.estimate_time(gen, info.samples_from_jobs(jobs, model))
    memory = info.estimate_memory(gen, weights, service.settings.vae_tiling)
    return JSONResponse(
        {
            "model": model,
            "model_loaded": model in service.loaded_models,
            "width": gen.width,
            "height": gen.height,
            "steps": gen.sample_params.sample_steps,
            "batch_count": gen.batch_count,
            "queue_length": len(service.queued_ids()),
            "estimated_time_seconds": time_estimate["seconds"],
            "estimated_memory_mb": memory["mb"],
            "time": time_estimate,
            "memory": memory,
        }
    )


# --- images -----------------------------------------------------------------------------------

Encoding = Literal["binary", "base64"]


def _encoding(request: Request) -> Encoding:
    raw = request.query_params.get("encoding", "binary").strip().lower()
    if raw in ("binary", "raw"):
        return "binary"
    if raw in ("base64", "json"):
        return "base64"
    raise InvalidRequestError("encoding must be binary or base64", field="encoding")


async def download(request: Request) -> Response:
    """``GET /api/image/download?url=`` (public): fetch a remote image for the browser.

    Only when the server runs with ``--allow-url-images`` (403 otherwise); public addresses only,
    every redirect re-checked (see :mod:`sdrest.net.fetch`).
    """
    service = service_of(request)
    url = request.query_params.get("url", "").strip()
    if not url:
        raise InvalidRequestError("the url query parameter is required", field="url")
    encoding = _encoding(request)
    from sdrest.net.fetch import fetch_image  # httpx loads only when a URL is fetched

    image = await fetch_image(
        url, service.settings.fetch, max_bytes=service.settings.limits.max_image_bytes
    )
    if encoding == "binary":
        return Response(
            image.data,
            media_type=image.media_type,
            headers={
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'",
            },
        )
    encoded = image_to_b64(image.data)
    return JSONResponse(
        {
            "image": encoded,
            "data_url": f"data:{image.media_type};base64,{encoded}",
            "mime_type": image.media_type,
            "format": image.format.lower(),
            "width": image.width,
            "height": image.height,
            "size": len(image.data),
        }
    )


async def _image_tool(
    request: Request,
    decoder: msgspec.json.Decoder[Any],
    work: Callable[[Any, Limits], dict[str, Any]],
) -> Response:
    require(request, "generate")
    limits = service_of(request).settings.limits
    body = translate.decode(await read_body(request), decoder)
    return JSONResponse(await asyncio.to_thread(work, body, limits))


async def resize(request: Request) -> Response:
    """``POST /api/image/resize``: stretch, fit or fill to a size; base64 in, base64 out."""
    return await _image_tool(request, _resize_decoder, image_tools.resize_image)


async def crop(request: Request) -> Response:
    """``POST /api/image/crop``: a box inside the image; base64 in, base64 out."""
    return await _image_tool(request, _crop_decoder, image_tools.crop_image)


UTILITY_ROUTES: list[BaseRoute] = [
    Route("/samplers", samplers, methods=["GET"]),
    Route("/schedulers", schedulers, methods=["GET"]),
    Route("/parameters", parameters, methods=["GET"]),
    Route("/validate", validate, methods=["POST"]),
    Route("/estimate", estimate, methods=["POST"]),
    Route("/image/download", download, methods=["GET"]),
    Route("/image/resize", resize, methods=["POST"]),
    Route("/image/crop", crop, methods=["POST"]),
]
