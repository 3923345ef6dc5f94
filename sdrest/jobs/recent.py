"""Finished jobs kept in memory: the newest ones, bounded by count and by an estimate of bytes.

The store keeps every job; memory keeps the recent ones so that a poll of a job that has just
ended needs no store read, without letting long prompts grow the process without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import msgspec

from sdrest.schemas import Job, JobError, JobResult, JobStatus

RECENT_COUNT = 256
"""At most this many finished jobs are kept in memory (the store keeps them all)..."""
RECENT_BYTES = 32 * 1024 * 1024
"""...and at most about this many bytes of them (:func:`job_size`): long prompts count."""
_JOB_OVERHEAD = 2048
"""Bytes of a finished job's record besides its texts (a rough measure, for :func:`job_size`)."""


def job_size(job: Job) -> int:
    """An estimate of the memory a finished job holds: a fixed overhead plus its variable parts
    (prompts, infotexts, messages: one byte a character; every other field is small)."""
    size = _JOB_OVERHEAD
    request = job.request
    if request is not None:
        size += len(request.prompt) + len(request.negative_prompt)
        size += len(request.cache_option) + len(request.scm_mask)
        size += 16 * len(request.sample_params.custom_sigmas)
        size += sum(64 + len(lora.path) for lora in request.lora)
        size += sum(len(image) for image in request.ref_images)  # none once finished
    if job.upscale is not None:
        size += len(job.upscale.image)
    if job.result is not None:
        size += sum(len(text) for text in job.result.infotexts)
        size += sum(64 + len(ref.filename) for ref in job.result.images)
        size += sum(len(name) for name in (*job.result.files, *job.result.presets))
    if job.error is not None:
        size += len(job.error.message)
    return size


def mark_ended(
    job: Job, status: JobStatus, result: JobResult | None, error: JobError | None
) -> float:
    """Stamp a job's end on its record (returns its end time), and slim the record for memory:
    the store keeps the whole request, memory keeps no megabytes of base64 per job."""
    job.status = status
    job.completed = ended = time.time()
    job.result, job.error = result, error
    if job.request is not None:
        job.request = job.request.without_images()
    if job.upscale is not None:
        job.upscale = msgspec.structs.replace(job.upscale, image="")
    if status == "completed":
        job.progress = msgspec.structs.replace(job.progress, phase="done", step=job.progress.steps)
    return ended


class RecentJobs:
    """Finished jobs with their :func:`job_size`, oldest first."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, tuple[Job, int]] = OrderedDict()
        self._bytes = 0

    def get(self, job_id: str) -> Job | None:
        """The kept job (the record itself: the caller copies it), or None."""
        kept = self._jobs.get(job_id)
        return kept[0] if kept is not None else None

    def forget(self, job_id: str) -> None:
        """Drop a job (it expired, or was deleted)."""
        kept = self._jobs.pop(job_id, None)
        if kept is not None:
            self._bytes -= kept[1]

    @property
    def usage(self) -> tuple[int, int]:
        """(count, estimated bytes) of the kept jobs."""
        return len(self._jobs), self._bytes

    def remember(self, job: Job, *, limit: int, bytes_limit: int) -> None:
        """Keep ``job``, the oldest dropped past ``limit`` jobs or ``bytes_limit`` bytes (a job
        bigger than the byte bound alone is not kept: the store has it)."""
        self.forget(job.id)
        size = job_size(job)
        self._jobs[job.id] = (job, size)
        self._bytes += size
        while self._jobs and (len(self._jobs) > limit or self._bytes > bytes_limit):
            _, (_, dropped) = self._jobs.popitem(last=False)
            self._bytes -= dropped
