"""The /api answers as typed Structs (encoded by msgspec, documented in /openapi.json): errors,
jobs, the queue and the /ws messages (the /api/models answers are in
:mod:`sdrest.api.rest.model_responses`).

Field order is the wire order. Fields that are absent from an answer unless set default to None
with ``omit_defaults=True`` (or to ``UNSET`` where a null must still be sent). Names are
specific to this family: OpenAPI component names are shared by every family. Pure: no
constructor here reads anything; :mod:`sdrest.api.rest.views` and
:mod:`sdrest.api.rest.model_views` build them.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

# -- errors ----------------------------------------------------------------------------------


class RestErrorDetail(msgspec.Struct, omit_defaults=True):
    """What went wrong; ``field`` names the one input to blame, when there is one."""

    message: str
    code: str
    """The spec's UPPERCASE code (``MODEL_NOT_FOUND``, ``VALIDATION_ERROR``...)."""
    status_code: int
    request_id: str
    timestamp: int
    field: str | None = None


class RestError(msgspec.Struct):
    """Every /api error: ``{"error": {"message", "code", "status_code", "request_id",
    "timestamp", "field"?}}``."""

    error: RestErrorDetail


# -- jobs and the queue ----------------------------------------------------------------------


class JobOutputImage(msgspec.Struct):
    """One output image of a completed job, with its public URLs."""

    index: int
    filename: str
    url: str
    thumbnail_url: str
    width: int
    height: int
    seed: int


class RestProblem(msgspec.Struct):
    """Why a job failed or was cancelled, or why a batch item failed."""

    code: str
    message: str


class JobLora(msgspec.Struct):
    """One LoRA of a generation: its name or path, and its weight."""

    path: str
    multiplier: float


class JobParameters(msgspec.Struct):
    """What the job was asked to do: generation settings, upscale settings, or nothing (a
    conversion answers ``{}``)."""

    width: int | UnsetType = UNSET
    height: int | UnsetType = UNSET
    steps: int | UnsetType = UNSET
    cfg_scale: float | UnsetType = UNSET
    sampling_method: str | UnsetType | None = UNSET
    scheduler: str | UnsetType | None = UNSET
    seed: int | UnsetType = UNSET
    batch_count: int | UnsetType = UNSET
    clip_skip: int | UnsetType = UNSET
    strength: float | UnsetType = UNSET
    esrgan_model: str | UnsetType = UNSET
    repeats: int | UnsetType = UNSET
    lora: list[JobLora] | UnsetType = UNSET
    """The LoRAs applied, with their weights (absent when none)."""
    hires_scale: float | UnsetType = UNSET
    """The hires fix's scale (absent when the hires fix was off)."""


class RestJob(msgspec.Struct):
    """The spec's job document (queue listing and ``GET /api/queue/job/{id}``); times in Unix
    seconds, elapsed and remaining in milliseconds, speed in steps per second. The listing
    carries the prompts shortened (``prompt_truncated``), the job's own document whole."""

    id: str
    job_id: str
    type: str
    status: str
    owner: str
    family: str
    model: str
    prompt: str
    negative_prompt: str
    queued_time: int
    start_time: int | None
    end_time: int | None
    position: int
    progress: float
    current_step: int
    total_steps: int
    phase: str
    time_elapsed: int
    time_remaining: int | None
    speed: float
    parameters: JobParameters
    outputs: list[JobOutputImage]
    model_files: list[str]
    error: RestProblem | None
    model_presets: list[str] = msgspec.field(default_factory=list)
    """Presets a download job added."""
    prompt_truncated: bool = False
    """In the queue listing, ``prompt`` is cut to ``LISTED_PROMPT_CHARS`` characters ending
    in ``…``; the job's own document has it whole."""
    negative_prompt_truncated: bool = False
    """Likewise for ``negative_prompt``."""


class JobReply(msgspec.Struct):
    """``GET /api/queue/job/{job_id}``."""

    job: RestJob


class QueueState(msgspec.Struct):
    """The queue as the caller may see it."""

    size: int
    active_generations: int
    running: bool
    current_job: str | None
    jobs: list[RestJob]


class QueueStatus(msgspec.Struct):
    """``GET /api/queue/status``."""

    queue: QueueState


class QueuedReply(msgspec.Struct, omit_defaults=True):
    """The 202 of every ``POST /api/generate/*``: the job id is the request id."""

    request_id: str
    job_id: str
    status: str
    position: int
    message: str
    status_url: str
    warnings: list[str] | None = None
    """Request fields that were ignored (only when there are some)."""


class CancelReply(msgspec.Struct):
    """``POST /api/queue/cancel``."""

    status: str
    message: str
    job_id: str
    job_status: str


class ClearReply(msgspec.Struct):
    """``POST /api/queue/clear``."""

    status: str
    message: str
    cancelled_count: int
    cancelled: list[str]


class DeleteReply(msgspec.Struct):
    """``DELETE /api/queue/job/{job_id}``."""

    status: str
    message: str
    job_id: str


class HistoryReply(msgspec.Struct):
    """``GET /api/queue/history``: one page of the caller's finished jobs, newest first."""

    jobs: list[RestJob]
    limit: int
    offset: int
    has_more: bool
    """Whether a page follows (``offset + limit``)."""


# -- the /ws messages ------------------------------------------------------------------------


class WsJobUpdate(msgspec.Struct, omit_defaults=True):
    """``data`` of a ``job_update`` message."""

    job_id: str
    status: str
    progress: float
    current_step: int
    total_steps: int
    phase: str
    time_elapsed: int
    time_remaining: int | None
    speed: float
    outputs: list[str] | None = None
    """Download URLs, once completed."""
    preview_url: str | None = None
    """The running job's latest live preview."""
    error: RestProblem | None = None


class WsQueuedJob(msgspec.Struct):
    """A waiting job the client may see."""

    job_id: str
    position: int


class WsQueueUpdate(msgspec.Struct):
    """``data`` of a ``queue_update`` message."""

    queue_size: int
    active_generations: int
    current_job: str | None
    jobs: list[WsQueuedJob]


class WsSystemUpdate(msgspec.Struct):
    """``data`` of a ``system_update`` message."""

    loaded_model: str | None
    model_loaded: bool
    available_models: int


class WsConnected(msgspec.Struct):
    """``data`` of the ``connected`` greeting."""

    username: str
    role: str


class WsEmpty(msgspec.Struct):
    """``data`` of a ``pong``."""


class WsJobDeleted(msgspec.Struct):
    """``data`` of a ``job_deleted`` message: a finished job is gone (``DELETE
    /api/queue/job/{id}``)."""

    job_id: str


WsData = WsJobUpdate | WsQueueUpdate | WsSystemUpdate | WsConnected | WsEmpty | WsJobDeleted


class WsMessage(msgspec.Struct):
    """Every /ws message: ``{"type", "data", "timestamp"}`` (timestamp in Unix ms)."""

    type: str
    data: WsData
    timestamp: int
