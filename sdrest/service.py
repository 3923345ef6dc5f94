"""The facade every API family (and an embedding app) calls: submit, get, cancel, wait, subscribe.

One :class:`SdrestService` owns the registry, the engine, the queue, the store and the event bus;
the Starlette app is only a view over it. Jobs run one at a time in FIFO order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
from PIL import Image

from sdrest import outputs, planning
from sdrest.engine.base import ConvertPlan, Engine, create_engine
from sdrest.errors import (
    ConflictError,
    EngineAbortedError,
    GoneError,
    NotFoundError,
    SdrestError,
)
from sdrest.images import image_to_b64
from sdrest.jobs import EventBus, JobEvent, JobQueue, JobStore
from sdrest.jobs.execute import Plan, execute
from sdrest.jobs.previews import PreviewCache
from sdrest.jobs.queue import QueuedOperation
from sdrest.models import ModelRegistry
from sdrest.schemas import (
    ConvertRequest,
    ImgGenRequest,
    Job,
    JobError,
    JobResult,
    JobStatus,
    Progress,
    UpscaleRequest,
    new_job,
)
from sdrest.settings import Settings

logger = logging.getLogger(__name__)

_RECENT_FINISHED = 256
_EXPIRY_INTERVAL = 60.0
_STOP_WAIT = 5.0
"""Seconds a stop waits for the stopped job to be recorded as cancelled."""
MAX_ATTEMPTS = 2
"""A job interrupted by a server stop is retried once; a second interruption fails it, so a job
that kills the process can never make it crash-loop."""


class SdrestService:
    """The library object: build it from settings, ``await start()``, then submit jobs.

    ``engine`` may be given (a test double, or a custom backend); by default the real native
    engine is created on start. Use as ``async with SdrestService(settings) as service:``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        registry: ModelRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or ModelRegistry(
            settings.models_path,
            settings.presets,
            hash_cache_path=settings.data_path / "hashes.json",
        )
        self.events = EventBus()
        self.store = JobStore(settings.data_path / "sdrest.sqlite3")
        self.output_dir = settings.output_path
        self.started_at = time.time()
        self._engine = engine
        self._queue = JobQueue(settings.limits.max_queue)
        self._active: dict[str, Job] = {}
        self._recent: OrderedDict[str, Job] = OrderedDict()
        self._plans: dict[str, Plan] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._current: str | None = None
        self._stop_requested: dict[str, JobError] = {}
        """Generating jobs asked to stop, and the error they end with."""
        self._default_model: str | None = None
        self._previews = PreviewCache()
        self._background: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The backend (created on start unless one was given)."""
        if self._engine is None:
            raise RuntimeError("service not started")
        return self._engine

    async def start(self) -> None:
        """Scan models, open the store, recover unfinished jobs, start the consumer."""
        if self._engine is None:
            self._engine = create_engine(self.settings)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        await self.refresh_models()
        await self.store.open()
        await self._recover()
        self._tasks = [
            asyncio.create_task(self._consume(), name="sdrest-consumer"),
            asyncio.create_task(self._expire_periodically(), name="sdrest-expiry"),
        ]

    async def stop(self) -> None:
        """Stop consuming, free the model, close the store. Queued jobs stay queued on disk."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.registry.stop_hashing()
        if self._engine is not None:
            await self._engine.close()
        await self.store.close()

    async def __aenter__(self) -> SdrestService:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- models ----------------------------------------------------------------------------

    def default_model(self) -> str:
        """Name of the model used when a request names none."""
        if self._default_model is not None:
            return self._default_model
        return planning.default_model_name(self.settings, self.registry)

    def set_default_model(self, name: str) -> None:
        """Make ``name`` (a registry model or preset) the default until the server restarts."""
        planning.model_spec(name, self.settings, self.registry)  # 404/400 for a bad name
        self._default_model = name

    async def load_model(self, name: str | None = None) -> str:
        """Load a model (default: the default model) so the next job does not wait for it.

        Scheduled like a job: it runs after the jobs queued before it, never during one.
        """
        name = name or self.default_model()
        spec = planning.model_spec(name, self.settings, self.registry)
        await self._between_jobs(lambda: self.engine.load(spec))
        return name

    async def unload_model(self, name: str | None = None) -> None:
        """Free model ``name`` (default: every loaded one), in queue order like a job; the next
        job loads what it needs."""
        await self._between_jobs(lambda: self.engine.unload(name))

    async def _between_jobs(self, operation: Callable[[], Awaitable[None]]) -> None:
        """Run an engine operation from the job queue, in FIFO order with the jobs."""
        queued = self._queue.push_operation(operation)
        try:
            await queued.done
        finally:  # the caller gave up while it waited: it never runs
            self._queue.remove(queued)

    async def refresh_models(self) -> None:
        """Rescan the models folder and restart background hashing, off the event loop
        (restarting waits for the file being hashed now, which can take seconds)."""

        def rescan() -> None:
            self.registry.scan()
            self.registry.start_hashing()

        await asyncio.to_thread(rescan)

    async def list_jobs(
        self,
        *,
        owner: str | None = None,
        statuses: tuple[str, ...] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first, live state for unfinished ones; ``owner`` None = everyone's."""
        jobs = await self.store.list(owner=owner, statuses=statuses, limit=limit, offset=offset)
        return [self._active.get(job.id, job) for job in jobs]

    def request_defaults(self, model: str | None) -> dict[str, Any]:
        """Default generation fields of a model (its preset's), for families to merge under."""
        return planning.request_defaults(
            model or self.default_model(), self.settings, self.registry
        )

    # -- jobs ------------------------------------------------------------------------------

    async def submit(
        self, request: ImgGenRequest, *, owner: str = "", family: str = "sdcpp"
    ) -> Job:
        """Validate, plan and queue a generation. Raises a 4xx :class:`SdrestError` on bad input."""
        model = request.model or self.default_model()
        if request.has_images:  # decoding images is CPU work: keep it off the event loop
            plan = await asyncio.to_thread(
                planning.plan_generation, request, model, self.settings, self.registry
            )
        else:
            plan = planning.plan_generation(request, model, self.settings, self.registry)
        stored = msgspec.structs.replace(request, model=model, seed=plan.seed)
        job = new_job("img_gen", owner, family, model, request=stored)
        return await self._enqueue(job, plan)

    async def submit_upscale(
        self, request: UpscaleRequest, *, owner: str = "", family: str = "sdcpp"
    ) -> Job:
        """Queue an ESRGAN upscale of one image with a registry upscaler."""
        plan = await asyncio.to_thread(planning.plan_upscale, request, self.settings, self.registry)
        job = new_job("upscale", owner, family, request.upscaler, upscale=request)
        return await self._enqueue(job, plan)

    async def submit_convert(
        self, request: ConvertRequest, *, owner: str = "", family: str = "rest"
    ) -> Job:
        """Queue a model conversion (quantization to GGUF); the new file is registered when done."""
        plan = await asyncio.to_thread(planning.plan_convert, request, self.registry)
        job = new_job("convert", owner, family, request.model, convert=request)
        return await self._enqueue(job, plan)

    async def _enqueue(self, job: Job, plan: Plan, *, recovered: bool = False) -> Job:
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
                self._forget(job.id)
                self._done.pop(job.id, None)
                raise
        return job

    def queue_position(self, job_id: str) -> int:
        """1-based queue position; 0 when not queued."""
        return self._queue.position(job_id)

    def queued_ids(self) -> list[str]:
        """Waiting jobs, next first."""
        return self._queue.ids()

    @property
    def loaded_model(self) -> str | None:
        """Name of the model the engine used last and still holds, if any."""
        return self._engine.loaded_model if self._engine is not None else None

    @property
    def loaded_models(self) -> tuple[str, ...]:
        """Every model the engine holds (several within ``memory_budget_mb``), most recent last."""
        return self._engine.info().loaded_models if self._engine is not None else ()

    @property
    def current_job(self) -> Job | None:
        """The job the engine is working on."""
        return self._active.get(self._current) if self._current else None

    async def get(self, job_id: str) -> Job:
        """A job by id: 404 if unknown, 410 once its retention has passed."""
        job = self._active.get(job_id) or self._recent.get(job_id)
        if job is None:
            job = await self.store.get(job_id)
        if job is None:
            raise NotFoundError(f"job not found: {job_id}")
        if job.expired:
            raise GoneError(f"job {job_id} has expired")
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one now; a generating one by stopping the engine (worker mode;
        in-process a running native call cannot be stopped: 409). Returns the job once it has
        ended (a few milliseconds for a generating one)."""
        job = await self.get(job_id)
        if job.finished:
            return job
        if job.status == "generating":
            if not self.engine.supports_abort:
                raise ConflictError("the job is already generating and cannot be cancelled")
            return await self._stop_generating(
                job, JobError("cancelled", "job cancelled by client while generating")
            )
        self._queue.remove(job_id)
        await self._finish(job, "cancelled", error=JobError("cancelled", "job cancelled by client"))
        return job

    async def request_stop(self, job_id: str, *, wait: bool = False) -> Job:
        """Stop a job whatever its state (A1111 interrupt, a client that went away): a queued
        one is cancelled; a generating one ends as cancelled (code ``interrupted``), at once in
        worker mode, else as soon as the native call returns (its images are discarded).
        ``wait``: return once a stopped generating job has ended (worker mode)."""
        job = await self.get(job_id)
        if job.finished:
            return job
        if job.status == "queued":
            return await self.cancel(job_id)
        reason = JobError("interrupted", "job stopped by client")
        return await self._stop_generating(job, reason, wait=wait)

    async def _stop_generating(self, job: Job, reason: JobError, *, wait: bool = True) -> Job:
        self._stop_requested.setdefault(job.id, reason)
        self._publish("state", job)
        if self.engine.supports_abort and self._current == job.id:
            await self.engine.abort()
            done = self._done.get(job.id)
            if wait and done is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), _STOP_WAIT)
        return job

    def request_stop_soon(self, job_id: str) -> None:
        """:meth:`request_stop` from code that may not await (a cancelled stream's cleanup)."""
        task = asyncio.get_running_loop().create_task(self._stop_quietly(job_id))
        self._background.add(task)  # a strong reference until it is done
        task.add_done_callback(self._background.discard)

    async def _stop_quietly(self, job_id: str) -> None:
        with contextlib.suppress(SdrestError):  # already gone or expired: nothing to stop
            await self.request_stop(job_id)

    def stop_requested(self, job_id: str) -> bool:
        """Whether a stop was asked for this (generating) job."""
        return job_id in self._stop_requested

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job has finished and return it."""
        done = self._done.get(job_id)
        if done is not None:
            await asyncio.wait_for(done.wait(), timeout)
        return await self.get(job_id)

    def _publish(self, kind: str, job: Job) -> None:
        self.events.publish(JobEvent(kind, job))

    # -- the consumer ----------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            idle = self.settings.engine.idle_unload
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
            await self._finish(job, "cancelled", error=reason)
        except SdrestError as exc:
            await self._finish(job, "failed", error=JobError(exc.code, exc.message))
        except Exception as exc:  # never let one job kill the consumer
            logger.exception("job %s failed unexpectedly", job_id)
            await self._finish(job, "failed", error=JobError("internal_error", str(exc)))
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
                self.registry.models_dir,
                on_progress,
                on_preview,
                on_encoding,
                lambda: job.id in self._stop_requested,
            )
        finally:
            if isinstance(plan, ConvertPlan):  # the new file (or none) shows in the registry
                await self.refresh_models()
        if result is None:  # stopped while the native call ran (in-process)
            reason = self._stop_requested.get(job.id) or JobError("interrupted", "job stopped")
            await self._finish(job, "cancelled", error=reason)
        else:
            await self._finish(job, "completed", result=result)

    async def _finish(
        self,
        job: Job,
        status: JobStatus,
        *,
        result: JobResult | None = None,
        error: JobError | None = None,
    ) -> None:
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
        self._forget(job.id)
        self._recent[job.id] = job
        while len(self._recent) > _RECENT_FINISHED:
            self._recent.popitem(last=False)
        self._publish("state", job)
        done = self._done.pop(job.id, None)
        if done is not None:
            done.set()

    def preview(self, job_id: str) -> tuple[int, Image.Image] | None:
        """(step, image) of the running job's latest live preview; None when there is none."""
        return self._previews.get(job_id)

    def _forget(self, job_id: str) -> None:
        self._previews.forget(job_id)
        self._active.pop(job_id, None)
        self._plans.pop(job_id, None)

    # -- durability ------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Re-queue the jobs a previous process accepted, in their order. The one it was running
        is retried once (:data:`MAX_ATTEMPTS`), then failed."""
        for job in await self.store.unfinished():
            if job.request is None and job.upscale is None and job.convert is None:
                await self._fail_recovered(job, "the job's request was not stored")
                continue
            if job.status == "generating":
                if job.attempts >= MAX_ATTEMPTS:
                    await self._fail_recovered(
                        job,
                        f"the server stopped while this job was running, {job.attempts} times;"
                        " it is not retried again",
                    )
                    continue
                job.status, job.started, job.progress = "queued", None, Progress()
                await self.store.update(job)
                logger.info("retrying job %s, interrupted by a server stop", job.id)
            try:
                plan = await asyncio.to_thread(
                    planning.plan_for_job, job, self.settings, self.registry
                )
            except SdrestError as exc:
                await self._finish(job, "failed", error=JobError(exc.code, exc.message))
                continue
            await self._enqueue(job, plan, recovered=True)
            logger.info("recovered queued job %s", job.id)

    async def _fail_recovered(self, job: Job, message: str) -> None:
        await self._finish(job, "failed", error=JobError("server_restarted", message))

    async def expire_now(self) -> list[str]:
        """Expire finished jobs older than the retention time and delete their files."""
        ids = await self.store.expire(time.time() - self.settings.job_ttl)
        for job_id in ids:
            self._recent.pop(job_id, None)
            await asyncio.to_thread(outputs.remove_job_files, self.output_dir, job_id)
        return ids

    async def _expire_periodically(self) -> None:
        while True:
            try:
                await self.expire_now()
            except Exception:
                logger.exception("expiring old jobs failed")
            await asyncio.sleep(_EXPIRY_INTERVAL)

    def output_b64(self, job_id: str, filename: str) -> str:
        """One output image as base64 (blocking file read: call it off the event loop)."""
        return image_to_b64(self.output_file(job_id, filename).read_bytes())

    async def preview_png(self, job: Job) -> tuple[int, bytes] | None:
        """(step, PNG) of a running job's latest live preview, scaled to the job's aspect;
        None when there is none. Encoded off the event loop, once per step."""
        request = job.request or ImgGenRequest()
        return await self._previews.png(job.id, request.width, request.height)

    def output_file(self, job_id: str, filename: str) -> Path:
        """Path of one output image (ValueError for anything outside the job's folder)."""
        return outputs.output_path(self.output_dir, job_id, filename)

    def reset_default_model(self) -> None:
        """Forget a default chosen at run time (:meth:`set_default_model`): the configured one,
        or the only model, applies again (the /api in-process restart)."""
        self._default_model = None

    def live_jobs(self) -> list[Job]:
        """The job being generated, then the queued ones in run order (in memory, no store)."""
        ids = ([self._current] if self._current else []) + self.queued_ids()
        return [job for job_id in ids if (job := self._active.get(job_id)) is not None]
