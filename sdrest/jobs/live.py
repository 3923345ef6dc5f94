"""What the runner knows of unfinished jobs, and what readers may see of it.

:class:`LiveJobs` holds the live records (one :class:`LiveJob` per unfinished job), the queue
and lanes they wait in, the finished jobs kept in memory and the previews, and answers the
read-only questions (a job, its position, the current and queued jobs, waiting for one). Every
job it hands out is a copy. :class:`sdrest.jobs.runner.JobRunner` builds on it and is the only
one that changes the records.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import msgspec
from PIL import Image

from sdrest.jobs.downloads import DownloadLane, DownloadPlan
from sdrest.jobs.execute import Plan
from sdrest.jobs.previews import PreviewCache
from sdrest.jobs.queue import JobQueue
from sdrest.jobs.recent import RECENT_BYTES, RECENT_COUNT, RecentJobs
from sdrest.jobs.write_behind import WriteBehind
from sdrest.schemas import ImgGenRequest, Job, JobError


@dataclass
class LiveJob:
    """One unfinished job: its record (mutated only by the runner), its plan, the event its
    waiters wait on, and the error it ends with once a stop was asked for."""

    job: Job
    plan: Plan | DownloadPlan
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stop: JobError | None = None
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the store holds the job (or refused it): the consumer runs nothing before."""
    ran: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the engine is done with the job: it ended, or only its files are being written."""
    solo: bool = False
    """Never coalesced again: it was in a call that crashed (see JobRunner._run_group)."""

    def stopped(self) -> bool:
        """Whether a stop was asked for (read by the running job at each step or chunk)."""
        return self.stop is not None


def copy_job(job: Job) -> Job:
    """A snapshot for readers: the runner replaces a job's fields, never mutates them in place
    (they are frozen Structs), so a shallow copy never changes under its holder."""
    return msgspec.structs.replace(job)


class LiveJobs:
    """The live job records, and the read-only view of them."""

    _writes: WriteBehind
    """Set by the runner: the job whose images are being written is still current."""

    def __init__(self, capacity: int) -> None:
        self._queue = JobQueue(capacity)
        self._live: dict[str, LiveJob] = {}
        self._recent = RecentJobs()
        self.recent_limit = RECENT_COUNT
        self.recent_bytes_limit = RECENT_BYTES
        self._current: str | None = None
        self._running: tuple[str, ...] = ()
        """The jobs of the engine's current call (several when coalesced)."""
        self._downloads = DownloadLane(capacity)
        """Model downloads: their own lane, beside the engine's queue (see jobs/downloads.py)."""
        self._previews = PreviewCache()

    def live(self, job_id: str) -> Job | None:
        """An unfinished job, or one finished recently, from memory (a copy); None otherwise."""
        live = self._live.get(job_id)
        if live is not None:
            return copy_job(live.job)
        recent = self._recent.get(job_id)
        return copy_job(recent) if recent is not None else None

    def forget(self, job_id: str) -> None:
        """Drop a finished job from memory (it expired, or was deleted)."""
        self._recent.forget(job_id)

    @property
    def recent_usage(self) -> tuple[int, int]:
        """(count, estimated bytes) of the finished jobs kept in memory."""
        return self._recent.usage

    def queue_position(self, job_id: str) -> int:
        """1-based queue position (in the download lane for a download); 0 when not queued."""
        return self._queue.position(job_id) or self._downloads.queue.position(job_id)

    def queued_ids(self) -> list[str]:
        """Waiting jobs, next first."""
        return self._queue.ids()

    @property
    def current_job(self) -> Job | None:
        """The job the engine is working on (a copy); between jobs, the one whose images are
        still being written."""
        current = self._current or self._writes.job_id
        live = self._live.get(current) if current else None
        return copy_job(live.job) if live is not None else None

    def queued_jobs(self) -> list[Job]:
        """The queued jobs in run order (copies)."""
        ids = self.queued_ids()
        return [
            copy_job(live.job) for job_id in ids if (live := self._live.get(job_id)) is not None
        ]

    def download_jobs(self) -> list[Job]:
        """The running download, then the waiting ones (copies)."""
        ids = self._downloads.ids()
        return [
            copy_job(live.job) for job_id in ids if (live := self._live.get(job_id)) is not None
        ]

    def _lane(self, plan: Plan | DownloadPlan) -> JobQueue:
        return self._downloads.queue if isinstance(plan, DownloadPlan) else self._queue

    def stop_requested(self, job_id: str) -> bool:
        """Whether a stop was asked for this (generating) job."""
        live = self._live.get(job_id)
        return live is not None and live.stop is not None

    def preview(self, job_id: str) -> tuple[int, Image.Image] | None:
        """(step, image) of the running job's latest live preview; None when there is none."""
        return self._previews.get(job_id)

    async def preview_png(self, job: Job) -> tuple[int, bytes] | None:
        """(step, PNG) of a running job's latest live preview, scaled to the job's aspect."""
        request = job.request or ImgGenRequest()
        return await self._previews.png(job.id, request.width, request.height)

    async def wait_engine_free(self, job_id: str) -> None:
        """Wait until the engine no longer works on the job (at once for one that is not live):
        it ended, or its images are being written while the engine may take the next job."""
        live = self._live.get(job_id)
        if live is not None:
            await live.ran.wait()

    async def wait_done(self, job_id: str, timeout: float | None) -> None:
        """Wait until the job has finished (at once for one that is not live)."""
        live = self._live.get(job_id)
        if live is not None:
            await asyncio.wait_for(live.done.wait(), timeout)

    def _record(self, job: Job) -> Job:
        """The runner's own record of ``job`` (callers may hold a copy), or ``job`` itself when
        it is not live (a stored job being recovered or failed)."""
        live = self._live.get(job.id)
        return live.job if live is not None else job

    def _drop(self, job_id: str) -> LiveJob | None:
        self._previews.forget(job_id)
        live = self._live.pop(job_id, None)
        if live is not None:
            live.ran.set()  # ended (perhaps before it ran): nothing of it is left to the engine
        return live
