"""Model downloads as jobs (kind ``download``): the plan, and running one in a thread.

Downloads have their own lane in :class:`~sdrest.jobs.runner.JobRunner`, beside the engine's
FIFO queue: a download takes minutes of network and disk and no native call, so it must never
hold a generation up (nor wait behind a long queue of them). The lane runs one download at a time
(several at once would only share the bandwidth and the disk) in a worker thread; progress is
bytes done/total on the job (``Progress.step``/``steps``, phase ``downloading``), published like
a generation's steps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sdrest.errors import EngineAbortedError
from sdrest.jobs.queue import JobQueue
from sdrest.models.pull import PullOptions, PullOutcome, PullStopped, RepoRef
from sdrest.schemas import Job, JobResult, Progress

PROGRESS_INTERVAL = 0.25
"""Seconds between two progress events of a download (the last one is always sent)."""


@dataclass(frozen=True)
class DownloadPlan:
    """What a download job fetches, and where to."""

    ref: RepoRef
    options: PullOptions


async def run_download(
    plan: DownloadPlan,
    on_progress: Callable[[Progress], None],
    stopped: Callable[[], bool],
) -> PullOutcome:
    """Pull in a worker thread; progress is handed to the event loop. A stop (the job's, or
    this task being cancelled at shutdown) ends the transfer at its next chunk and raises
    :class:`EngineAbortedError` (the runner ends the job as cancelled)."""
    loop = asyncio.get_running_loop()
    last = 0.0
    abandoned = False

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done < total and now - last < PROGRESS_INTERVAL:
            return
        last = now
        loop.call_soon_threadsafe(on_progress, Progress("downloading", done, total))

    def should_stop() -> bool:
        return abandoned or stopped()

    from sdrest.models.hub import pull  # huggingface_hub is imported on first use

    try:
        return await asyncio.to_thread(pull, plan.ref, plan.options, progress, should_stop)
    except PullStopped:
        raise EngineAbortedError("the download was stopped") from None
    except asyncio.CancelledError:
        abandoned = True  # the thread stops at its next chunk
        raise


class DownloadLane:
    """The download lane: its own FIFO of job ids, served one download at a time."""

    def __init__(self, capacity: int) -> None:
        self.queue = JobQueue(capacity)
        self.running: str | None = None
        """The download being run, if any."""

    def ids(self) -> list[str]:
        """The running download, then the waiting ones."""
        return ([self.running] if self.running else []) + self.queue.ids()

    async def serve(self, run: Callable[[str], Awaitable[None]]) -> None:
        """Hand each queued job id to ``run``, one at a time, forever."""
        while True:
            item = await self.queue.pop()
            if not isinstance(item, str):
                continue  # the lane holds no engine operations
            self.running = item
            try:
                await run(item)
            finally:
                self.running = None


async def download_job(
    job: Job,
    plan: DownloadPlan,
    publish: Callable[[Job], None],
    stopped: Callable[[], bool],
    after_download: Callable[[PullOutcome | None], Awaitable[None]] | None,
) -> JobResult:
    """Run a download job's pull, publishing its progress while it is ``generating``; the
    result names the files placed and the preset written. ``after_download`` runs whatever
    happens (files placed before a failure show in the registry too)."""

    def on_progress(progress: Progress) -> None:
        if job.status == "generating":
            job.progress = progress
            publish(job)

    outcome: PullOutcome | None = None
    try:
        outcome = await run_download(plan, on_progress, stopped)
    finally:
        if after_download is not None:
            await after_download(outcome)
    presets = [outcome.preset] if outcome.preset else []
    return JobResult("", [], files=outcome.files(plan.options.models_dir), presets=presets)
