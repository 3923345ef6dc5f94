"""``/api`` utility endpoints: samplers, schedulers, parameters, validate and estimate; access
rules, bodies and answers are declared in :mod:`sdrest.api.rest.routes` (validate is public).

Errors are raised as :class:`SdrestError` subclasses and rendered by the /api sub-app in its own
error shape.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, parse_choice, read_body, service_of
from sdrest.api.rest import estimate as estimates
from sdrest.api.rest import parameters as tables
from sdrest.api.rest import translate, validation
from sdrest.api.rest.errors import ValidationFailedError, rest_code
from sdrest.api.rest.generation_handlers import architecture_of, rest_defaults
from sdrest.api.rest.schemas import GenerateBody
from sdrest.api.rest.utility_responses import EstimateReply, Issue, ValidationReply
from sdrest.api.routing import Query
from sdrest.auth import permissions_of, principal_of
from sdrest.errors import SdrestError
from sdrest.schemas import ImgGenRequest
from sdrest.service import SdrestService

logger = logging.getLogger(__name__)

_generate_decoder = msgspec.json.Decoder(GenerateBody)
MODES: Final[tuple[translate.Mode, ...]] = ("text2img", "img2img", "inpainting", "controlnet")
MODE_QUERY: Final = Query(
    "mode",
    {"type": "string", "enum": list(MODES)},
    "The generation mode to check the body against (default: what its images imply).",
)
"""The ``?mode=`` that validate and estimate read."""
_NOT_CHECKED = Issue(
    "init_image", "images were not decoded: sign in to have them checked", "IMAGES_NOT_CHECKED"
)


# --- tables -----------------------------------------------------------------------------------


async def samplers(request: Request) -> Response:
    """The sampling methods, with descriptions and cost per step."""
    return JSONResponse(tables.samplers_view())


async def schedulers(request: Request) -> Response:
    """The schedulers, with descriptions."""
    return JSONResponse(tables.schedulers_view())


async def parameters(request: Request) -> Response:
    """Ranges as enforced, defaults of the default model."""
    service = service_of(request)
    models = service.models
    model = models.default_or_none()  # no default model yet: still describe the limits
    layer = rest_defaults(models, model) if model is not None else {}
    architecture = architecture_of(models, model) if model is not None else None
    view = tables.parameters_view(service.settings.limits, model, layer, architecture)
    return JSONResponse(view)


# --- validate and estimate --------------------------------------------------------------------


def _mode(request: Request, body: GenerateBody) -> translate.Mode:
    """``?mode=`` if given, else what the body's images imply."""
    mode = parse_choice(request.query_params.get("mode"), "mode", {m: m for m in MODES}, None)
    if mode is not None:
        return mode
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
        return service.models.default()
    found = await asyncio.to_thread(service.models.find, wanted)  # a hash prefix reads the cache
    return found.name


def _issue(exc: SdrestError, field: str | None = None) -> Issue:
    return Issue(translate.wire_field(exc.field) or field, exc.message, rest_code(exc.code))


def _translate(
    service: SdrestService, body: GenerateBody, mode: translate.Mode, model: str
) -> ImgGenRequest:
    return translate.to_request(body, mode, model, rest_defaults(service.models, model))


def _body_issues(service: SdrestService, body: GenerateBody) -> tuple[list[Issue], bool]:
    """Every broken limit and unknown name (all of them, not the first); whether a name was
    wrong (the translation would only repeat it)."""
    limits = service.settings.limits
    sizes = {"width": body.width, "height": body.height}
    errors = validation.limit_issues(
        {**sizes, "steps": body.steps, "batch_count": body.batch_count}, limits
    )
    sampler = None if body.sampling_method is None else translate.sampler_name(body.sampling_method)
    names = validation.name_issues(sampler, body.scheduler)
    return errors + names, bool(names)


