"""``/sdapi/v1`` listings, model management and png-info (extras live in ``info_extras``).

Handlers reach the service as ``request.app.state.service``: the family sub-app and any app that
mounts these routes directly both set it. Errors are raised as :class:`SdrestError` and rendered
by the family's error handler.
"""

from __future__ import annotations

import asyncio
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest.api.common import JSONResponse, decode_json, read_body, service_of
from sdrest.api.sdapi import listings
from sdrest.api.sdapi.checkpoints import title_of_model
from sdrest.api.sdapi.extras import text_chunks
from sdrest.api.sdapi.info_extras import EXTRAS_ROUTES, lora_metadata, upscaler_scales
from sdrest.api.sdapi.info_memory import memory_report
from sdrest.api.sdapi.translate import LATENT_UPSCALE_MODES
from sdrest.auth import require
from sdrest.errors import InvalidRequestError
from sdrest.images import ImageInputError, b64_to_bytes, open_image_bytes, read_infotext
from sdrest.models import ModelEntry, ModelPreset

# -- listings (models:read) --------------------------------------------------------------------


async def get_upscalers(request: Request) -> Response:
    """``GET /upscalers``: "None", "Lanczos", "Nearest", then the ESRGAN files."""
    return await _upscaler_listing(request, listings.upscalers)


async def get_realesrgan_models(request: Request) -> Response:
    """``GET /realesrgan-models``: the ESRGAN files as ``{name, path, scale}``."""
    return await _upscaler_listing(request, listings.realesrgan_models)


async def _upscaler_listing(
    request: Request,
    view: Callable[[list[ModelEntry], dict[str, int | None]], list[dict[str, Any]]],
) -> Response:
    require(request, "models:read")
    registry = service_of(request).registry
    entries = registry.entries("upscaler")
    scales = await asyncio.to_thread(upscaler_scales, registry, entries)
    return JSONResponse(view(entries, scales))


async def get_sd_models(request: Request) -> Response:
    """``GET /sd-models``: model files and presets, titled ``"name [short hash]"``."""
    require(request, "models:read")
    registry = service_of(request).registry

    def build() -> list[dict[str, Any]]:
        # One pass: each model's hash read once (a stat per file: off the loop), its title
        # made from the model in hand rather than looked up again by name.
        models = registry.generation_models()
        shas = {
            m.name: None if isinstance(m, ModelPreset) else registry.hashes.sha256_of(m)
            for m in models
        }
        titles = {m.name: title_of_model(m, shas[m.name]) for m in models}
        return listings.sd_models(models, shas.get, titles.__getitem__)

    return JSONResponse(await asyncio.to_thread(build))


async def get_sd_vae(request: Request) -> Response:
    """``GET /sd-vae``: the VAE files."""
    require(request, "models:read")
    return JSONResponse(listings.sd_vae(service_of(request).registry.entries("vae")))


async def get_loras(request: Request) -> Response:
    """``GET /loras``: the LoRA files."""
    require(request, "models:read")
    registry = service_of(request).registry
    entries = registry.entries("lora")
    metadata = await asyncio.to_thread(lora_metadata, registry, entries)
    return JSONResponse(listings.loras(entries, metadata))


async def get_embeddings(request: Request) -> Response:
    """``GET /embeddings``: nothing loaded, every embedding file skipped with the reason."""
    require(request, "models:read")
    return JSONResponse(listings.embeddings(service_of(request).registry.entries("embedding")))


async def get_memory(request: Request) -> Response:
    """``GET /memory``: system RAM, this process's resident memory, GPU memory via NVML."""
    require(request, "models:read")
    return JSONResponse(await asyncio.to_thread(memory_report))


