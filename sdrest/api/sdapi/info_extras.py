"""``POST /sdapi/v1/extra-single-image`` and ``extra-batch-images``: upscaling.

An ESRGAN upscaler runs as an ``upscale`` job through the one queue (so it shows in the queue,
progress and history like any job, owned by the caller, family ``sdapi``); the result is then
resized with Pillow to exactly the requested factor or size, since an ESRGAN file only knows its
native scale. "Lanczos" and "Nearest" are plain Pillow resizes and "None" returns the image as
it came (as A1111 does): neither touches the engine, so neither becomes a job.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest.api.common import (
    CLIENT_CLOSED,
    JSONResponse,
    decode_json,
    read_body,
    service_of,
    wait_unless_disconnected,
)
from sdrest.api.sdapi import extras, listings
from sdrest.auth import principal_of, require
from sdrest.errors import (
    ConflictError,
    EngineError,
    InvalidRequestError,
    NotFoundError,
    SdrestError,
)
from sdrest.images import image_to_b64
from sdrest.models import HeaderError, ModelEntry, ModelRegistry, UnknownModelError
from sdrest.planning import decode_input_image
from sdrest.schemas import Job, UpscaleRequest

if TYPE_CHECKING:
    from sdrest.service import SdrestService

logger = logging.getLogger(__name__)


_SINGLE = msgspec.json.Decoder(extras.ExtrasSingleRequest)
_BATCH = msgspec.json.Decoder(extras.ExtrasBatchRequest)


def upscaler_scales(registry: ModelRegistry, entries: list[ModelEntry]) -> dict[str, int | None]:
    """Native scale of each ESRGAN file, from its (cached) header; blocking file reads."""
    scales: dict[str, int | None] = {}
    for entry in entries:
        if entry.error is not None:
            continue
        try:
            scales[entry.name] = listings.esrgan_scale(registry.header(entry.path).tensors)
        except (HeaderError, OSError):
            scales[entry.name] = None
    return scales


def lora_metadata(registry: ModelRegistry, entries: list[ModelEntry]) -> dict[str, dict[str, Any]]:
    """Training metadata of each safetensors LoRA, from its (cached) header; blocking reads."""
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.error is not None:
            continue
        try:
            header = registry.header(entry.path)
        except (HeaderError, OSError):
            continue
        if header.format == "safetensors" and header.metadata:
            found[entry.name] = listings.lora_metadata(header.metadata)
    return found


@dataclass(frozen=True)
class Upscaler:
    """The resolved ``upscaler_1``: "None", a Pillow resampler, or an ESRGAN registry file."""

    label: str
    entry: ModelEntry | None = None
    native: int = listings.DEFAULT_ESRGAN_SCALE


def resolve_upscaler(registry: ModelRegistry, name: str | None) -> Upscaler:
    """Match ``name`` (exactly, then ignoring case) to an upscaler; 404 when none has it.

    Blocking (reads the ESRGAN header once for its native scale): call off the event loop.
    """
    wanted = (name or listings.NONE_UPSCALER).strip()
    if wanted.lower() == listings.NONE_UPSCALER.lower():
        return Upscaler(listings.NONE_UPSCALER)
    if wanted.lower() in listings.PIL_UPSCALERS:
        return Upscaler(listings.PIL_UPSCALERS[wanted.lower()])
    entries = registry.entries("upscaler")
    entry = next((e for e in entries if e.name == wanted), None) or next(
        (e for e in entries if e.name.lower() == wanted.lower()), None
    )
    if entry is None:
        try:
            entry = registry.get(wanted, type="upscaler")  # a file name or relative path
        except UnknownModelError as exc:
            raise NotFoundError(
                f"unknown upscaler {wanted!r}: GET /sdapi/v1/upscalers lists them ({exc})",
                field="upscaler_1",
            ) from None
    if entry.error is not None:
        raise InvalidRequestError(
            f"upscaler {entry.name!r} cannot be used: its file is unreadable ({entry.error})",
            field="upscaler_1",
        )
    native = upscaler_scales(registry, [entry]).get(entry.name)
    return Upscaler(entry.name, entry, native or listings.DEFAULT_ESRGAN_SCALE)


def _job_failure(job: Job) -> SdrestError:
    reason = job.error.message if job.error else job.status
    if job.status == "cancelled":
        return ConflictError(f"the upscale job {job.id} was cancelled: {reason}")
    error = EngineError(f"the upscale job {job.id} failed: {reason}")
    if job.error is not None:
        error.code = job.error.code
    return error


def _read_output(service: SdrestService, job: Job) -> Image.Image:
    assert job.result is not None and job.result.images
    path = service.output_file(job.id, job.result.images[0].filename)
    with Image.open(path) as image:
        image.load()
        return image.copy()


@dataclass(frozen=True)
class _Done:
    png: bytes
    info: dict[str, str]


async def _process(
    request: Request,
    service: SdrestService,
    options: extras.ExtrasOptions,
    upscaler: Upscaler,
    value: str,
    field: str,
) -> _Done | None:
    """One image through the chosen upscaler; None when the client went away."""
    image = await asyncio.to_thread(decode_input_image, value, field, service.settings.limits)
    parameters = image.info.get("parameters")
    parameters = parameters if isinstance(parameters, str) else None
    if upscaler.label == listings.NONE_UPSCALER:
        png = await asyncio.to_thread(extras.encode_png, image, parameters, "")
        return _Done(png, {})
    max_side = service.settings.limits.max_size
    target = extras.target_size(image.width, image.height, options, upscaler.label, max_side)
    post = extras.postprocess_text(target.info)
    if upscaler.entry is None:  # a Pillow resampler

        def resample() -> bytes:
            result = extras.pil_resample(image, target, upscaler.label)
            return extras.encode_png(result, parameters, post)

        return _Done(await asyncio.to_thread(resample), target.info)
    repeats = extras.esrgan_repeats(target.scale, upscaler.native)
    native_side = max(image.size) * upscaler.native**repeats
    if native_side > 2 * max_side:
        raise InvalidRequestError(
            f"{upscaler.label} upscales {upscaler.native**repeats}x: a side of {native_side}"
            f" is over twice the largest allowed ({max_side}); send a smaller image",
            field="upscaler_1",
        )
    owner = principal_of(request).username
    job = await service.submit_upscale(
        UpscaleRequest(image=value, upscaler=upscaler.label, repeats=repeats),
        owner=owner,
        family="sdapi",
    )
    done = await wait_unless_disconnected(request, service, job)
    if done is None:
        return None
    if done.status != "completed":
        raise _job_failure(done)

    def finish() -> bytes:
        result = extras.finish(_read_output(service, done), target)
        return extras.encode_png(result, parameters, post)

    return _Done(await asyncio.to_thread(finish), target.info)


async def extra_single_image(request: Request) -> Response:
    """``POST /extra-single-image`` -> ``{html_info, image}``."""
    require(request, "generate")
    service = service_of(request)
    body = decode_json(await read_body(request), _SINGLE)
    extras.check_options(body)
    upscaler = await asyncio.to_thread(resolve_upscaler, service.registry, body.upscaler_1)
    done = await _process(request, service, body, upscaler, body.image, "image")
    if done is None:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse({"html_info": extras.html_info(done.info), "image": image_to_b64(done.png)})


async def extra_batch_images(request: Request) -> Response:
    """``POST /extra-batch-images`` -> ``{html_info, images}``; one job per image, in order."""
    require(request, "generate")
    service = service_of(request)
    body = decode_json(await read_body(request), _BATCH)
    extras.check_options(body)
    if not body.imageList:
        raise InvalidRequestError("imageList is empty", field="imageList")
    if len(body.imageList) > extras.MAX_BATCH_IMAGES:
        raise InvalidRequestError(
            f"imageList holds {len(body.imageList)} images; at most"
            f" {extras.MAX_BATCH_IMAGES} per request",
            field="imageList",
        )
    upscaler = await asyncio.to_thread(resolve_upscaler, service.registry, body.upscaler_1)
    images, info = [], {}
    # One image at a time: memory stays at one decoded image, and other callers' jobs interleave.
    for index, item in enumerate(body.imageList):
        field = f"imageList[{index}].data"
        done = await _process(request, service, body, upscaler, item.data, field)
        if done is None:
            return Response(status_code=CLIENT_CLOSED)
        images.append(image_to_b64(done.png))
        info = done.info
    return JSONResponse({"html_info": extras.html_info(info), "images": images})


EXTRAS_ROUTES: list[BaseRoute] = [
    Route("/extra-single-image", extra_single_image, methods=["POST"]),
    Route("/extra-batch-images", extra_batch_images, methods=["POST"]),
]
"""The extras routes (included in ``INFO_ROUTES``)."""
