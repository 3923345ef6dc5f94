"""``POST /sdapi/v1/extra-single-image`` and ``extra-batch-images``: upscaling.

An ESRGAN upscaler runs as an ``upscale`` job through the one queue (so it shows in the queue,
progress and history like any job, owned by the caller, family ``sdapi``); the result is then
resized with Pillow to exactly the requested factor or size, since an ESRGAN file only knows its
native scale. "Lanczos" and "Nearest" are plain Pillow resizes and "None" returns the image as
it came (as A1111 does): neither touches the engine, so neither becomes a job.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import (
    CLIENT_CLOSED,
    JSONResponse,
    decode_json,
    read_body,
    run_sync,
    service_of,
)
from sdrest.api.sdapi import extras, listings
from sdrest.api.sdapi.model_files import Upscaler, resolve_upscaler
from sdrest.api.sdapi.responses import ExtrasBatchAnswer, ExtrasSingleAnswer
from sdrest.auth import principal_of
from sdrest.decode_gate import DecodeHold
from sdrest.errors import InvalidRequestError
from sdrest.images import decode_input_image, image_to_b64
from sdrest.schemas import Job, UpscaleRequest

if TYPE_CHECKING:
    from sdrest.service import SdrestService

_SINGLE = msgspec.json.Decoder(extras.ExtrasSingleRequest)
_BATCH = msgspec.json.Decoder(extras.ExtrasBatchRequest)


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


@dataclass(frozen=True)
class _Esrgan:
    """What the ESRGAN path keeps of the decoded input (the pixels are dropped meanwhile)."""

    longest_side: int
    parameters: str | None
    target: extras.ExtrasTarget


def _local_pass(
    service: SdrestService,
    options: extras.ExtrasOptions,
    upscaler: Upscaler,
    value: str,
    field: str,
    hold: DecodeHold,
) -> _Done | _Esrgan:
    """Decode (under the request's decode hold) and finish what Pillow alone can do."""
    limits = service.settings.limits
    image = decode_input_image(value, field, limits, hold)
    parameters = image.info.get("parameters")
    parameters = parameters if isinstance(parameters, str) else None
    if upscaler.label == listings.NONE_UPSCALER:
        return _Done(extras.encode_png(image, parameters, ""), {})
    target = extras.target_size(image.width, image.height, options, upscaler.label, limits.max_size)
    if upscaler.entry is None:  # a Pillow resampler
        result = extras.pil_resample(image, target, upscaler.label)
        post = extras.postprocess_text(target.info)
        return _Done(extras.encode_png(result, parameters, post), target.info)
    return _Esrgan(max(image.size), parameters, target)


async def _process(
    request: Request,
    service: SdrestService,
    options: extras.ExtrasOptions,
    upscaler: Upscaler,
    value: str,
    field: str,
) -> _Done | None:
    """One image through the chosen upscaler; None when the client went away."""
    first = await asyncio.to_thread(
        service.decodes.call,
        lambda hold: _local_pass(service, options, upscaler, value, field, hold),
    )
    if isinstance(first, _Done):
        return first
    target = first.target
    done = await _run_esrgan(request, service, upscaler, value, first.longest_side, target.scale)
    if done is None:
        return None

    def finish() -> bytes:
        result = extras.finish(_read_output(service, done), target)
        return extras.encode_png(result, first.parameters, extras.postprocess_text(target.info))

    return _Done(await asyncio.to_thread(finish), target.info)


async def _run_esrgan(
    request: Request,
    service: SdrestService,
    upscaler: Upscaler,
    value: str,
    longest_side: int,
    scale: float,
) -> Job | None:
    """The ESRGAN pass as an ``upscale`` job, waited for; None when the client went away."""
    repeats = extras.esrgan_repeats(scale, upscaler.native)
    native_side = longest_side * upscaler.native**repeats
    max_side = service.settings.limits.max_size
    # The rule every upscale job meets in planning (an ESRGAN pass's output, each side at most
    # --max-size), checked here first to name this family's field.
    if native_side > max_side:
        raise InvalidRequestError(
            f"{upscaler.label} upscales {upscaler.native**repeats}x: a side of {native_side}"
            f" is over the largest allowed ({max_side}); send a smaller image",
            field="upscaler_1",
        )
    job = await service.submit_upscale(
        UpscaleRequest(image=value, upscaler=upscaler.label, repeats=repeats),
        owner=principal_of(request).username,
        family="sdapi",
    )
    return await run_sync(request, service, job)


async def extra_single_image(request: Request) -> Response:
    """``POST /extra-single-image`` -> ``{html_info, image}``."""
    service = service_of(request)
    body = decode_json(await read_body(request), _SINGLE, named=False)
    extras.check_options(body)
    upscaler = await asyncio.to_thread(resolve_upscaler, service.models, body.upscaler_1)
    done = await _process(request, service, body, upscaler, body.image, "image")
    if done is None:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(ExtrasSingleAnswer(extras.html_info(done.info), image_to_b64(done.png)))


async def extra_batch_images(request: Request) -> Response:
    """``POST /extra-batch-images`` -> ``{html_info, images}``; one job per image, in order."""
    service = service_of(request)
    body = decode_json(await read_body(request), _BATCH, named=False)
    extras.check_options(body)
    if not body.imageList:
        raise InvalidRequestError("imageList is empty", field="imageList")
    if len(body.imageList) > extras.MAX_BATCH_IMAGES:
        raise InvalidRequestError(
            f"imageList holds {len(body.imageList)} images; at most"
            f" {extras.MAX_BATCH_IMAGES} per request",
            field="imageList",
        )
    upscaler = await asyncio.to_thread(resolve_upscaler, service.models, body.upscaler_1)
    images: list[str] = []
    info: dict[str, str] = {}
    # One image at a time: memory stays at one decoded image, and other callers' jobs interleave.
    for index, item in enumerate(body.imageList):
        field = f"imageList[{index}].data"
        done = await _process(request, service, body, upscaler, item.data, field)
        if done is None:
            return Response(status_code=CLIENT_CLOSED)
        images.append(image_to_b64(done.png))
        info = done.info
    return JSONResponse(ExtrasBatchAnswer(extras.html_info(info), images))
