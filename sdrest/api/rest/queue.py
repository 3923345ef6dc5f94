"""``/api/queue``: status, one job, cancel and clear. A user sees and touches only their own jobs
(another user's job is a 404, as if it did not exist); an admin, and the open server, see all."""

from __future__ import annotations

import logging

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest import translate
from sdrest.api.rest.errors import JobNotFoundError
from sdrest.api.rest.schemas import CancelBody
from sdrest.auth import Principal, require
from sdrest.auth.principal import require_identified
from sdrest.errors import ConflictError, NotFoundError, SdrestError
from sdrest.schemas import Job
from sdrest.service import SdrestService

logger = logging.getLogger(__name__)

_cancel_decoder = msgspec.json.Decoder(CancelBody)
_STATUS_LIMIT = 100  # finished jobs shown after the live ones
_SMALL_BODY = 16 * 1024


async def visible_job(service: SdrestService, principal: Principal, job_id: str) -> Job:
    """A job the caller may see: unknown and other users' jobs are both 404 JOB_NOT_FOUND; an
    expired one is 410 JOB_EXPIRED."""
    try:
        job = await service.get(job_id)
    except NotFoundError:
        raise JobNotFoundError(f"job not found: {job_id}", field="job_id") from None
    if not principal.may_see(job.owner):
        raise JobNotFoundError(f"job not found: {job_id}", field="job_id")
    return job


async def queue_status(request: Request) -> Response:
    """``GET /api/queue/status``: the caller's jobs (admin: all), live ones first with positions,
    progress, speed and time remaining; then the most recent finished ones."""
    principal = require(request, "jobs:own")
    service = service_of(request)
    owner = None if principal.is_admin else principal.username
    # Live jobs from memory, in the order they run (the generating one, then the queue);
    # finished ones from the store, newest first.
    live = [j for j in service.live_jobs() if principal.may_see(j.owner)]
    finished = await service.list_jobs(
        owner=owner, statuses=("completed", "failed", "cancelled"), limit=_STATUS_LIMIT
    )
    listed = live + finished
    order = {job_id: i for i, job_id in enumerate(service.queued_ids(), start=1)}
    current = service.current_job
    return JSONResponse(
        {
            "queue": {
                "size": len(order),
                "active_generations": 0 if current is None else 1,
                "running": True,
                "current_job": current.id
                if current is not None and principal.may_see(current.owner)
                else None,
                "jobs": [translate.job_view(j, order.get(j.id, 0)) for j in listed],
            }
        }
    )


async def get_job(request: Request) -> Response:
    """``GET /api/queue/job/{job_id}``: the job document, with output URLs once completed.
    Guests (``optional`` auth) may poll a job by its id too."""
    principal = require_identified(request)
    service = service_of(request)
    job = await visible_job(service, principal, request.path_params["job_id"])
    return JSONResponse({"job": translate.job_view(job, service.queue_position(job.id))})


async def get_preview(request: Request) -> Response:
    """``GET /api/queue/job/{job_id}/preview``: the running job's latest live preview (PNG);
    404 when it has none (not running, or previews are off)."""
    principal = require_identified(request)
    service = service_of(request)
    job = await visible_job(service, principal, request.path_params["job_id"])
    preview = await service.preview_png(job)
    if preview is None:
        raise NotFoundError(f"job {job.id} has no live preview", field="job_id")
    step, data = preview
    return Response(
        data,
        media_type="image/png",
        headers={"Cache-Control": "no-store", "X-Preview-Step": str(step)},
    )


async def cancel(request: Request) -> Response:
    """``POST /api/queue/cancel {"job_id"}``: a queued job is cancelled now; a running one is
    stopped (at once in worker mode, else when the native call returns, its images discarded);
    a finished one is a 409."""
    principal = require_identified(request)
    service = service_of(request)
    body = translate.decode(await read_body(request, _SMALL_BODY), _cancel_decoder)
    job = await visible_job(service, principal, body.job_id)
    if job.status in ("completed", "failed"):
        raise ConflictError(f"job {job.id} has already {job.status}", field="job_id")
    job = await service.request_stop(job.id, wait=True)
    message = (
        "Job cancelled successfully"
        if job.finished
        else "Job cancellation requested: it stops when the current native call returns"
    )
    return JSONResponse(
        {
            "status": "success",
            "message": message,
            "job_id": job.id,
            "job_status": translate.STATUS_NAMES.get(job.status, job.status),
        }
    )


async def clear(request: Request) -> Response:
    """``POST /api/queue/clear``: cancel the caller's queued jobs (admin: everyone's). The running
    job is left alone (cancel it by id)."""
    principal = require(request, "jobs:own")
    service = service_of(request)
    cancelled = []
    for job_id in service.queued_ids():
        try:
            job = await service.get(job_id)
            if not principal.may_see(job.owner):
                continue
            await service.cancel(job_id)
        except (ConflictError, NotFoundError):
            continue  # it started or vanished meanwhile
        except SdrestError:
            logger.exception("cannot cancel %s while clearing the queue", job_id)
            continue
        cancelled.append(job_id)
    return JSONResponse(
        {
            "status": "success",
            "message": "Queue cleared successfully",
            "cancelled_count": len(cancelled),
            "cancelled": cancelled,
        }
    )


QUEUE_ROUTES: list[BaseRoute] = [
    Route("/queue/status", queue_status, methods=["GET"]),
    Route("/queue/job/{job_id}", get_job, methods=["GET"]),
    Route("/queue/job/{job_id}/preview", get_preview, methods=["GET"]),
    Route("/queue/cancel", cancel, methods=["POST"]),
    Route("/queue/clear", clear, methods=["POST"]),
]
"""Routes of /api/queue (the output downloads live in outputs.py)."""
