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
from pathlib import Path

import msgspec
from PIL import Image

from sdrest.engine.base import ConvertPlan, Engine
from sdrest.errors import ConflictError, EngineAbortedError, SdrestError
from sdrest.jobs.events import EventBus, JobEvent
from sdrest.jobs.execute import Plan, execute
from sdrest.jobs.previews import PreviewCache
from sdrest.jobs.queue import JobQueue, QueuedOperation
from sdrest.jobs.store import JobStore
from sdrest.schemas import ImgGenRequest, Job, JobError, JobResult, JobStatus, Progress

logger = logging.getLogger(__name__)

_RECENT_FINISHED = 256
_STOP_WAIT = 5.0
"""Seconds a stop waits for the stopped job to be recorded as cancelled."""


class JobRunner:
    """Queue, consumer and live job state over one engine (attached when the service starts)."""

    def __init__(
        self,
        *,
        capacity: int,
        events: EventBus,
        store: JobStore,
        output_dir: Path,
        models_dir: Path,
        idle_unload: float,
        after_convert: Callable[[], Awaitable[None]],
    ) -> None:
        self.events = events
        self.store = store
        self.output_dir = output_dir
        self.idle_unload = idle_unload
        self._models_dir = models_dir
        self._after_convert = after_convert
        self._engine: Engine | None = None
        self._queue = JobQueue(capacity)
        self._active: dict[str, Job] = {}
        self._recent: OrderedDict[str, Job] = OrderedDict()
        self._plans: dict[str, Plan] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._current: str | None = None
        self._stop_requested: dict[str, JobError] = {}
        """Generating jobs asked to stop, and the error they end with."""
        self._previews = PreviewCache()
        self._background: set[asyncio.Task[None]] = set()

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
        """An unfinished job, or one finished recently, from memory; None otherwise."""
        return self._active.get(job_id) or self._recent.get(job_id)

    def forget(self, job_id: str) -> None:
        """Drop a finished job from memory (it expired)."""
        self._recent.pop(job_id, None)

    def queue_position(self, job_id: str) -> int:
        """1-based queue position; 0 when not queued."""
        return self._queue.position(job_id)

    def queued_ids(self) -> list[str]:
        """Waiting jobs, next first."""
        return self._queue.ids()

    @property
    def current_job(self) -> Job | None:
        """The job the engine is working on."""
        return self._active.get(self._current) if self._current else None

    def live_jobs(self) -> list[Job]:
        """The job being generated, then the queued ones in run order."""
        ids = ([self._current] if self._current else []) + self.queued_ids()
        return [job for job_id in ids if (job := self._active.get(job_id)) is not None]

    def stop_requested(self, job_id: str) -> bool:
        """Whether a stop was asked for this (generating) job."""
        return job_id in self._stop_requested

    def preview(self, job_id: str) -> tuple[int, Image.Image] | None:
        """(step, image) of the running job's latest live preview; None when there is none."""
        return self._previews.get(job_id)

    async def preview_png(self, job: Job) -> tuple[int, bytes] | None:
        """(step, PNG) of a running job's latest live preview, scaled to the job's aspect."""
        request = job.request or ImgGenRequest()
        return await self._previews.png(job.id, request.width, request.height)

    async def wait_done(self, job_id: str, timeout: float | None) -> None:
        """Wait until the job has finished (at once for one that is not live)."""
        done = self._done.get(job_id)
        if done is not None:
            await asyncio.wait_for(done.wait(), timeout)

    # -- accepting and ending jobs -----------------------------------------------------------

    async def enqueue(self, job: Job, plan: Plan, *, recovered: bool = False) -> Job:
        """Queue a job and store it (a recovered one is stored already). Queue full: 429."""
        self._queue.push(job.id, force=recovered)  # raises QueueFullError first: nothing stored
        self._active[job.id] = job
        self._plans[job.id] = plan
        self._done[job.id] = asyncio.Event()
        # Published before the insert awaits: the consumer may take the job meanwhile, and a
        # stream must never see "generating" before "queued".
        self._publish("state", job)
        if not recovered:
            try:
                await self.store.insert(job)
            except Exception:
                self._queue.remove(job.id)
                job.status = "failed"
                job.error = JobError("store_failed", "the job could not be stored")
                self._publish("state", job)
                self._drop(job.id)
                self._done.pop(job.id, None)
                raise
        return job

    async def finish(
        self,
        job: Job,
        status: JobStatus,
        *,
        result: JobResult | None = None,
        error: JobError | None = None,
    ) -> None:
        """Record a job's end, publish it and wake whoever waits for it."""
        job.status = status
        job.completed = time.time()
        job.result, job.error = result, error
        if job.request is not None:
            # The store keeps the whole request; memory keeps no megabytes of base64 per job.
            job.request = job.request.without_images()
        if status == "completed":
            job.progress = msgspec.structs.replace(
                job.progress, phase="done", step=job.progress.steps
            )
        await self.store.update(job)
        self._drop(job.id)
        self._recent[job.id] = job
        while len(self._recent) > _RECENT_FINISHED:
            self._recent.popitem(last=False)
        self._publish("state", job)
        done = self._done.pop(job.id, None)
        if done is not None:
            done.set()

    async def cancel(self, job: Job) -> Job:
        """Cancel a job: a queued one now; a generating one by stopping the engine (409 when
        the engine cannot). Returns the job once it has ended."""
        if job.finished:
            return job
        if job.status == "generating":
            if not self.engine.supports_abort:
                raise ConflictError("the job is already generating and cannot be cancelled")
            reason = JobError("cancelled", "job cancelled by client while generating")
            return await self._stop_generating(job, reason, wait=True)
        self._queue.remove(job.id)
        await self.finish(job, "cancelled", error=JobError("cancelled", "job cancelled by client"))
        return job

    async def request_stop(self, job: Job, *, wait: bool = False) -> Job:
        """Stop a job whatever its state; a generating one ends as ``interrupted`` (at once
        when the engine can abort, else when its native call returns)."""
        if job.finished:
            return job
        if job.status == "queued":
            return await self.cancel(job)
        reason = JobError("interrupted", "job stopped by client")
        return await self._stop_generating(job, reason, wait=wait)

    def request_stop_soon(self, job_id: str) -> None:
        """:meth:`request_stop` from code that may not await (a cancelled stream's cleanup)."""
        job = self._active.get(job_id)
        if job is None:
            return  # finished already: nothing to stop
        task = asyncio.get_running_loop().create_task(self._stop_quietly(job))
        self._background.add(task)  # a strong reference until it is done
        task.add_done_callback(self._background.discard)

    async def _stop_quietly(self, job: Job) -> None:
        with contextlib.suppress(SdrestError):
            await self.request_stop(job)

    async def _stop_generating(self, job: Job, reason: JobError, *, wait: bool) -> Job:
        self._stop_requested.setdefault(job.id, reason)
        self._publish("state", job)
        if self.engine.supports_abort and self._current == job.id:
            await self.engine.abort()
            if wait:
                with contextlib.suppress(asyncio.TimeoutError):
                    await self.wait_done(job.id, _STOP_WAIT)
        return job

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

    async def _run_next(self, job_id: str) -> None:
        job, plan = self._active.get(job_id), self._plans.get(job_id)
        if job is None or plan is None or job.status != "queued":
            return
        self._current = job_id
        try:
            await self._run(job, plan)
        except asyncio.CancelledError:
            raise
        except EngineAbortedError:
            reason = self._stop_requested.get(job_id) or JobError("cancelled", "job stopped")
            await self.finish(job, "cancelled", error=reason)
        except SdrestError as exc:
            await self.finish(job, "failed", error=JobError(exc.code, exc.message))
        except Exception as exc:  # never let one job kill the consumer
            logger.exception("job %s failed unexpectedly", job_id)
            await self.finish(job, "failed", error=JobError("internal_error", str(exc)))
        finally:
            self._current = None
            self._stop_requested.pop(job_id, None)

    async def _run(self, job: Job, plan: Plan) -> None:
        job.status, job.started = "generating", time.time()
        job.attempts += 1
        job.progress = Progress("loading")
        await self.store.update(job)
        self._publish("state", job)

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
            result = await execute(
                self.engine,
                plan,
                job.id,
                job.model,
                self.output_dir,
                self._models_dir,
                on_progress,
                on_preview,
                on_encoding,
                lambda: job.id in self._stop_requested,
            )
        finally:
            if isinstance(plan, ConvertPlan):  # the new file (or none) shows in the registry
                await self._after_convert()
        if result is None:  # stopped while the native call ran (in-process)
            reason = self._stop_requested.get(job.id) or JobError("interrupted", "job stopped")
            await self.finish(job, "cancelled", error=reason)
        else:
            await self.finish(job, "completed", result=result)

    def _publish(self, kind: str, job: Job) -> None:
        self.events.publish(JobEvent(kind, job))

    def _drop(self, job_id: str) -> None:
        self._previews.forget(job_id)
        self._active.pop(job_id, None)
        self._plans.pop(job_id, None)
