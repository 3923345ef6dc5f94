"""``/sdcpp/v1``: capabilities, async img_gen jobs, polling and cancel."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdrest.api.common import (
    JSONResponse,
    error_status,
    family_exception_handlers,
    read_body,
    service_of,
)
from sdrest.api.sdcpp import translate
from sdrest.auth import ensure_visible, require, require_identified
from sdrest.errors import InvalidRequestError, NotImplementedFeatureError, SdrestError
from sdrest.models import UnknownModelError
from sdrest.schemas import Job
from sdrest.service import SdrestService


async def capabilities(request: Request) -> Response:
    """``GET /capabilities``: the default model, defaults, limits, names and features."""
    require(request, "models:read")
    service = service_of(request)
    try:
        name: str | None = service.default_model()
    except InvalidRequestError:
        name = None  # no model yet: still describe the server
    entry = None
    if name is not None:
        try:
            entry = service.registry.get(name)
        except UnknownModelError:
            entry = None  # a preset
    defaults = service.request_defaults(name) if name else {}
    body = translate.capabilities(
        service.settings,
        entry,
        name,
        service.registry.entries("lora"),
        defaults,
        service.registry.models_dir / "lora",
        cancel_generating=service.engine.supports_abort,
    )
    return JSONResponse(body)


async def img_gen(request: Request) -> Response:
    """``POST /img_gen``: validate and queue; 202 with the job id and its poll URL."""
    principal = require(request, "generate")
    service = service_of(request)
    body = await read_body(request)
    gen_request = translate.to_request(body, service.request_defaults)
    job = await service.submit(gen_request, owner=principal.username, family="sdcpp")
    return JSONResponse(translate.job_created(job), status_code=202)


MAX_WAIT_SECONDS = 60.0


async def _visible_job(request: Request, job_id: str) -> Job:
    """The job, if the caller may see it: another user's job is a 404, as if unknown."""
    principal = require_identified(request)
    job = await service_of(request).get(job_id)
    ensure_visible(principal, job.owner, job_id)
    return job


async def _job_response(service: SdrestService, job: Job, wait: float = 0.0) -> Response:
    job_id = job.id
    if wait > 0 and not job.finished:
        with contextlib.suppress(asyncio.TimeoutError):
            job = await service.wait(job_id, timeout=wait)
    position = service.queue_position(job.id)

    def read_b64(filename: str) -> str:
        return service.output_b64(job.id, filename)

    if job.status == "completed":  # inlining images reads files: keep that off the loop
        view = await asyncio.to_thread(translate.job_view, job, position, read_b64)
    else:
        view = translate.job_view(job, position, read_b64)
    return JSONResponse(view)


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
    """``?wait=S`` (sdrest extension): answer as soon as the job finishes, or after S seconds."""
    job = await _visible_job(request, request.path_params["job_id"])
    wait = _wait_param(request)
    return await _job_response(service_of(request), job, wait)


async def cancel_job(request: Request) -> Response:
    """``POST /jobs/{id}/cancel``: a queued job is cancelled; a generating one is stopped
    (worker mode; in-process it is a 409). Answers with the job as it ended."""
    service = service_of(request)
    job = await _visible_job(request, request.path_params["job_id"])
    await service.cancel(job.id)
    return await _job_response(service, await service.get(job.id))


async def vid_gen(request: Request) -> Response:
    """``POST /vid_gen``: 501 saying why (no video model, or video not implemented)."""
    require(request, "generate")
    service = service_of(request)
    try:
        name = service.default_model()
        arch = service.registry.get(name).architecture
    except (SdrestError, UnknownModelError):
        name, arch = "the default model", "unknown"
    if arch == "wan":
        reason = f"{name} is a Wan video model, but video jobs are not implemented in sdrest yet"
    else:
        reason = f"{name} ({arch}) cannot make video; vid_gen needs a Wan model"
    raise NotImplementedFeatureError(f"vid_gen is not available: {reason}")


def _render_error(request: Request, exc: Exception) -> Response:
    status, code, message = error_status(exc)
    body: dict[str, Any] = {"error": message, "code": code}
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def create_sdcpp_app(service: SdrestService) -> Starlette:
    """The /sdcpp/v1 family; errors render as ``{"error": message, "code", "field"}``."""
    app = Starlette(
        routes=[
            Route("/capabilities", capabilities, methods=["GET"]),
            Route("/img_gen", img_gen, methods=["POST"]),
            Route("/vid_gen", vid_gen, methods=["POST"]),
            Route("/jobs/{job_id}", get_job, methods=["GET"]),
            Route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
        ],
        exception_handlers=family_exception_handlers(_render_error),
    )
    app.state.service = service
    return app
