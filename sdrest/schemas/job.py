"""Job records: what the queue, the store and every family's status endpoint share."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

import msgspec

from sdrest.schemas.request import ImgGenRequest

JobStatus = Literal["queued", "generating", "completed", "failed", "cancelled"]
JobKind = Literal["img_gen", "upscale", "convert"]
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
    """Model files a convert job wrote, relative to the models folder."""


class Progress(msgspec.Struct, frozen=True):
    """Native progress: ``phase`` is loading, sampling, decoding or upscaling."""

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
    output_format: str = "png"
    output_compression: int = 100


class ConvertRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A model conversion job: quantize ``model`` (a registry file) into a GGUF file."""

    model: str
    weight_type: str
    output_path: str
    """Relative to the models folder."""


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
    """A freshly accepted job; ``payload`` is its request (``request``, ``upscale`` or
    ``convert``)."""
    return Job(
        id=new_job_id(),
        kind=kind,
        created=time.time(),
        owner=owner,
        family=family,
        model=model,
        **payload,
    )