def _constant(value: Any, doc: str) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint answering a fixed body (features sdrest does not have: honest and empty)."""

    async def endpoint(request: Request) -> Response:
        require(request, "models:read")
        return JSONResponse(value)

    endpoint.__doc__ = doc
    return endpoint


# -- model management (models:manage) ----------------------------------------------------------


async def refresh(request: Request) -> Response:
    """``POST /refresh-checkpoints`` (and ``-vae``, ``-loras``): rescan the models folder.

    One scan refreshes every type; A1111 answers ``null``.
    """
    require(request, "models:manage")
    await service_of(request).refresh_models()
    return JSONResponse(None)


async def unload_checkpoint(request: Request) -> Response:
    """``POST /unload-checkpoint``: free the loaded model; the next job loads its own."""
    require(request, "models:manage")
    await service_of(request).unload_model()
    return JSONResponse({})


async def reload_checkpoint(request: Request) -> Response:
    """``POST /reload-checkpoint``: load the loaded model again, else the default model."""
    require(request, "models:manage")
    service = service_of(request)
    await service.load_model(service.loaded_model)
    return JSONResponse({})


# -- png-info (generate) -----------------------------------------------------------------------


class PngInfoRequest(msgspec.Struct, kw_only=True):
    """``POST /png-info`` body: a base64 image or data URL."""

    image: str


_PNG_INFO = msgspec.json.Decoder(PngInfoRequest)


def _png_info(value: str, max_bytes: int, max_pixels: int) -> dict[str, Any]:
    if not value.strip():
        raise InvalidRequestError("image is empty; send a base64 image", field="image")
    if len(value) > 2 * (max_bytes * 4 // 3 + 4) + 1024:  # before decoding a single byte
        raise InvalidRequestError(
            f"image: image larger than {max_bytes / (1 << 20):g} MiB", field="image"
        )
    try:
        data = b64_to_bytes(value)
        if len(data) > max_bytes:
            raise ImageInputError("image", f"image larger than {max_bytes / (1 << 20):g} MiB")
        image = open_image_bytes(data, "image", max_pixels=max_pixels)
    except ImageInputError:
        raise  # already a 400 naming the field
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"image: not valid base64 ({exc})", field="image") from exc
    return listings.png_info(read_infotext(data), text_chunks(image))


async def png_info(request: Request) -> Response:
    """``POST /png-info``: the infotext of a PNG (text chunk) or JPEG/WebP (EXIF), parsed."""
    require(request, "generate")
    limits = service_of(request).settings.limits
    body = decode_json(await read_body(request), _PNG_INFO)
    info = await asyncio.to_thread(
        _png_info, body.image, limits.max_image_bytes, limits.max_input_pixels
    )
    return JSONResponse(info)


INFO_ROUTES: list[BaseRoute] = [
    Route("/upscalers", get_upscalers, methods=["GET"]),
    Route(
        "/latent-upscale-modes",
        _constant(
            [{"name": name} for name in LATENT_UPSCALE_MODES],
            "The latent modes of the native hires fix (``hr_upscaler``).",
        ),
        methods=["GET"],
    ),
    Route("/sd-models", get_sd_models, methods=["GET"]),
    Route("/sd-vae", get_sd_vae, methods=["GET"]),
    Route("/loras", get_loras, methods=["GET"]),
    Route("/embeddings", get_embeddings, methods=["GET"]),
    Route("/realesrgan-models", get_realesrgan_models, methods=["GET"]),
    Route("/memory", get_memory, methods=["GET"]),
    Route("/scripts", _constant({"txt2img": [], "img2img": []}, "No scripts."), methods=["GET"]),
    Route("/script-info", _constant([], "No scripts."), methods=["GET"]),
    Route("/face-restorers", _constant([], "No face restoration."), methods=["GET"]),
    Route("/prompt-styles", _constant([], "No prompt styles."), methods=["GET"]),
    Route("/hypernetworks", _constant([], "No hypernetworks."), methods=["GET"]),
    Route("/extensions", _constant([], "No extensions."), methods=["GET"]),
    Route("/refresh-checkpoints", refresh, methods=["POST"]),
    Route("/refresh-vae", refresh, methods=["POST"]),
    Route("/refresh-loras", refresh, methods=["POST"]),
    Route("/unload-checkpoint", unload_checkpoint, methods=["POST"]),
    Route("/reload-checkpoint", reload_checkpoint, methods=["POST"]),
    Route("/png-info", png_info, methods=["POST"]),
    *EXTRAS_ROUTES,
]
"""Every route of this part of the family, for ``create_sdapi_app`` to include."""