async def _submit_issues(
    request: Request, body: GenerateBody, mode: translate.Mode, model: str
) -> tuple[list[Issue], list[Issue]]:
    """(errors, warnings) of the body as submit would take it: what it would refuse, what it
    would do that is worth telling."""
    service = service_of(request)
    try:
        gen = _translate(service, body, mode, model)
    except SdrestError as exc:
        return [_issue(exc)], []
    step = tables.size_step(architecture_of(service.models, model))
    warnings = validation.request_warnings(gen, model, service.models.loaded, step)
    if gen.has_images and "generate" not in permissions_of(principal_of(request)):
        # validate is public: decoding megabytes of images is for callers who may generate,
        # anyone else gets the other checks and a warning.
        gen = gen.without_images()
        warnings.append(_NOT_CHECKED)
    try:
        await service.check(gen, model)  # everything submit checks, images and LoRAs included
    except SdrestError as exc:
        return [_issue(exc)], warnings
    return [], warnings


async def validate(request: Request) -> Response:
    """Check a generation body as /api/generate/* would, without queueing it (public).

    200 ``{valid, errors, warnings}``; 400 only for a body that is not JSON.
    """
    service = service_of(request)
    raw = await read_body(request)
    try:
        body = translate.decode(raw, _generate_decoder)
    except ValidationFailedError as exc:  # wrong field or type: an answer, not a failure
        return JSONResponse(ValidationReply.of([_issue(exc)], [], None))
    mode = _mode(request, body)
    errors, bad_names = _body_issues(service, body)
    unknown = [
        Issue(name, f"unknown field `{name}`: the server ignores it", "UNKNOWN_FIELD")
        for name in translate.unknown_fields(raw, GenerateBody)
    ]
    if service.settings.strict_requests:  # --strict-requests: submitting would refuse them
        errors += [Issue(i.field, i.message) for i in unknown]
        unknown = []
    warnings: list[Issue] = []
    model: str | None = None
    try:
        model = await _model_name(service, body.model_name)
    except SdrestError as exc:
        errors.append(_issue(exc, "model_name"))
    if model is not None and not bad_names:  # the translation would only repeat a name error
        refused, warnings = await _submit_issues(request, body, mode, model)
        errors += refused
    return JSONResponse(ValidationReply.of(errors, unknown + warnings, model))


def _file_sizes(files: Mapping[str, str], loras: Iterable[str]) -> dict[str, int]:
    """Sizes of the files a job loads, by role, then its LoRAs (disk: run off the loop)."""
    sizes: dict[str, int] = {}
    for role, path in files.items():
        sizes[role] = os.stat(path).st_size
    for path in loras:
        sizes["lora:" + os.path.basename(path)] = os.stat(path).st_size
    return sizes


async def estimate(request: Request) -> Response:
    """Time and memory of a generation body.

    Time is measured on recent jobs of the model (else a flagged heuristic); memory is the file
    sizes plus the latent and VAE sizes."""
    service = service_of(request)
    body = translate.decode(await read_body(request), _generate_decoder)
    model = await _model_name(service, body.model_name)
    gen = _translate(service, body, _mode(request, body), model)
    # Everything submit checks but the input images (they change neither time nor memory).
    plan = await service.check(gen.without_images(), model)
    jobs = await service.list_jobs(statuses=("completed",), limit=200)
    try:
        loras = [lora.path for lora in plan.loras]
        weights = await asyncio.to_thread(_file_sizes, plan.model.files(), loras)
    except OSError as exc:
        logger.warning("estimate: cannot stat the files of %s: %s", model, exc)
        weights = {}
    time_estimate = estimates.estimate_time(gen, estimates.samples_from_jobs(jobs, model))
    memory = estimates.estimate_memory(gen, weights, service.settings.vae_tiling)
    snapshot = service.queue_snapshot()
    answer = EstimateReply(
        model=model,
        model_loaded=model in snapshot.loaded_models,
        width=gen.width,
        height=gen.height,
        steps=gen.sample_params.sample_steps,
        batch_count=gen.batch_count,
        queue_length=len(snapshot.queued),
        estimated_time_seconds=time_estimate.seconds,
        estimated_memory_mb=memory.mb,
        time=time_estimate,
        memory=memory,
    )
    return JSONResponse(answer)
