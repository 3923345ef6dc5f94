"""``/api/generate/*`` endpoints: text2img, img2img, inpainting, controlnet and upscale on the
one queue.

Each decodes the spec's body, resolves names inside the models folder only, translates onto the
canonical request and queues a job owned by the caller. The answer is ``202 {"request_id": <job
id>, "status": "queued", ...}``; progress comes from ``/api/queue/job/{id}`` or ``/ws``. Access
rules, bodies and answers are declared in :mod:`sdrest.api.rest.routes`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest import translate, views
from sdrest.api.rest.model_views import component_path
from sdrest.api.rest.schemas import GenerateBody, UpscaleBody
from sdrest.auth import principal_of
from sdrest.errors import InvalidRequestError, NotImplementedFeatureError, SdrestError
from sdrest.model_catalog import ModelCatalog
from sdrest.models import GENERATION_TYPES, ModelEntry

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


def resolve_model(models: ModelCatalog, name: str | None) -> str | None:
    """The registry name of a generation model or preset named by the client (None = default)."""
    if name is None:
        return None
    model = models.find(name)
    if isinstance(model, ModelEntry) and model.type not in GENERATION_TYPES:
        raise InvalidRequestError(
            f"{model.name!r} is a {model.type}, not a model that generates images",
            field="model_name",
        )
    return model.name


def _check_component(models: ModelCatalog, model: str | None, field: str, value: str) -> None:
    """A component file can only be the one the model already uses: the engine loads components
    with the model, so a per-request VAE would mean a reload for everybody."""
    kind = _COMPONENT_KIND[field]
    path = component_path(models, kind, value, field).resolve()
    spec = models.spec(model or models.default())
    current = getattr(spec, translate.COMPONENT_FIELDS[field])
    if not current or Path(current).resolve() != path:
        raise InvalidRequestError(
            f"{field}: {spec.name} is loaded with {Path(current).name if current else 'no'}"
            f" {kind}; per-request components are not supported (configure a preset that"
            " names this file)",
            field=field,
        )


def _check_folder(models: ModelCatalog, field: str, value: str) -> str | None:
    """A folder field must lie inside the models folder; a warning when it is not the typed
    folder the files come from anyway."""
    kind = translate.FOLDER_FIELDS[field]
    if "\x00" in value:  # the OS refuses such a path (resolve() would raise ValueError)
        raise InvalidRequestError(f"{field} must be inside the models folder", field=field)
    folder = Path(value) if Path(value).is_absolute() else models.models_dir / value
    folder = folder.resolve()
    if not folder.is_relative_to(models.models_dir.resolve()):
        raise InvalidRequestError(f"{field} must be inside the models folder", field=field)
    if folder not in {f.resolve() for f in models.type_folders(kind)}:
        return f"{field} is ignored: {kind} files come from the models folder"
    return None


def check_components(models: ModelCatalog, model: str | None, body: GenerateBody) -> list[str]:
    """Component files and folders named by the request. Each must lie inside the models folder
    (else 400) and exist (else 404); a component must be the one the model uses (configure a
    preset instead). Returns warnings about ignored fields.
    """
    warnings: list[str] = []
    if body.n_threads is not None:
        warnings.append("n_threads is ignored: threads are a server setting (--threads)")
    for field in _COMPONENT_KIND:
        value = getattr(body, field)
        if value is not None:
            _check_component(models, model, field, value)
    for field in translate.FOLDER_FIELDS:
        value = getattr(body, field)
        if value is not None and (warning := _check_folder(models, field, value)):
            warnings.append(warning)
    return warnings


async def _generate(request: Request, mode: translate.Mode) -> Response:
    service = service_of(request)
    models = service.models
    body = translate.decode(await read_body(request), _generate_decoder)

    def prepare() -> tuple[str | None, list[str]]:
        model = resolve_model(models, body.model_name)
        return model, check_components(models, model, body)

    model, warnings = await asyncio.to_thread(prepare)
    if mode == "controlnet":
        if body.control_net_model is not None:
            await asyncio.to_thread(models.find, body.control_net_model, "controlnet")
        translate.to_request(body, mode, model, {}, service.settings.load)  # 400s first
        # ControlNet files are context options of the library (loaded with the model), and no
        # ControlNet small enough to test against can be synthesized: not claimed until it is.
        raise NotImplementedFeatureError(
            "ControlNet generation is not available: sdrest does not load a ControlNet per"
            " request yet (it would reload the model), and it has not been verified against a"
            " real ControlNet file"
        )
    owner = principal_of(request).username
    try:
        canonical = translate.to_request(
            body, mode, model, models.defaults_for(model), service.settings.load
        )
        job = await service.submit(canonical, owner=owner, family="rest")
    except SdrestError as exc:
        exc.field = translate.wire_field(exc.field)  # name fields the way the client did
        raise
    reply = views.queued_reply(job, service.queue_position(job.id), warnings=warnings)
    return JSONResponse(reply, status_code=202)


async def text2img(request: Request) -> Response:
    """Queue a text-to-image generation."""
    return await _generate(request, "text2img")


async def img2img(request: Request) -> Response:
    """Queue an image-to-image generation: ``init_image`` + ``strength``."""
    return await _generate(request, "img2img")


async def inpainting(request: Request) -> Response:
    """Queue an inpainting: ``init_image`` (or ``source_image``) + ``mask_image``."""
    return await _generate(request, "inpainting")


async def controlnet(request: Request) -> Response:
    """Validated, then 501: no per-request ControlNet yet."""
    return await _generate(request, "controlnet")


async def upscale(request: Request) -> Response:
    """Queue an ESRGAN upscale: ``image`` + ``esrgan_model`` (a registry upscaler)."""
    service = service_of(request)
    body = translate.decode(await read_body(request), _upscale_decoder)
    canonical = translate.to_upscale(body)
    await asyncio.to_thread(service.models.find, canonical.upscaler, "upscaler")
    owner = principal_of(request).username
    job = await service.submit_upscale(canonical, owner=owner, family="rest")
    reply = views.queued_reply(
        job, service.queue_position(job.id), "Upscale request queued successfully"
    )
    return JSONResponse(reply, status_code=202)
