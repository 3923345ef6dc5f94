"""Pure views of jobs and the queue for /api and /ws: the job document, progress numbers, the
queued reply and the WebSocket messages. Nothing here reads the disk or awaits: handlers pass in
the jobs (and one queue snapshot) they read.
"""

from __future__ import annotations

import time

import msgspec
from msgspec import UNSET

from sdrest.api.rest.responses import (
    JobLora,
    JobOutputImage,
    JobParameters,
    QueuedReply,
    QueueState,
    RestJob,
    RestProblem,
    WsData,
    WsJobUpdate,
    WsMessage,
    WsQueuedJob,
    WsQueueUpdate,
)
from sdrest.auth import Principal
from sdrest.outputs import output_url
from sdrest.schemas import Job, QueueSnapshot, job_timing

STATUS_NAMES: dict[str, str] = {
    "queued": "queued",
    "generating": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
JOB_TYPES: dict[str, str] = {
    "img_gen": "generation",
    "upscale": "upscale",
    "convert": "convert",
    "download": "download",
}


LISTED_PROMPT_CHARS = 500
"""Longest prompt (and negative prompt) a job listing carries, ellipsis included."""
ELLIPSIS = "\u2026"


def shorten(text: str, limit: int = LISTED_PROMPT_CHARS) -> tuple[str, bool]:
    """(``text`` cut to ``limit`` characters, the last one ``…``; whether it was cut)."""
    if len(text) <= limit:
        return text, False
    return text[: max(0, limit - 1)] + ELLIPSIS, True


def status_name(status: str) -> str:
    """A job status as the spec spells it (``generating`` is ``processing``)."""
    return STATUS_NAMES.get(status, status)


class Timing(msgspec.Struct, frozen=True):
    """The /api spelling of :func:`sdrest.schemas.job_timing`: fraction rounded, times in ms,
    speed in steps per second."""

    progress: float
    current_step: int
    total_steps: int
    phase: str
    time_elapsed: int
    time_remaining: int | None
    speed: float


def timing(job: Job, now: float) -> Timing:
    """Progress numbers of a job (steps count sampling or upscaling tiles, never loading)."""
    t = job_timing(job, now)
    speed = 1.0 / t.seconds_per_step if t.seconds_per_step > 0 else 0.0
    return Timing(
        progress=round(t.fraction, 4),
        current_step=t.step,
        total_steps=t.steps,
        phase=job.progress.phase,
        time_elapsed=round(t.elapsed * 1000),
        time_remaining=None if t.eta is None else round(t.eta * 1000),
        speed=round(speed, 3),
    )


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def _parameters(job: Job) -> JobParameters:
    if job.upscale is not None:
        return JobParameters(esrgan_model=job.upscale.upscaler, repeats=job.upscale.repeats)
    request = job.request
    if request is None:
        return JobParameters()
    sample = request.sample_params
    return JobParameters(
        width=request.width,
        height=request.height,
        steps=sample.sample_steps,
        cfg_scale=sample.guidance.txt_cfg,
        sampling_method=sample.sample_method,
        scheduler=sample.scheduler,
        seed=request.seed,
        batch_count=request.batch_count,
        clip_skip=request.clip_skip,
        strength=request.strength,
        lora=[JobLora(lora.path, lora.multiplier) for lora in request.lora] or UNSET,
        hires_scale=request.hires.scale if request.hires.enabled else UNSET,
    )


def _problem(job: Job) -> RestProblem | None:
    return None if job.error is None else RestProblem(job.error.code, job.error.message)


def _outputs(job: Job) -> list[JobOutputImage]:
    if job.status != "completed" or job.result is None:
        return []
    return [
        JobOutputImage(
            index=ref.index,
            filename=ref.filename,
            url=output_url(job.id, ref.filename),
            thumbnail_url=output_url(job.id, ref.filename, thumb=True),
            width=ref.width,
            height=ref.height,
            seed=ref.seed,
        )
        for ref in job.result.images
    ]


def job_view(job: Job, position: int, now: float | None = None, *, listed: bool = False) -> RestJob:
    """The spec's job document (``GET /api/queue/job/{id}``); ``listed``: its queue listing
    entry, the prompts shortened (:func:`shorten`)."""
    t = timing(job, time.time() if now is None else now)
    request = job.request
    prompt = request.prompt if request is not None else ""
    negative = request.negative_prompt if request is not None else ""
    prompt_cut = negative_cut = False
    if listed:
        prompt, prompt_cut = shorten(prompt)
        negative, negative_cut = shorten(negative)
    return RestJob(
        id=job.id,
        job_id=job.id,
        type=JOB_TYPES.get(job.kind, job.kind),
        status=status_name(job.status),
        owner=job.owner,
        family=job.family,
        model=job.model,
        prompt=prompt,
        negative_prompt=negative,
        queued_time=int(job.created),
        start_time=_ts(job.started),
        end_time=_ts(job.completed),
        position=position,
        progress=t.progress,
        current_step=t.current_step,
        total_steps=t.total_steps,
        phase=t.phase,
        time_elapsed=t.time_elapsed,
        time_remaining=t.time_remaining,
        speed=t.speed,
        parameters=_parameters(job),
        outputs=_outputs(job),
        model_files=list(job.result.files) if job.result is not None else [],
        error=_problem(job),
        model_presets=list(job.result.presets) if job.result is not None else [],
        prompt_truncated=prompt_cut,
        negative_prompt_truncated=negative_cut,
    )


def queue_state(
    snapshot: QueueSnapshot, finished: list[Job], principal: Principal, now: float | None = None
) -> QueueState:
    """The queue as ``principal`` may see it: live jobs in run order (from one snapshot), then
    the ``finished`` ones."""
    now = time.time() if now is None else now
    live = [job for job in snapshot.jobs if principal.may_see(job.owner)]
    order = {job_id: i for i, job_id in enumerate(snapshot.queued_ids, start=1)}
    current = snapshot.current
    return QueueState(
        size=len(snapshot.queued),
        active_generations=0 if current is None else 1,
        running=True,
        current_job=current.id
        if current is not None and principal.may_see(current.owner)
        else None,
        jobs=[job_view(job, order.get(job.id, 0), now, listed=True) for job in live + finished],
    )


def queued_reply(
    job: Job,
    position: int,
    message: str = "Generation request queued successfully",
    warnings: list[str] | None = None,
) -> QueuedReply:
    """The answer to every ``POST /api/generate/*``: the job id is the request id."""
    return QueuedReply(
        request_id=job.id,
        job_id=job.id,
        status="queued",
        position=position,
        message=message,
        status_url=f"/api/queue/job/{job.id}",
        warnings=warnings or None,
    )


# -- /ws -------------------------------------------------------------------------------------


def preview_url(job_id: str, step: int) -> str:
    """The running job's live preview; ``step`` in the query makes each one a new URL."""
    return f"/api/queue/job/{job_id}/preview?step={step}"


def ws_job_update(job: Job, now: float | None = None) -> WsJobUpdate:
    """``data`` of a WebSocket ``job_update`` message."""
    t = timing(job, time.time() if now is None else now)
    outputs = None
    if job.status == "completed" and job.result is not None:
        outputs = [output_url(job.id, ref.filename) for ref in job.result.images]
    preview = None
    if job.status == "generating" and job.progress.preview_step > 0:
        preview = preview_url(job.id, job.progress.preview_step)
    return WsJobUpdate(
        job_id=job.id,
        status=status_name(job.status),
        progress=t.progress,
        current_step=t.current_step,
        total_steps=t.total_steps,
        phase=t.phase,
        time_elapsed=t.time_elapsed,
        time_remaining=t.time_remaining,
        speed=t.speed,
        outputs=outputs,
        preview_url=preview,
        error=_problem(job),
    )


def ws_queue_update(snapshot: QueueSnapshot, principal: Principal) -> WsQueueUpdate:
    """``data`` of a ``queue_update``: the queue from one snapshot, jobs ``principal`` may see."""
    visible = {job.id for job in snapshot.jobs if principal.may_see(job.owner)}
    current = snapshot.current
    return WsQueueUpdate(
        queue_size=len(snapshot.queued),
        active_generations=0 if current is None else 1,
        current_job=current.id if current is not None and current.id in visible else None,
        jobs=[
            WsQueuedJob(job_id, position)
            for position, job_id in enumerate(snapshot.queued_ids, start=1)
            if job_id in visible
        ],
    )


def ws_message(kind: str, data: WsData, now: float | None = None) -> WsMessage:
    """A WebSocket message: ``{"type", "data", "timestamp"}`` (timestamp in Unix ms)."""
    return WsMessage(kind, data, int((time.time() if now is None else now) * 1000))
