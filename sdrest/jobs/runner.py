"""The live side of the job system: the queue, the one consumer, and the state of unfinished jobs.

:class:`JobRunner` runs jobs one at a time in FIFO order on the engine, with model loads and
unloads waiting their turn in the same queue; it publishes every state change and progress step
on the event bus and records finished jobs in the store. The service resolves ids (404, 410) and
plans requests; the runner only works on :class:`Job` objects it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from PIL import Image

from sdrest.engine.base import ConvertPlan, Engine
from sdrest.errors import ConflictError, EngineAbortedError, SdrestError
from sdrest.jobs.downloads import DownloadPlan, run_download
from sdrest.jobs.events import EventBus, JobEvent
from sdrest.jobs.execute import PendingOutput, Plan, run_on_engine
from sdrest.jobs.previews import PreviewCache
from sdrest.jobs.queue import JobQueue, QueuedOperation
from sdrest.jobs.store import JobStoreBase
from sdrest.logs import job_context
from sdrest.models.pull import PullOutcome
from sdrest.schemas import ImgGenRequest, Job, JobError, JobResult, JobStatus, Progress

logger = logging.getLogger(__name__)

_RECENT_FINISHED = 256
"""At most this many finished jobs are kept in memory (the store keeps them all)..."""
_RECENT_BYTES = 32 * 1024 * 1024
"""...and at most about this many bytes of them (:func:`job_size`): long prompts count."""
_JOB_OVERHEAD = 2048
"""Bytes of a finished job's record besides its texts (a rough measure, for :func:`job_size`)."""
_STOP_WAIT = 5.0
"""Seconds a stop waits for the stopped job to be recorded as cancelled."""


