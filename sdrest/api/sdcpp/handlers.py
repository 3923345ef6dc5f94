"""``/sdcpp/v1`` endpoints: capabilities, async img_gen jobs, polling and cancel.

Access rules, bodies and answers are declared in :mod:`sdrest.api.sdcpp.routes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, read_body, service_of, visible_job
from sdrest.api.sdcpp import translate
from sdrest.api.sdcpp.responses import Capabilities, JobCreated, JobDocument
from sdrest.auth import principal_of
from sdrest.errors import InvalidRequestError, NotImplementedFeatureError, SdrestError
from sdrest.models import ModelEntry
from sdrest.schemas import Job
from sdrest.service import SdrestService

MAX_WAIT_SECONDS = 60.0


async def capabilities(request: Request) -> Response:
    """The default model, defaults, limits, names and features."""
    service = service_of(request)
    models = service.models
    name = models.default_or_none()  # no model yet: still describe the server
    model = None
    if name is not None:
        with contextlib.suppress(SdrestError):  # a configured name that is gone: planning says
            model = models.find(name)
    defaults = models.defaults_for(name) if name is not None else {}
    body = Capabilities.of(
        service.settings,
        model if isinstance(model, ModelEntry) else None,
        name,
        models.entries("lora"),
        dict(translate.full_defaults(defaults)),  # a RequestLayer as the dict the answer holds
        models.models_dir / "lora",
        cancel_generating=service.engine.supports_abort,
    )
    if body.model is not None and body.model.path and not principal_of(request).is_admin:
        # Folders on the server are the operator's business (as /api/config): relative path.
        with contextlib.suppress(ValueError):
            body.model.path = str(Path(body.model.path).relative_to(models.models_dir))
    return JSONResponse(body)


async def img_gen(request: Request) -> Response:
    """Validate and queue a generation; 202 with the job id and its poll URL."""
    service = service_of(request)
    gen_request, warnings = translate.to_request(
        await read_body(request), service.models.defaults_for, service.settings.strict_requests
    )
    owner = principal_of(request).username
    job = await service.submit(gen_request, owner=owner, family="sdcpp")
    return JSONResponse(JobCreated.of(job, warnings), status_code=202)


async def _job_response(service: SdrestService, job: Job, wait: float = 0.0) -> Response:
    if wait > 0 and not job.finished:
        with contextlib.suppress(asyncio.TimeoutError):
            await service.wait(job.id, timeout=wait)
        job = await service.get(job.id)  # the job as it is now (jobs handed out are snapshots)
    position = service.queue_position(job.id)
    if job.status == "completed" and job.result is not None:
        # Inlining images reads files: keep that off the loop.
        images = await asyncio.to_thread(service.outputs_b64, job)
    else:
        images = []
    return JSONResponse(JobDocument.of(job, position, images, time.time()))


def _wait_param(request: Request) -> float:
    raw = request.query_params.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        raise InvalidRequestError("wait must be a number of seconds", field="wait") from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidRequestError(f"wait must be between 0 and {MAX_WAIT_SECONDS:g}", field="wait")
    return wait


async def get_job(request: Request) -> Response:
    """One job; ``?wait=S`` (sdrest extension): answer as soon as it finishes, or after S s."""
    job = await visible_job(request, request.path_params["job_id"])
    wait = _wait_param(request)
    return await _job_response(service_of(request), job, wait)


async def cancel_job(request: Request) -> Response:
    """Cancel a job: a queued one is cancelled; a generating one is stopped (worker mode;
    in-process it is a 409). Answers with the job as it ended."""
    service = service_of(request)
    job = await visible_job(request, request.path_params["job_id"])
    return await _job_response(service, await service.cancel(job.id))


async def vid_gen(request: Request) -> Response:
    """501 saying why (no video model, or video not implemented)."""
    models = service_of(request).models
    try:
        name = models.default()
        arch = models.main_entry(name).architecture
    except SdrestError:
        name, arch = "the default model", "unknown"
    if arch == "wan":
        reason = f"{name} is a Wan video model, but video jobs are not implemented in sdrest yet"
    else:
        reason = f"{name} ({arch}) cannot make video; vid_gen needs a Wan model"
    raise NotImplementedFeatureError(f"vid_gen is not available: {reason}")
