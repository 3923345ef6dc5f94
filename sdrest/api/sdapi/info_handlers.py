"""``/sdapi/v1`` listings, model management and png-info endpoints (extras: ``extras_handlers``).

Handlers reach the service as ``request.app.state.service``: the family sub-app and any app that
mounts these routes directly both set it. The access rule of each is its route's (``routes``);
errors are raised as :class:`SdrestError` and rendered by the family's error handler.
"""

from __future__ import annotations

import asyncio
import binascii

from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, decode_json, read_body, service_of
from sdrest.api.sdapi import listings
from sdrest.api.sdapi import scripts as sdapi_scripts
from sdrest.api.sdapi.checkpoints import title_of_model
from sdrest.api.sdapi.errors import EndpointUnavailableError, decode_body
from sdrest.api.sdapi.extras import text_chunks
from sdrest.api.sdapi.info_memory import memory_report
from sdrest.api.sdapi.model_files import lora_metadata, upscaler_scales
from sdrest.api.sdapi.responses import Empty, NameItem, PngInfo, Scripts, SdModelItem
from sdrest.api.sdapi.schemas import INTERROGATE_DECODER, PNG_INFO_DECODER
from sdrest.api.sdapi.translate import LATENT_UPSCALE_MODES
from sdrest.decode_gate import DecodeHold
from sdrest.errors import InvalidRequestError
from sdrest.images import ImageInputError, b64_to_bytes, open_image_bytes, read_infotext
from sdrest.models import ModelPreset
from sdrest.units import format_bytes

# -- listings (models:read) --------------------------------------------------------------------


async def get_upscalers(request: Request) -> Response:
    """``GET /upscalers``: "None", "Lanczos", "Nearest", then the ESRGAN files."""
    models = service_of(request).models
    entries = models.entries("upscaler")
    scales = await asyncio.to_thread(upscaler_scales, models, entries)
    return JSONResponse(listings.upscalers(entries, scales))


async def get_realesrgan_models(request: Request) -> Response:
    """``GET /realesrgan-models``: the ESRGAN files as ``{name, path, scale}``."""
    models = service_of(request).models
    entries = models.entries("upscaler")
    scales = await asyncio.to_thread(upscaler_scales, models, entries)
    return JSONResponse(listings.realesrgan_models(entries, scales))


async def get_sd_models(request: Request) -> Response:
    """``GET /sd-models``: model files and presets, titled ``"name [short hash]"``."""
    models = service_of(request).models

    def build() -> list[SdModelItem]:
        # One pass: each model's hash read once (a stat per file: off the loop), its title
        # made from the model in hand rather than looked up again by name.
        found = models.generation_models()
        shas = {m.name: None if isinstance(m, ModelPreset) else models.sha256(m) for m in found}
        titles = {m.name: title_of_model(m, shas[m.name]) for m in found}
        return listings.sd_models(found, shas.get, titles.__getitem__)

    return JSONResponse(await asyncio.to_thread(build))


async def get_sd_vae(request: Request) -> Response:
    """``GET /sd-vae``: the VAE files."""
    return JSONResponse(listings.sd_vae(service_of(request).models.entries("vae")))


async def get_loras(request: Request) -> Response:
    """``GET /loras``: the LoRA files."""
    models = service_of(request).models
    entries = models.entries("lora")
    metadata = await asyncio.to_thread(lora_metadata, models, entries)
    return JSONResponse(listings.loras(entries, metadata))


async def get_embeddings(request: Request) -> Response:
    """``GET /embeddings``: nothing loaded, every embedding file skipped with the reason."""
    return JSONResponse(listings.embeddings(service_of(request).models.entries("embedding")))


async def get_memory(request: Request) -> Response:
    """``GET /memory``: system RAM, this process's resident memory, GPU memory via NVML."""
    return JSONResponse(await asyncio.to_thread(memory_report))