@dataclass
class _Live:
    """One unfinished job: its record (mutated only by the runner), its plan, the event its
    waiters wait on, and the error it ends with once a stop was asked for."""

    job: Job
    plan: Plan | DownloadPlan
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stop: JobError | None = None
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the store holds the job (or refused it): the consumer runs nothing before."""


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


def _copy(job: Job) -> Job:
    """A snapshot for readers: the runner replaces a job's fields, never mutates them in place
    (they are frozen Structs), so a shallow copy never changes under its holder."""
    return msgspec.structs.replace(job)


class JobRunner:
    """Queue, consumer and live job state over one engine (attached when the service starts).

    Every job it hands out is a copy: only the runner changes its own records.
    """

    def __init__(
        self,
        *,
        capacity: int,
        events: EventBus,
        store: JobStoreBase,
        output_dir: Path,
        models_dir: Path,
        idle_unload: float,
        after_convert: Callable[[], Awaitable[None]],
        after_download: Callable[[PullOutcome | None], Awaitable[None]] | None = None,
    ) -> None:
        self.events = events
        self.store = store
        self.output_dir = output_dir
        self.idle_unload = idle_unload
        self._models_dir = models_dir
        self._after_convert = after_convert
        self._after_download = after_download
        self._engine: Engine | None = None
        self._queue = JobQueue(capacity)
        self._live: dict[str, _Live] = {}
        self._recent: OrderedDict[str, tuple[Job, int]] = OrderedDict()
        """Finished jobs (with :func:`job_size`), oldest first, bounded by count and bytes."""
        self._recent_bytes = 0
        self.recent_limit = _RECENT_FINISHED
        self.recent_bytes_limit = _RECENT_BYTES
        self._current: str | None = None
        self._downloads = JobQueue(capacity)
        """Model downloads: their own lane, beside the engine's queue (see jobs/downloads.py)."""
        self._downloading: str | None = None
        self._previews = PreviewCache()
        self._background: set[asyncio.Task[None]] = set()
        self._writing: asyncio.Task[None] | None = None
        """Encodes and writes the last job's images while the engine runs the next job."""
        self._writing_id: str | None = None
        """The job whose images are being written (still ``generating``, phase ``encoding``)."""

    @property
    def engine(self) -> Engine:
        """The engine jobs run on."""
        if self._engine is None:
            raise RuntimeError("service not started")
        return self._engine

    def attach(self, engine: Engine) -> None:
        """Run jobs on ``engine`` from now on."""
        self._engine = engine

    # -- what is live ----------------------------------------------------------------------

    def live(self, job_id: str) -> Job | None:
        """An unfinished job, or one finished recently, from memory (a copy); None otherwise."""
        live = self._live.get(job_id)
        if live is not None:
            return _copy(live.job)
        recent = self._recent.get(job_id)
        return _copy(recent[0]) if recent is not None else None

    def forget(self, job_id: str) -> None:
        """Drop a finished job from memory (it expired, or was deleted)."""
        recent = self._recent.pop(job_id, None)
        if recent is not None:
            self._recent_bytes -= recent[1]

    @property
    def recent_usage(self) -> tuple[int, int]:
        """(count, estimated bytes) of the finished jobs kept in memory."""
        return len(self._recent), self._recent_bytes

    def _remember(self, job: Job) -> None:
        """Keep a finished job in memory, the oldest dropped past the count or byte bound (a
        job bigger than the byte bound alone is not kept: the store has it)."""
        self.forget(job.id)
        size = job_size(job)
        self._recent[job.id] = (job, size)
        self._recent_bytes += size
        while self._recent and (
            len(self._recent) > self.recent_limit or self._recent_bytes > self.recent_bytes_limit
        ):
            _, (_, dropped) = self._recent.popitem(last=False)
            self._recent_bytes -= dropped

    def queue_position(self, job_id: str) -> int:
        """1-based queue position (in the download lane for a download); 0 when not queued."""
        return self._queue.position(job_id) or self._downloads.position(job_id)

    def queued_ids(self) -> list[str]:
        """Waiting jobs, next first."""
        return self._queue.ids()

    @property
    def current_job(self) -> Job | None:
        """The job the engine is working on (a copy); between jobs, the one whose images are
        still being written."""
        current = self._current or self._writing_id
        live = self._live.get(current) if current else None
        return _copy(live.job) if live is not None else None

    def queued_jobs(self) -> list[Job]:
        """The queued jobs in run order (copies)."""
        ids = self.queued_ids()
        return [_copy(live.job) for job_id in ids if (live := self._live.get(job_id)) is not None]

    def download_jobs(self) -> list[Job]:
        """The running download, then the waiting ones (copies)."""
        ids = ([self._downloading] if self._downloading else []) + self._downloads.ids()
        return [_copy(live.job) for job_id in ids if (live := self._live.get(job_id)) is not None]

    def _lane(self, plan: Plan | DownloadPlan) -> JobQueue:
        return self._downloads if isinstance(plan, DownloadPlan) else self._queue

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

    async def wait_done(self, job_id: str, timeout: float | None) -> None:
        """Wait until the job has finished (at once for one that is not live)."""
        live = self._live.get(job_id)
        if live is not None:
            await asyncio.wait_for(live.done.wait(), timeout)

    # -- accepting and ending jobs -----------------------------------------------------------

    async def enqueue(
        self, job: Job, plan: Plan | DownloadPlan, *, recovered: bool = False
    ) -> Job:
        """Queue a job (a download in the download lane) and store it (a recovered one is
        stored already). Queue full: 429. The runner keeps ``job``; the caller gets a copy."""
        lane = self._lane(plan)
        lane.push(job.id, force=recovered)  # raises QueueFullError first: nothing stored
        live = self._live[job.id] = _Live(job, plan)
        # Published before the insert awaits: the consumer may take the job meanwhile (it then
        # waits for ``stored``), and a stream must never see "generating" before "queued".
        self._publish("state", job)
        if not recovered:
            try:
                await self.store.insert(job)
            except Exception:
                lane.remove(job.id)
                job.status = "failed"
                job.error = JobError("store_failed", "the job could not be stored")
                self._publish("state", job)
                self._drop(job.id)
                live.done.set()
                raise
            finally:
                live.stored.set()
        live.stored.set()
        return _copy(job)

    async def finish(
        self,
        job: Job,
        status: JobStatus,
        *,
        result: JobResult | None = None,
        error: JobError | None = None,
    ) -> None:
        """Record a job's end, publish it and wake whoever waits for it."""
        job = self._record(job)
        job.status = status
        job.completed = time.time()
        job.result, job.error = result, error
        if job.request is not None:
            # The store keeps the whole request; memory keeps no megabytes of base64 per job.
            job.request = job.request.without_images()
        if job.upscale is not None:
            job.upscale = msgspec.structs.replace(job.upscale, image="")
        if status == "completed":
            job.progress = msgspec.structs.replace(
                job.progress, phase="done", step=job.progress.steps
            )
        await self.store.update(job)
        live = self._drop(job.id)
        self._remember(job)
        self._publish("state", job)
        took = f" in {job.completed - job.started:.2f}s" if job.started is not None else ""
        detail = f": {error.code}: {error.message}" if error is not None else ""
        logger.info("job %s %s%s%s", job.id, status, took, detail, extra={"job_id": job.id})
        if live is not None:
            live.done.set()

    async def cancel(self, job: Job) -> Job:
        """Cancel a job: a queued one now; a generating one by stopping the engine (409 when
        the engine cannot). Returns the job once it has ended."""
        job = self._record(job)
        if job.finished:
            return _copy(job)
        if job.status == "generating":
            if job.kind != "download" and not self.engine.supports_abort:
                raise ConflictError("the job is already generating and cannot be cancelled")
            reason = JobError("cancelled", "job cancelled by client while generating")
            return await self._stop_generating(job, reason, wait=True)
        self._queue.remove(job.id) or self._downloads.remove(job.id)
        await self.finish(job, "cancelled", error=JobError("cancelled", "job cancelled by client"))
        return _copy(job)

    async def request_stop(self, job: Job, *, wait: bool = False) -> Job:
        """Stop a job whatever its state; a generating one ends as ``interrupted`` (at once
        when the engine can abort, else when its native call returns)."""
        job = self._record(job)
        if job.finished:
            return _copy(job)
        if job.status == "queued":
            return await self.cancel(job)
        reason = JobError("interrupted", "job stopped by client")
        return await self._stop_generating(job, reason, wait=wait)

    def request_stop_soon(self, job_id: str) -> None:
        """:meth:`request_stop` from code that may not await (a cancelled stream's cleanup)."""
        live = self._live.get(job_id)
        if live is None:
            return  # finished already: nothing to stop
        task = asyncio.get_running_loop().create_task(self._stop_quietly(live.job))
        self._background.add(task)  # a strong reference until it is done
        task.add_done_callback(self._background.discard)

    async def _stop_quietly(self, job: Job) -> None:
        with contextlib.suppress(SdrestError):
            await self.request_stop(job)

    async def _stop_generating(self, job: Job, reason: JobError, *, wait: bool) -> Job:
        live = self._live.get(job.id)
        if live is not None and live.stop is None:
            live.stop = reason
        self._publish("state", job)
        aborted = self.engine.supports_abort and self._current == job.id
        if aborted:
            await self.engine.abort()
        # Wait only for what ends promptly: an aborted generation, or a download (it stops at
        # its next chunk). An in-process native call runs to its end: do not wait for that.
        if wait and (aborted or job.id in (self._downloading, self._writing_id)):
            with contextlib.suppress(asyncio.TimeoutError):
                await self.wait_done(job.id, _STOP_WAIT)
        return _copy(job)

    async def between_jobs(self, operation: Callable[[], Awaitable[None]]) -> None:
        """Run an engine operation from the job queue, in FIFO order with the jobs."""
        queued = self._queue.push_operation(operation)
        try:
            await queued.done
        finally:  # the caller gave up while it waited: it never runs
            self._queue.remove(queued)

    # -- the consumer ----------------------------------------------------------------------

    async def consume(self) -> None:
        """Serve the queue forever (a task of the service)."""
        try:
            await self._consume_queue()
        finally:  # stopped: the job whose images are being written still completes
            if self._writing is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._writing)

    async def _consume_queue(self) -> None:
        while True:
            idle = self.idle_unload
            wait = idle if idle > 0 and self.engine.loaded_model is not None else None
            item = await self._queue.pop(timeout=wait)
            if item is None:
                logger.info("no work for %gs: freeing the loaded models", idle)
                try:
                    await self.engine.unload()
                except Exception:  # the next job loads its model again anyway
                    logger.exception("idle unload failed")
            elif isinstance(item, QueuedOperation):
                await item.run()
            else:
                await self._run_next(item)

    async def consume_downloads(self) -> None:
        """Serve the download lane forever (a task of the service), one download at a time."""
        while True:
            item = await self._downloads.pop()
            live = self._live.get(item) if isinstance(item, str) else None
            if live is None:
                continue
            self._downloading = live.job.id
            try:
                with job_context(live.job.id):
                    await self._run_live(live)
            finally:
                self._downloading = None

    async def _run_next(self, job_id: str) -> None:
        live = self._live.get(job_id)
        if live is None:
            return
        # Current from the moment it leaves the queue, so every snapshot shows it somewhere.
        self._current = job_id
        try:
            with job_context(job_id):
                await self._run_live(live)
        finally:
            self._current = None

    async def _run_live(self, live: _Live) -> None:
        job, job_id = live.job, live.job.id
        try:
            await live.stored.wait()  # a job the store refused is dropped meanwhile: skip it
            if self._live.get(job_id) is not live or job.status != "queued":
                return
            await self._run(live)
        except asyncio.CancelledError:
            raise
        except EngineAbortedError:
            reason = live.stop or JobError("cancelled", "job stopped")
            await self.finish(job, "cancelled", error=reason)
        except SdrestError as exc:
            await self.finish(job, "failed", error=JobError(exc.code, exc.message))
        except Exception as exc:  # never let one job kill the consumer
            logger.exception("job %s failed unexpectedly", job_id)
            await self.finish(job, "failed", error=JobError("internal_error", str(exc)))

    async def _run(self, live: _Live) -> None:
        job, plan = live.job, live.plan
        job.status, job.started = "generating", time.time()
        job.attempts += 1
        job.progress = Progress("downloading" if isinstance(plan, DownloadPlan) else "loading")
        await self.store.update(job)
        self._publish("state", job)
        logger.info("job %s started: %s on %s (%s)", job.id, job.kind, job.model, job.family)
        if isinstance(plan, DownloadPlan):
            await self._download(live, plan)
            return

        def on_progress(progress: Progress) -> None:
            if job.status == "generating":
                # The engine knows steps, not previews: keep the latest preview's step.
                job.progress = msgspec.structs.replace(
                    progress, preview_step=job.progress.preview_step
                )
                self._publish("progress", job)

        def on_preview(step: int, image: Image.Image) -> None:
            if job.status == "generating":
                self._previews.put(job.id, step, image)
                job.progress = msgspec.structs.replace(job.progress, preview_step=step)

        def on_encoding() -> None:
            job.progress = msgspec.structs.replace(job.progress, phase="encoding")

        try:
            result = await run_on_engine(
                self.engine,
                plan,
                job.id,
                job.model,
                self.output_dir,
                self._models_dir,
                on_progress,
                on_preview,
                lambda: live.stop is not None,
            )
        finally:
            if isinstance(plan, ConvertPlan):  # the new file (or none) shows in the registry
                await self._after_convert()
        if isinstance(result, PendingOutput):  # written while the engine takes the next job
            self._write_behind(live, result, on_encoding)
        elif result is None:  # stopped while the native call ran (in-process)
            reason = live.stop or JobError("interrupted", "job stopped")
            await self.finish(job, "cancelled", error=reason)
        else:
            await self.finish(job, "completed", result=result)

    def _write_behind(
        self, live: _Live, output: PendingOutput, on_encoding: Callable[[], None]
    ) -> None:
        """Encode and write ``output`` in a task, after the previous job's write (jobs complete
        in order); the job completes only once its files are written."""
        previous = self._writing
        self._writing = asyncio.create_task(self._write(live, output, on_encoding, previous))

    async def _write(
        self,
        live: _Live,
        output: PendingOutput,
        on_encoding: Callable[[], None],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await previous  # never raises: each write ends its own job
        job = live.job
        self._writing_id = job.id
        try:
            result = await output.write(on_encoding)
        except SdrestError as exc:
            await self.finish(job, "failed", error=JobError(exc.code, exc.message))
        except Exception as exc:  # the job fails; the consumer goes on
            logger.exception("job %s: writing its images failed", job.id)
            await self.finish(job, "failed", error=JobError("internal_error", str(exc)))
        else:
            await self.finish(job, "completed", result=result)
        finally:
            if self._writing_id == job.id:
                self._writing_id = None

    async def _download(self, live: _Live, plan: DownloadPlan) -> None:
        job = live.job

        def on_progress(progress: Progress) -> None:
            if job.status == "generating":
                job.progress = progress
                self._publish("progress", job)

        outcome: PullOutcome | None = None
        try:
            outcome = await run_download(plan, on_progress, lambda: live.stop is not None)
        finally:  # files placed before a failure show in the registry too
            if self._after_download is not None:
                await self._after_download(outcome)
        presets = [outcome.preset] if outcome.preset else []
        files = outcome.files(plan.options.models_dir)
        await self.finish(job, "completed", result=JobResult("", [], files=files, presets=presets))

    def _publish(self, kind: str, job: Job) -> None:
        self.events.publish(JobEvent(kind, job))

    def _record(self, job: Job) -> Job:
        """The runner's own record of ``job`` (callers may hold a copy), or ``job`` itself when
        it is not live (a stored job being recovered or failed)."""
        live = self._live.get(job.id)
        return live.job if live is not None else job

    def _drop(self, job_id: str) -> _Live | None:
        self._previews.forget(job_id)
        return self._live.pop(job_id, None)
