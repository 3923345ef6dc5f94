"""``/api/generate/*``: text2img, img2img, inpainting, controlnet and upscale on the one queue.

Each route checks the caller may generate, decodes the spec's body, resolves names inside the
models folder only, translates onto the canonical request and queues a job owned by the caller.
The answer is ``202 {"request_id": <job id>, "status": "queued", ...}``; progress comes from
``/api/queue/job/{id}`` or ``/ws``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest import planning
from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest import translate
from sdrest.api.rest.errors import ModelNotFoundError
from sdrest.api.rest.models import find_model
from sdrest.api.rest.schemas import GenerateBody, UpscaleBody
from sdrest.auth import require
from sdrest.errors import InvalidRequestError, NotImplementedFeatureError, SdrestError
from sdrest.models import ModelEntry, PathNotAllowedError, UnknownModelError
from sdrest.models.registry import GENERATION_TYPES
from sdrest.service import SdrestService

_generate_decoder = msgspec.json.Decoder(GenerateBody)
_upscale_decoder = msgspec.json.Decoder(UpscaleBody)
# Request component field -> the preset field whose registry type is tried first.
_COMPONENT_KIND = {
    "vae_path": "vae",
    "vae_model": "vae",
    "clip_l_path": "clip_l",
    "clip_g_path": "clip_g",
    "t5xxl_path": "t5xxl",
    "taesd_path": "taesd",
}


def resolve_model(service: SdrestService, name: str | None) -> str | None:
    """The registry name of a generation model or preset named by the client (None = default)."""
    if name is None:
        return None
    model = find_model(service, name)
    if isinstance(model, ModelEntry) and model.type not in GENERATION_TYPES:
        raise InvalidRequestError(
            f"{model.name!r} is a {model.type}, not a model that generates images",
            field="model_name",
        )
    return model.name


def check_components(service: SdrestService, model: str | None, body: GenerateBody) -> list[str]:
    """Component files and folders named by the request. Each must lie inside the models folder
    (else 400) and exist (else 404). A component can only be the one the model already uses: the
    engine loads components with the model, so a per-request VAE would mean a reload for
    everybody (configure a preset instead). Returns warnings about ignored fields.
    """
    registry = service.registry
    warnings: list[str] = []
    if body.n_threads is not None:
        warnings.append("n_threads is ignored: threads are a server setting (--threads)")
    spec = None
    for field, kind in _COMPONENT_KIND.items():
        value = getattr(body, field)
        if value is None:
            continue
        try:
            path = registry.resolve_component(kind, value).resolve()
        except PathNotAllowedError as exc:
            raise InvalidRequestError(f"{field}: {exc}", field=field) from exc
        except UnknownModelError as exc:
            raise ModelNotFoundError(f"{field}: {exc}", field=field) from exc
        if spec is None:
            name = model or service.default_model()
            spec = planning.model_spec(name, service.settings, registry)
        current = getattr(spec, translate.COMPONENT_FIELDS[field])
        if not current or Path(current).resolve() != path:
            raise InvalidRequestError(
                f"{field}: {spec.name} is loaded with {Path(current).name if current else 'no'}"
                f" {kind}; per-request components are not supported (configure a preset that"
                " names this file)",
                field=field,
            )
    root = registry.models_dir.resolve()
    for field, kind in translate.FOLDER_FIELDS.items():
        value = getattr(body, field)
        if value is None:
            continue
        if "\x00" in value:  # the OS refuses such a path (resolve() would raise ValueError)
            raise InvalidRequestError(f"{field} must be inside the models folder", field=field)
        folder = Path(value) if Path(value).is_absolute() else registry.models_dir / value
        folder = folder.resolve()
        if not folder.is_relative_to(root):
            raise InvalidRequestError(f"{field} must be inside the models folder", field=field)
        if folder not in {f.resolve() for f in registry.type_folders(kind)}:
            warnings.append(f"{field} is ignored: {kind} files come from the models folder")
    return warnings


async def _generate(request: Request, mode: translate.Mode) -> Response:
    principal = require(request, "generate")
    service = service_of(request)
    body = translate.decode(await read_body(request), _generate_decoder)

    def prepare() -> tuple[str | None, list[str]]:
        model = resolve_model(service, body.model_name)
        return model, check_components(service, model, body)

    model, warnings = await asyncio.to_thread(prepare)
    if mode == "controlnet":
        if body.control_net_model is not None:
            await asyncio.to_thread(find_model, service, body.control_net_model, "controlnet")
        translate.to_request(body, mode, model, {}, service.settings.load)  # 400s first
        # ControlNet files are context options of the library (loaded with the model), and no
        # ControlNet small enough to test against can be synthesized: not claimed until it is.
        raise NotImplementedFeatureError(
            "ControlNet generation is not available: sdrest does not load a ControlNet per"
            " request yet (it would reload the model), and it has not been verified against a"
            " real ControlNet file"
        )
    try:
        canonical = translate.to_request(
            body, mode, model, service.request_defaults(model), service.settings.load
        )
        job = await service.submit(canonical, owner=principal.username, family="rest")
    except SdrestError as exc:
        exc.field = translate.wire_field(exc.field)  # name fields the way the client did
        raise
    reply: dict[str, Any] = translate.queued_reply(job, service.queue_position(job.id))
    if warnings:
        reply["warnings"] = warnings
    return JSONResponse(reply, status_code=202)


async def text2img(request: Request) -> Response:
    """``POST /api/generate/text2img``."""
    return await _generate(request, "text2img")


async def img2img(request: Request) -> Response:
    """``POST /api/generate/img2img``: ``init_image`` + ``strength``."""
    return await _generate(request, "img2img")


async def inpainting(request: Request) -> Response:
    """``POST /api/generate/inpainting``: ``init_image`` (or ``source_image``) + ``mask_image``."""
    return await _generate(request, "inpainting")


async def controlnet(request: Request) -> Response:
    """``POST /api/generate/controlnet``: validated, then 501 (no per-request ControlNet)."""
    return await _generate(request, "controlnet")


async def upscale(request: Request) -> Response:
    """``POST /api/generate/upscale``: ``image`` + ``esrgan_model`` (a registry upscaler)."""
    principal = require(request, "generate")
    service = service_of(request)
    body = translate.decode(await read_body(request), _upscale_decoder)
    canonical = translate.to_upscale(body)
    await asyncio.to_thread(find_model, service, canonical.upscaler, "upscaler")
    job = await service.submit_upscale(canonical, owner=principal.username, family="rest")
    reply = translate.queued_reply(job, service.queue_position(job.id))
    reply["message"] = "Upscale request queued successfully"
    return JSONResponse(reply, status_code=202)


GENERATION_ROUTES: list[BaseRoute] = [
    Route("/generate/text2img", text2img, methods=["POST"]),
    Route("/generate/img2img", img2img, methods=["POST"]),
    Route("/generate/inpainting", inpainting, methods=["POST"]),
    Route("/generate/controlnet", controlnet, methods=["POST"]),
    Route("/generate/upscale", upscale, methods=["POST"]),
]
"""Routes of /api/generate."""
