"""The live side of the job system: the queue, the one consumer, and the state of unfinished jobs.

:class:`JobRunner` runs jobs one native call at a time in FIFO order on the engine (waiting
txt2img jobs that differ only in their seeds share a call: ``coalesce.py``), with model loads
and unloads waiting their turn in the same queue; it publishes every state change and progress
step on the event bus and records finished jobs in the store. The service resolves ids (404,
410) and plans requests; the runner only works on :class:`Job` objects it was given. Its
helpers: the live records and their read-only view (``live.py``), the download lane
(``downloads.py``), the write-behind of images (``write_behind.py``) and the finished jobs kept
in memory (``recent.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from PIL import Image

from sdrest.engine.base import ConvertPlan, Engine, GenerationPlan
from sdrest.errors import ConflictError, EngineAbortedError, EngineCrashedError, SdrestError
from sdrest.jobs import coalesce
from sdrest.jobs.downloads import DownloadPlan, download_job
from sdrest.jobs.events import EventBus, JobEvent
from sdrest.jobs.execute import (
    PendingOutput,
    Plan,
    generation_output,
    job_hooks,
    run_on_engine,
)
from sdrest.jobs.live import LiveJob, LiveJobs, copy_job
from sdrest.jobs.queue import QueuedOperation
from sdrest.jobs.recent import mark_ended
from sdrest.jobs.store import JobStoreBase
from sdrest.jobs.write_behind import WriteBehind
from sdrest.logs import job_context
from sdrest.models.pull import PullOutcome
from sdrest.schemas import Job, JobError, JobResult, JobStatus, Progress

logger = logging.getLogger(__name__)

_STOP_WAIT = 5.0
"""Seconds a stop waits for the stopped job to be recorded as cancelled."""


def _job_error(exc: Exception) -> JobError:
    """What a job that raised ``exc`` fails with."""
    if isinstance(exc, SdrestError):
        return JobError(exc.code, exc.message)
    return JobError("internal_error", str(exc))


class JobRunner(LiveJobs):
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
        super().__init__(capacity)
        self._engine: Engine | None = None
        self.coalesce = True
        """Run waiting jobs that differ only in their seeds as one call (``--coalesce``)."""
        self._background: set[asyncio.Task[None]] = set()
        self._writes = WriteBehind(self.finish, functools.partial(self._publish, "progress"))
        """Encodes and writes the last job's images while the engine runs the next job."""

    @property
    def engine(self) -> Engine:
        """The engine jobs run on."""
        if self._engine is None:
            raise RuntimeError("service not started")
        return self._engine

    def attach(self, engine: Engine) -> None:
        """Run jobs on ``engine`` from now on."""
        self._engine = engine

    # -- accepting and ending jobs -----------------------------------------------------------

    async def enqueue(self, job: Job, plan: Plan | DownloadPlan, *, recovered: bool = False) -> Job:
        """Queue a job (a download in the download lane) and store it (a recovered one is
        stored already). Queue full: 429. The runner keeps ``job``; the caller gets a copy."""
        lane = self._lane(plan)
        lane.push(job.id, force=recovered)  # raises QueueFullError first: nothing stored
        live = self._live[job.id] = LiveJob(job, plan)
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
        return copy_job(job)

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
        ended = mark_ended(job, status, result, error)
        await self.store.update(job)
        live = self._drop(job.id)
        self._recent.remember(job, limit=self.recent_limit, bytes_limit=self.recent_bytes_limit)
        self._publish("state", job)
        took = f" in {ended - job.started:.2f}s" if job.started is not None else ""
        detail = f": {error.code}: {error.message}" if error is not None else ""
        logger.info("job %s %s%s%s", job.id, status, took, detail, extra={"job_id": job.id})
        if live is not None:
            live.done.set()

    async def cancel(self, job: Job) -> Job:
        """Cancel a job: a queued one now; a generating one by stopping the engine (409 when
        the engine cannot). Returns the job once it has ended."""
        job = self._record(job)
        if job.finished:
            return copy_job(job)
        if job.status == "generating":
            if job.kind != "download" and not self.engine.supports_abort:
                raise ConflictError("the job is already generating and cannot be cancelled")
            reason = JobError("cancelled", "job cancelled by client while generating")
            return await self._stop_generating(job, reason, wait=True)
        self._queue.remove(job.id) or self._downloads.queue.remove(job.id)
        await self.finish(job, "cancelled", error=JobError("cancelled", "job cancelled by client"))
        return copy_job(job)

    async def request_stop(self, job: Job, *, wait: bool = False) -> Job:
        """Stop a job whatever its state; a generating one ends as ``interrupted`` (at once
        when the engine can abort, else when its native call returns)."""
        job = self._record(job)
        if job.finished:
            return copy_job(job)
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
        aborted = self.engine.supports_abort and job.id in self._running
        if aborted:
            await self.engine.abort()
        # Wait only for what ends promptly: an aborted generation, or a download (it stops at
        # its next chunk). An in-process native call runs to its end: do not wait for that.
        if wait and (aborted or job.id in (self._downloads.running, self._writes.job_id)):
            with contextlib.suppress(asyncio.TimeoutError):
                await self.wait_done(job.id, _STOP_WAIT)
        return copy_job(job)

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
            await self._writes.drain()

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
        await self._downloads.serve(self._run_by_id)

    async def _run_next(self, job_id: str) -> None:
        # Current from the moment it leaves the queue, so every snapshot shows it somewhere.
        self._current = job_id
        try:
            group = self._coalesced(job_id)
            self._running = tuple(live.job.id for live in group) or (job_id,)
            if group:
                with job_context(job_id):
                    await self._run_group(group)
            else:
                await self._run_by_id(job_id)
        finally:
            self._current, self._running = None, ()

    def _coalesced(self, job_id: str) -> list[LiveJob]:
        """``job_id`` and the waiting jobs its native call also runs (taken out of the queue),
        or nothing when it runs alone (see jobs/coalesce.py)."""
        head = self._coalescible(job_id) if self.coalesce else None
        if head is None:
            return []
        waiting = ((other, self._coalescible(other)) for other in self._queue.leading_ids())
        chosen = coalesce.partners(head, waiting)
        for other in chosen:
            self._queue.remove(other)
        return [self._live[each] for each in (job_id, *chosen)] if chosen else []

    def _coalescible(self, job_id: str, *, stored: bool = True) -> GenerationPlan | None:
        """The plan of a (stored) waiting job that may share a call; None otherwise."""
        live = self._live.get(job_id)
        if live is None or (stored and not live.stored.is_set()) or live.job.status != "queued":
            return None
        if live.solo:
            return None
        return live.plan if coalesce.eligible(live.plan) else None

    def continue_seed(self, plan: GenerationPlan) -> GenerationPlan:
        """``plan`` (whose seed the client left to chance) with the seed that continues the
        batch of the job waiting last, when that job asks for the same txt2img: the two then
        share one native call. Any other plan comes back as it is."""
        last = self._queue.last_id()
        tail = self._coalescible(last, stored=False) if self.coalesce and last else None
        if tail is None or not coalesce.eligible(plan) or not coalesce.same_call(tail, plan):
            return plan
        return dataclasses.replace(plan, seed=tail.seed + tail.request.batch_count)

    async def _run_group(self, group: list[LiveJob]) -> None:
        """Run coalesced jobs as one native call; each job ends (or is written) on its own.
        Stopping one of them aborts the call: the others go back to the head of the queue (as
        after a crash, which fails the first job only)."""
        plans = [live.plan for live in group if coalesce.eligible(live.plan)]
        members = []
        publish = functools.partial(self._publish, "progress")
        for live, plan in zip(group, plans, strict=True):
            self._begin(live.job)  # all generating before the first await: no cancel between
            hooks = job_hooks(live.job, self._previews, publish)
            members.append(coalesce.Member(live.job.id, plan.request.batch_count, *hooks))
        logger.info("jobs %s run as one call", ", ".join(self._running))
        router = coalesce.ProgressRouter(members, self._set_current)
        try:
            for live in group:
                await self._started(live.job)
            images = await self.engine.generate(
                coalesce.batch_plan(plans), router.on_progress, router.on_preview
            )
        except Exception as exc:
            await self._group_failed(group, exc)
            return
        finally:
            for live in group:
                if live.job.status != "queued":  # one put back waits for the engine again
                    live.ran.set()
        await self._hand_out(group, plans, images)

    async def _group_failed(self, group: list[LiveJob], exc: Exception) -> None:
        """A coalesced call that raised: stopped (the jobs not stopped go back to the head of
        the queue), crashed (the first job fails, as it would alone; the others run again,
        each by itself: the crash may have been the machine's, an OOM kill, not theirs), or
        failed (they all fail: they asked for the same)."""
        if isinstance(exc, EngineAbortedError | EngineCrashedError):
            head, *others = group
            crashed = isinstance(exc, EngineCrashedError)
            for live in reversed(others if crashed else group):
                live.solo = live.solo or crashed
                await self._abandoned(live)
            if crashed:
                await self.finish(head.job, "failed", error=_job_error(exc))
            return
        if not isinstance(exc, SdrestError):
            logger.exception("coalesced jobs %s failed unexpectedly", self._running)
        error = _job_error(exc)
        for live in group:
            await self.finish(live.job, "failed", error=error)

    async def _hand_out(
        self, group: list[LiveJob], plans: list[GenerationPlan], images: list[Image.Image]
    ) -> None:
        """Each coalesced job's share of the call's images, written behind (or dropped: a job
        stopped while the call ran to its end)."""
        for live, plan, share in zip(group, plans, coalesce.split(images, plans), strict=True):
            job = live.job
            if live.stop is not None:
                await self.finish(job, "cancelled", error=live.stop)
            else:
                self._writes.start(
                    job, generation_output(plan, share, job.id, job.model, self.output_dir)
                )

    async def _abandoned(self, live: LiveJob) -> None:
        """A coalesced job whose call was stopped: cancelled when the stop was its own, else
        back at the head of the queue."""
        job = live.job
        if live.stop is not None:
            await self.finish(job, "cancelled", error=live.stop)
            return
        job.status, job.started, job.progress = "queued", None, Progress()
        job.attempts -= 1  # not an attempt of its own
        self._queue.push_front(job.id)
        live.ran.clear()
        await self.store.update(job)
        self._publish("state", job)

    def _set_current(self, job_id: str) -> None:
        self._current = job_id

    async def _run_by_id(self, job_id: str) -> None:
        live = self._live.get(job_id)
        if live is not None:
            with job_context(job_id):
                await self._run_live(live)

    async def _run_live(self, live: LiveJob) -> None:
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
        except Exception as exc:  # never let one job kill the consumer
            if not isinstance(exc, SdrestError):
                logger.exception("job %s failed unexpectedly", job_id)
            await self.finish(job, "failed", error=_job_error(exc))
        finally:
            live.ran.set()

    def _begin(self, job: Job, phase: str = "loading") -> None:
        job.status, job.started = "generating", time.time()
        job.attempts += 1
        job.progress = Progress(phase)

    async def _started(self, job: Job) -> None:
        await self.store.update(job)
        self._publish("state", job)
        logger.info("job %s started: %s on %s (%s)", job.id, job.kind, job.model, job.family)

    async def _run(self, live: LiveJob) -> None:
        job, plan = live.job, live.plan
        self._begin(job, "downloading" if isinstance(plan, DownloadPlan) else "loading")
        await self._started(job)
        publish = functools.partial(self._publish, "progress")
        if isinstance(plan, DownloadPlan):
            done = await download_job(job, plan, publish, live.stopped, self._after_download)
            await self.finish(job, "completed", result=done)
            return

        on_progress, on_preview = job_hooks(job, self._previews, publish)
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
                live.stopped,
            )
        finally:
            if isinstance(plan, ConvertPlan):  # the new file (or none) shows in the registry
                await self._after_convert()
        if isinstance(result, PendingOutput):  # written while the engine takes the next job
            self._writes.start(job, result)
        elif result is None:  # stopped while the native call ran (in-process)
            reason = live.stop or JobError("interrupted", "job stopped")
            await self.finish(job, "cancelled", error=reason)
        else:
            await self.finish(job, "completed", result=result)

    def announce_deleted(self, job: Job) -> None:
        """Tell every view that a finished job was deleted (``/ws`` ``job_deleted``)."""
        self._publish("deleted", job)

    def _publish(self, kind: str, job: Job) -> None:
        self.events.publish(JobEvent(kind, job))
