"""``/api/generate/*`` endpoints: text2img, img2img, inpainting, controlnet and upscale on the
one queue.

Each decodes the spec's body, resolves names inside the models folder only, translates onto the
canonical request and queues a job owned by the caller. The answer is ``202 {"request_id": <job
id>, "status": "queued", ...}``; progress comes from ``/api/queue/job/{id}`` or ``/ws``. Access
rules, bodies and answers are declared in :mod:`sdrest.api.rest.routes`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import TypeVar, cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, client_address, read_body, service_of
from sdrest.api.rest import parameters, translate, views
from sdrest.api.rest.schemas import GenerateBody, UpscaleBody
from sdrest.auth import principal_of
from sdrest.errors import InvalidRequestError, NotImplementedFeatureError, SdrestError
from sdrest.model_catalog import ModelCatalog
from sdrest.models import GENERATION_TYPES, ModelEntry
from sdrest.schemas import ImgGenRequest, Job, RequestLayer
from sdrest.service import SdrestService
from sdrest.settings import deep_merge

logger = logging.getLogger(__name__)
Body = TypeVar("Body", bound=GenerateBody)
_generate_decoder = msgspec.json.Decoder(GenerateBody)
_upscale_decoder = msgspec.json.Decoder(UpscaleBody)


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


def architecture_of(models: ModelCatalog, model: str | None) -> str | None:
    """The detected architecture of ``model`` (None = the default model); None when unknown."""
    try:
        return models.main_entry(model or models.default()).architecture
    except SdrestError:
        return None


def rest_defaults(models: ModelCatalog, model: str | None) -> RequestLayer:
    """What an /api request leaves out becomes: the model's preset defaults over its native
    size (512 for SD1, 768 for SD2, 1024 for SDXL, SD3, Flux... as the spec's examples
    expect)."""
    native = parameters.native_size_layer(architecture_of(models, model))
    return cast(RequestLayer, deep_merge(native, models.defaults_for(model)))


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


def check_folders(models: ModelCatalog, body: GenerateBody) -> list[str]:
    """Folder fields named by the request: each must lie inside the models folder (else 400).
    Returns warnings about ignored fields. Component files are checked when the job is planned
    (they make the request's own model spec)."""
    warnings: list[str] = []
    if body.n_threads is not None:
        warnings.append("n_threads is ignored: threads are a server setting (--threads)")
    for field in translate.FOLDER_FIELDS:
        value = getattr(body, field)
        if value is not None and (warning := _check_folder(models, field, value)):
            warnings.append(warning)
    return warnings


def decode_generate(
    service: SdrestService,
    raw: bytes,
    decoder: msgspec.json.Decoder[Body],
) -> tuple[Body, list[str]]:
    """A generation body (``decoder``: GenerateBody or a subclass) and the warnings about its
    unknown fields (logged too; a 400 under ``--strict-requests``)."""
    body = translate.decode(raw, decoder)
    unknown = translate.unknown_fields(raw, type(body))
    warnings = translate.unknown_field_warnings(unknown, service.settings.strict_requests)
    if unknown:
        logger.warning("request fields ignored (unknown): %s", ", ".join(unknown))
    return body, warnings


async def plan_request(
    service: SdrestService, body: GenerateBody, mode: translate.Mode
) -> tuple[ImgGenRequest, list[str]]:
    """Resolve and check a decoded generation body: (the canonical request, warnings)."""
    models = service.models

    def prepare() -> tuple[str | None, list[str]]:
        model = resolve_model(models, body.model_name)
        return model, check_folders(models, body)

    model, warnings = await asyncio.to_thread(prepare)
    if mode == "controlnet":
        if body.control_net_model is not None:
            await asyncio.to_thread(models.find, body.control_net_model, "controlnet")
        translate.to_request(body, mode, model, {})  # 400s first
        # ControlNet files are context options of the library (loaded with the model), and no
        # ControlNet small enough to test against can be synthesized: not claimed until it is.
        raise NotImplementedFeatureError(
            "ControlNet generation is not available: sdrest does not load a ControlNet per"
            " request yet (it would reload the model), and it has not been verified against a"
            " real ControlNet file"
        )
    defaults = rest_defaults(models, model)
    try:
        canonical = translate.to_request(body, mode, model, defaults)
    except SdrestError as exc:
        exc.field = translate.wire_field(exc.field)
        raise
    return canonical, warnings


async def submit(service: SdrestService, request: ImgGenRequest, owner: str) -> Job:
    """Queue a generation of the /api family, naming fields the way its client did."""
    try:
        return await service.submit(request, owner=owner, family="rest")
    except SdrestError as exc:
        exc.field = translate.wire_field(exc.field)  # name fields the way the client did
        raise


_URL_IMAGE_FIELDS = ("init_image", "source_image", "mask_image", "control_image")


def _is_url(value: str | None) -> bool:
    return value is not None and value[:8].lower().startswith(("http://", "https://"))


async def fetch_url_images(service: SdrestService, body: Body, client: str) -> Body:
    """``body`` with its image URLs (``init_image``, ``mask_image``...) replaced by the fetched
    images (base64): public addresses only, every hop checked, ``--fetch-per-minute`` per
    client; 403 when the server runs with ``--no-allow-url-images``."""
    fields = [f for f in _URL_IMAGE_FIELDS if _is_url(getattr(body, f))]
    if not fields:
        return body
    service.url_fetches.check(client, len(fields))
    from sdrest.net.fetch import fetch_image_bytes  # httpx loads only when a URL is fetched

    settings = service.settings
    changes: dict[str, str] = {}
    for field in fields:
        try:
            data = await fetch_image_bytes(
                getattr(body, field), settings.fetch, max_bytes=settings.limits.max_image_bytes
            )
        except SdrestError as exc:  # name the request's field, not the fetcher's "url"
            exc.field, exc.message = field, f"{field}: {exc.message}"
            raise
        changes[field] = base64.b64encode(data).decode("ascii")
    return msgspec.structs.replace(body, **changes)


async def _generate(request: Request, mode: translate.Mode) -> Response:
    service = service_of(request)
    body, unknown = decode_generate(service, await read_body(request), _generate_decoder)
    body = await fetch_url_images(service, body, client_address(request))
    canonical, warnings = await plan_request(service, body, mode)
    job = await submit(service, canonical, principal_of(request).username)
    reply = views.queued_reply(
        job, service.queue_position(job.id), warnings=unknown + warnings
    )
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