async def latent_upscale_modes(request: Request) -> Response:
    """``GET /latent-upscale-modes``: the latent modes of the native hires fix
    (``hr_upscaler``)."""
    return JSONResponse([NameItem(name) for name in LATENT_UPSCALE_MODES])


async def scripts(request: Request) -> Response:
    """``GET /scripts``: the one script that runs here, img2img's "sd upscale"."""
    return JSONResponse(Scripts(txt2img=[], img2img=[sdapi_scripts.SD_UPSCALE]))


async def script_info(request: Request) -> Response:
    """``GET /script-info``: SD upscale with its arguments (the upscaler choices included)."""
    names = listings.upscaler_names(service_of(request).models.entries("upscaler"))
    return JSONResponse(sdapi_scripts.scripts_info(names))


async def sd_modules(request: Request) -> Response:
    """``GET /sd-modules``: VAE, TAESD and text encoder files."""
    models = service_of(request).models
    kinds = ("vae", "taesd", "text_encoder")
    return JSONResponse(listings.sd_modules(e for kind in kinds for e in models.entries(kind)))


async def interrogate(request: Request) -> Response:
    """``POST /interrogate``: no interrogator here; a 501 saying so (the body is checked
    first, so a malformed one is still a 422)."""
    decode_body(await read_body(request), INTERROGATE_DECODER)
    raise EndpointUnavailableError(
        "interrogate: there is no interrogator here (CLIP and DeepBooru captioning are not part"
        " of stable-diffusion.cpp)"
    )


async def nothing(request: Request) -> Response:
    """An empty list: a feature sdrest does not have (scripts, face restoration, prompt
    styles, hypernetworks, extensions), answered honestly."""
    return JSONResponse([])


# -- model management (models:manage) ----------------------------------------------------------


async def refresh(request: Request) -> Response:
    """``POST /refresh-checkpoints`` (and ``-vae``, ``-loras``, ``-embeddings``): rescan the
    models folder.

    One scan refreshes every type; A1111 answers ``null``.
    """
    await service_of(request).models.refresh()
    return JSONResponse(None)


async def unload_checkpoint(request: Request) -> Response:
    """``POST /unload-checkpoint``: free the loaded model; the next job loads its own."""
    await service_of(request).models.unload()
    return JSONResponse(Empty())


async def reload_checkpoint(request: Request) -> Response:
    """``POST /reload-checkpoint``: load the loaded model again, else the default model."""
    models = service_of(request).models
    await models.load(models.last_loaded)
    return JSONResponse(Empty())


# -- png-info (generate) -----------------------------------------------------------------------


def _png_info(value: str, max_bytes: int, max_pixels: int, hold: DecodeHold) -> PngInfo:
    if not value.strip():
        raise InvalidRequestError("image is empty; send a base64 image", field="image")
    if len(value) > 2 * (max_bytes * 4 // 3 + 4) + 1024:  # before decoding a single byte
        raise InvalidRequestError(
            f"image: image larger than {format_bytes(max_bytes)}", field="image"
        )
    try:
        data = b64_to_bytes(value)
        if len(data) > max_bytes:
            raise ImageInputError("image", f"image larger than {format_bytes(max_bytes)}")
        image = open_image_bytes(data, "image", max_pixels=max_pixels, hold=hold)
    except ImageInputError:
        raise  # already a 400 naming the field
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"image: not valid base64 ({exc})", field="image") from exc
    return listings.png_info(read_infotext(data), text_chunks(image))


async def png_info(request: Request) -> Response:
    """``POST /png-info``: the infotext of a PNG (text chunk) or JPEG/WebP (EXIF), parsed."""
    service = service_of(request)
    limits = service.settings.limits
    body = decode_json(await read_body(request), PNG_INFO_DECODER, named=False)
    info = await asyncio.to_thread(
        service.decodes.call,
        lambda hold: _png_info(body.image, limits.max_image_bytes, limits.max_input_pixels, hold),
    )
    return JSONResponse(info)
