"""Job records: what the queue, the store and every family's status endpoint share."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

import msgspec

from sdrest.errors import InvalidRequestError
from sdrest.schemas.request import ImgGenRequest

JobStatus = Literal["queued", "generating", "completed", "failed", "cancelled"]
JobKind = Literal["img_gen", "upscale", "convert", "download"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class JobError(msgspec.Struct, frozen=True):
    """Why a job failed or was cancelled; ``code`` is stable, ``message`` is for people."""

    code: str
    message: str


class ImageRef(msgspec.Struct, frozen=True):
    """One output image, stored as ``{output_dir}/{job_id}/{filename}``."""

    index: int
    filename: str
    width: int
    height: int
    seed: int


class JobResult(msgspec.Struct, frozen=True):
    """What a completed job produced."""

    output_format: str
    images: list[ImageRef]
    infotexts: list[str] = msgspec.field(default_factory=list)
    files: list[str] = msgspec.field(default_factory=list)
    """Model files a convert or download job wrote, relative to the models folder."""
    presets: list[str] = msgspec.field(default_factory=list)
    """Presets a download job added (a model made of the files it fetched)."""


class Progress(msgspec.Struct, frozen=True):
    """Native progress: ``phase`` is loading, sampling, decoding or upscaling; a download job's
    phase is ``downloading`` and its ``step``/``steps`` count bytes (done/total)."""

    phase: str = "queued"
    step: int = 0
    steps: int = 0
    seconds_per_step: float = 0.0
    preview_step: int = 0
    """The step of the latest live preview (0: none yet)."""

    @property
    def fraction(self) -> float:
        """step / steps, 0..1."""
        return min(1.0, self.step / self.steps) if self.steps > 0 else 0.0


class UpscaleRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An ESRGAN upscale job: the image (base64) and the registry upscaler name."""

    image: str
    upscaler: str
    repeats: int = 1
    """ESRGAN passes, 1..4 (checked on construction, whoever builds the request)."""
    output_format: str = "png"
    output_compression: int = 100

    def __post_init__(self) -> None:
        """400 for a repeat count out of range (the one check of it)."""
        if not 1 <= self.repeats <= 4:
            raise InvalidRequestError("repeats must be between 1 and 4", field="repeats")


class ConvertRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A model conversion job: quantize ``model`` (a registry file) into a GGUF file."""

    model: str
    weight_type: str
    output_path: str | None = None
    """Relative to the models folder; None: ``<source stem>.<weight type>.gguf`` beside the
    source. A queued job records the path planning chose."""


class DownloadRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A model download job: files of a Hugging Face hub repository into the models folder.

    ``files`` empty: the repository's one weight file (several are refused unless
    ``all_files``). No token is stored: the server's own (``HF_TOKEN``, ``hf auth login``) is
    used.
    """

    repo: str
    files: list[str] = msgspec.field(default_factory=list)
    all_files: bool = False
    revision: str | None = None


class Job(msgspec.Struct, kw_only=True):
    """One accepted job, whichever family sent it. Timestamps are Unix seconds (float)."""

    id: str
    kind: JobKind
    status: JobStatus = "queued"
    created: float
    started: float | None = None
    completed: float | None = None
    owner: str = ""
    family: str = "sdcpp"
    model: str = ""
    request: ImgGenRequest | None = None
    upscale: UpscaleRequest | None = None
    convert: ConvertRequest | None = None
    download: DownloadRequest | None = None
    result: JobResult | None = None
    error: JobError | None = None
    progress: Progress = msgspec.field(default_factory=Progress)
    expired: bool = False
    attempts: int = 0
    """How many times the job started generating (a restart mid-job retries it once)."""

    @property
    def finished(self) -> bool:
        """Completed, failed or cancelled."""
        return self.status in FINISHED


def new_job_id() -> str:
    """Sortable by time, unguessable by the random part (outputs are served by id)."""
    return f"job_{time.time_ns() // 1_000_000:x}_{secrets.token_hex(10)}"


def new_job(kind: JobKind, owner: str, family: str, model: str, **payload: Any) -> Job:
    """A freshly accepted job; ``payload`` is its request (``request``, ``upscale``,
    ``convert`` or ``download``)."""
    return Job(
        id=new_job_id(),
        kind=kind,
        created=time.time(),
        owner=owner,
        family=family,
        model=model,
        **payload,
    )


class Timing(msgspec.Struct, frozen=True):
    """How far a job is, in one family-neutral form (families rename and scale only).

    ``step``/``steps`` count sampling steps (or upscaling tiles) only: while the model loads the
    library counts tensors, which would make a bar run to 100% and back to 0.
    """

    fraction: float
    """0..1; 1 once decoding has begun and for a completed job."""
    step: int
    steps: int
    """Steps of the running phase; before sampling starts, the steps the request asked for."""
    elapsed: float
    """Seconds since the job started (to its end once finished); 0 while queued."""
    eta: float | None
    """Seconds left: from the measured step time while stepping, else extrapolated from the
    elapsed time once some progress is known; 0 once finished; None when nothing is known."""
    seconds_per_step: float
    stepping: bool
    """Whether the job is past loading (steps and speed mean something)."""


_DONE_PHASES = frozenset({"decoding", "encoding", "done"})


def job_timing(job: Job, now: float) -> Timing:
    """THE progress arithmetic every family's progress view reads (``now``: ``time.time()``)."""
    progress = job.progress
    elapsed = max(0.0, (job.completed or now) - job.started) if job.started is not None else 0.0
    stepping = job.status != "queued" and progress.phase not in ("queued", "loading")
    planned = job.request.sample_params.sample_steps if job.request is not None else 0
    step, steps = (progress.step, progress.steps) if stepping else (0, planned)
    if job.status == "completed" or (stepping and progress.phase in _DONE_PHASES):
        fraction = 1.0
    else:
        fraction = min(1.0, step / steps) if stepping and steps else 0.0
    eta: float | None = None
    if job.finished:
        eta = 0.0
    elif job.status == "generating" and stepping:
        if progress.seconds_per_step > 0 and steps:
            eta = progress.seconds_per_step * max(0, steps - step)
        elif 0 < fraction < 1:
            eta = elapsed / fraction - elapsed
    return Timing(
        fraction=fraction,
        step=step,
        steps=steps,
        elapsed=elapsed,
        eta=eta,
        seconds_per_step=progress.seconds_per_step if stepping else 0.0,
        stepping=stepping,
    )


class QueueSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The queue at one instant: what every queue view reads (copies, never live records)."""

    current: Job | None
    """The job the engine is working on."""
    queued: list[Job]
    """Waiting jobs, next first."""
    loaded_models: tuple[str, ...] = ()
    downloads: list[Job] = msgspec.field(default_factory=list)
    """Model downloads (running first, then waiting): their own lane, beside the engine's queue."""

    @property
    def jobs(self) -> list[Job]:
        """The running job, then the queued ones in run order, then the downloads."""
        return ([self.current] if self.current is not None else []) + self.queued + self.downloads

    @property
    def queued_ids(self) -> list[str]:
        """Ids of the waiting jobs, next first."""
        return [job.id for job in self.queued]

    def position(self, job_id: str) -> int:
        """1-based queue position; 0 when not queued."""
        for index, job in enumerate(self.queued, start=1):
            if job.id == job_id:
                return index
        return 0
