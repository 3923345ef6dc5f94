"""``/api/queue`` endpoints: status, history, one job, its live preview, cancel, delete and
clear.

A user sees and touches only their own jobs (another user's job is a 404 JOB_NOT_FOUND, as if it
did not exist); an admin, and the open server, see all. Access rules, bodies and answers are
declared in :mod:`sdrest.api.rest.routes`.
"""

from __future__ import annotations

import logging

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import (
    JSONResponse,
    parse_choice,
    parse_int,
    read_body,
    service_of,
    visible_job,
)
from sdrest.api.rest import translate, views
from sdrest.api.rest.responses import (
    CancelReply,
    ClearReply,
    DeleteReply,
    HistoryReply,
    JobReply,
    QueueStatus,
)
from sdrest.api.rest.schemas import CancelBody
from sdrest.auth import principal_of
from sdrest.errors import ConflictError, NotFoundError, SdrestError

logger = logging.getLogger(__name__)

_cancel_decoder = msgspec.json.Decoder(CancelBody)
_STATUS_LIMIT = 100  # finished jobs shown after the live ones
FINISHED = ("completed", "failed", "cancelled")
HISTORY_MAX_LIMIT = 500
HISTORY_MAX_OFFSET = 10_000_000
HISTORY_STATUSES = {name: name for name in ("all", *FINISHED)}
"""``GET /api/queue/history?status=``: every finished job, or those of one outcome."""
_SMALL_BODY = 16 * 1024


async def queue_status(request: Request) -> Response:
    """The caller's jobs (admin: all): live ones first, in the order they run, with positions,
    progress, speed and time remaining; then the most recent finished ones."""
    principal = principal_of(request)
    service = service_of(request)
    snapshot = service.queue_snapshot()  # live jobs from memory, one consistent picture
    finished = await service.list_jobs(  # finished ones from the store, newest first
        owner=None if principal.is_admin else principal.username,
        statuses=FINISHED,
        limit=_STATUS_LIMIT,
    )
    return JSONResponse(QueueStatus(views.queue_state(snapshot, finished, principal)))


async def history(request: Request) -> Response:
    """The caller's finished jobs (admin: everyone's), newest first, a page at a time:
    ``limit`` (1-500, default 50), ``offset`` and ``status`` (``completed``, ``failed``,
    ``cancelled`` or ``all``)."""
    principal = principal_of(request)
    query = request.query_params
    limit = parse_int(query.get("limit"), "limit", 50, 1, HISTORY_MAX_LIMIT)
    offset = parse_int(query.get("offset"), "offset", 0, 0, HISTORY_MAX_OFFSET)
    status = parse_choice(query.get("status"), "status", HISTORY_STATUSES, "all")
    jobs = await service_of(request).list_jobs(
        owner=None if principal.is_admin else principal.username,
        statuses=FINISHED if status == "all" else (status,),
        limit=limit + 1,  # one more tells whether a next page exists
        offset=offset,
    )
    listed = [views.job_view(job, 0, listed=True) for job in jobs[:limit]]
    return JSONResponse(HistoryReply(listed, limit, offset, has_more=len(jobs) > limit))


async def get_job(request: Request) -> Response:
    """The job document, with output URLs once completed. Guests (``optional`` auth) may poll
    a job by its id too."""
    job = await visible_job(request, request.path_params["job_id"])
    position = service_of(request).queue_position(job.id)
    return JSONResponse(JobReply(views.job_view(job, position)))


async def get_preview(request: Request) -> Response:
    """The running job's latest live preview (PNG); 404 when it has none (not running, or
    previews are off)."""
    job = await visible_job(request, request.path_params["job_id"])
    preview = await service_of(request).preview_png(job)
    if preview is None:
        raise NotFoundError(f"job {job.id} has no live preview", field="job_id")
    step, data = preview
    return Response(
        data,
        media_type="image/png",
        headers={"Cache-Control": "no-store", "X-Preview-Step": str(step)},
    )


async def cancel(request: Request) -> Response:
    """``{"job_id"}``: a queued job is cancelled now; a running one is stopped (at once in
    worker mode, else when the native call returns, its images discarded); a finished one is a
    409."""
    service = service_of(request)
    body = translate.decode(await read_body(request, _SMALL_BODY), _cancel_decoder)
    job = await visible_job(request, body.job_id)
    if job.status in ("completed", "failed"):
        raise ConflictError(f"job {job.id} has already {job.status}", field="job_id")
    job = await service.request_stop(job.id, wait=True)
    message = (
        "Job cancelled successfully"
        if job.finished
        else "Job cancellation requested: it stops when the current native call returns"
    )
    return JSONResponse(CancelReply("success", message, job.id, views.status_name(job.status)))


async def delete_job(request: Request) -> Response:
    """Delete a finished job for good: its record and its images (a ``job_deleted`` message on
    ``/ws``). A queued or running job is a 409: cancel it first."""
    job = await visible_job(request, request.path_params["job_id"])
    await service_of(request).delete(job.id)
    return JSONResponse(DeleteReply("success", "Job deleted", job.id))


async def clear(request: Request) -> Response:
    """Cancel the caller's queued jobs (admin: everyone's). The running job is left alone
    (cancel it by id)."""
    principal = principal_of(request)
    service = service_of(request)
    cancelled = []
    for job in service.queue_snapshot().queued:
        if not principal.may_see(job.owner):
            continue
        try:
            await service.cancel(job.id)
        except (ConflictError, NotFoundError):
            continue  # it started or vanished meanwhile
        except SdrestError:
            logger.exception("cannot cancel %s while clearing the queue", job.id)
            continue
        cancelled.append(job.id)
    return JSONResponse(
        ClearReply("success", "Queue cleared successfully", len(cancelled), cancelled)
    )
