"""The facade every API family (and an embedding app) calls: submit, get, cancel, wait, subscribe.

One :class:`SdrestService` owns the registry, the engine, the store, the event bus and the
:class:`~sdrest.jobs.runner.JobRunner` (queue, consumer, live jobs); the Starlette app is only a
view over it. Jobs run one at a time in FIFO order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import msgspec
from PIL import Image

from sdrest import outputs, planning
from sdrest.decode_gate import DecodeGate
from sdrest.engine.base import Engine, GenerationPlan, create_engine
from sdrest.errors import (
    ConflictError,
    GoneError,
    JobNotFoundError,
    SdrestError,
)
from sdrest.images import image_to_b64
from sdrest.jobs import EventBus, open_job_store
from sdrest.jobs.cluster import ClusterRunner
from sdrest.jobs.roles import runner_for
from sdrest.model_catalog import ModelCatalog
from sdrest.models import ModelPreset, ModelRegistry
from sdrest.models.pull import PullOutcome
from sdrest.net.rate import FetchRateLimiter
from sdrest.schemas import (
    ConvertRequest,
    DownloadRequest,
    ImgGenRequest,
    Job,
    JobError,
    Progress,
    QueueSnapshot,
    UpscaleRequest,
    new_job,
)
from sdrest.schemas.nodes import NodeInfo
from sdrest.settings import Settings

logger = logging.getLogger(__name__)

_EXPIRY_INTERVAL = 60.0
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
        self.store = open_job_store(settings.database_url, settings.data_path)
        self.output_dir = settings.output_path
        self.started_at = time.time()
        self._engine = engine
        self.url_fetches = FetchRateLimiter(settings.fetch.fetch_per_minute)
        """URL image fetches per client address (``--fetch-per-minute``)."""
        self.restart_hook: Callable[[], None] | None = None
        """Set by ``sdrest serve``: stops the server gracefully and re-executes the process
        (``POST /api/system/restart``); None when embedded (the restart is then in-process)."""
        self.runner = runner_for(settings, self.registry)(
            capacity=settings.limits.max_queue,
            events=self.events,
            store=self.store,
            output_dir=self.output_dir,
            models_dir=self.registry.models_dir,
            idle_unload=settings.engine.idle_unload,
            after_convert=lambda: self.models.refresh(),
            after_download=self._downloaded,
        )
        """The queue, the consumer and the live jobs (the service resolves ids for it)."""
        self.runner.coalesce = settings.coalesce
        self.models = ModelCatalog(
            self.registry, settings, lambda: self._engine, self.runner.between_jobs
        )
        """Model lookups, defaults, hashes and loaded state: what the families ask about models."""
        self.decodes = DecodeGate(int(settings.limits.decode_budget_mb * 1024 * 1024))
        """The byte budget of client images decoded at one time: every request image is decoded
        under a ``self.decodes.hold()`` (planning here, the families' own image work)."""
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
        self.runner.attach(self._engine)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        await self.models.refresh()
        await self.store.open()
        if not isinstance(self.runner, ClusterRunner):  # there, leases decide what reruns
            await self._recover()
        self._tasks = [
            asyncio.create_task(self.runner.consume(), name="sdrest-consumer"),
            asyncio.create_task(self.runner.consume_downloads(), name="sdrest-downloads"),
            asyncio.create_task(self._expire_periodically(), name="sdrest-expiry"),
        ]
        if self.settings.preload:
            self._tasks.append(asyncio.create_task(self._preload(), name="sdrest-preload"))

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

    # -- checks without queueing -----------------------------------------------------------

    async def check(self, request: ImgGenRequest, model: str | None = None) -> GenerationPlan:
        """Everything :meth:`submit` checks (limits, names, files, images, LoRAs), without
        queueing: the plan a job would run. Raises the same 4xx errors."""
        name = model or request.model or self.models.default()
        if request.has_images or request.lora:
            # Decoding images is CPU work and a LoRA's header is read from disk: off the loop.
            return await asyncio.to_thread(
                self.decodes.call,
                lambda hold: planning.plan_generation(
                    request, name, self.settings, self.registry, hold
                ),
            )
        return planning.plan_generation(request, name, self.settings, self.registry)

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
        return [self.runner.live(job.id) or job for job in jobs]

    # -- jobs ------------------------------------------------------------------------------

    async def submit(
        self, request: ImgGenRequest, *, owner: str = "", family: str = "sdcpp"
    ) -> Job:
        """Validate, plan and queue a generation. Raises a 4xx :class:`SdrestError` on bad input."""
        model = request.model or self.models.default()
        plan = await self.check(request, model)
        if request.seed < 0:  # left to chance: one that lets the job share the last one's call
            plan = self.runner.continue_seed(plan)
        stored = msgspec.structs.replace(request, model=model, seed=plan.seed)
        job = new_job("img_gen", owner, family, model, request=stored)
        return await self.runner.enqueue(job, plan)

    async def submit_upscale(
        self, request: UpscaleRequest, *, owner: str = "", family: str = "sdcpp"
    ) -> Job:
        """Queue an ESRGAN upscale of one image with a registry upscaler."""
        plan = await asyncio.to_thread(
            self.decodes.call,
            lambda hold: planning.plan_upscale(request, self.settings, self.registry, hold),
        )
        job = new_job("upscale", owner, family, request.upscaler, upscale=request)
        return await self.runner.enqueue(job, plan)

    async def submit_convert(
        self, request: ConvertRequest, *, owner: str = "", family: str = "rest"
    ) -> Job:
        """Queue a model conversion (quantization to GGUF); the new file is registered when done."""
        plan = await asyncio.to_thread(planning.plan_convert, request, self.registry)
        # The job records where the file goes (planned once, here), for the answer and a re-plan.
        target = Path(plan.output_path).relative_to(self.registry.models_dir.resolve())
        stored = msgspec.structs.replace(request, output_path=str(target))
        job = new_job("convert", owner, family, request.model, convert=stored)
        return await self.runner.enqueue(job, plan)

    async def submit_download(
        self, request: DownloadRequest, *, owner: str = "", family: str = "rest"
    ) -> Job:
        """Queue a model download from the Hugging Face hub. It runs in the download lane, in a
        thread, beside the engine's queue (never holding a generation up); its files are
        registered, and a preset for a multi-file family added, when it is done."""
        plan = planning.plan_download(request, self.settings, self.registry)
        job = new_job("download", owner, family, plan.ref.repo, download=request)
        return await self.runner.enqueue(job, plan)

    async def _downloaded(self, outcome: PullOutcome | None) -> None:
        if outcome is not None and outcome.preset is not None:
            preset = msgspec.convert({**outcome.preset_fields, "name": outcome.preset}, ModelPreset)
            self.registry.add_preset(preset)  # False: configured already (pulled before)
        if outcome is not None:  # hashed while checked: the rescan need not read them again
            await asyncio.to_thread(self.registry.hashes.remember, outcome.digests())
        await self.models.refresh()

    def nodes(self) -> list[NodeInfo]:
        """The nodes sharing this queue as of the last heartbeat (``--database-url`` or
        ``--engine-workers``): each one's workers, their jobs and loaded models; [] when this
        process runs the one classic queue."""
        return list(self.runner.known_nodes) if isinstance(self.runner, ClusterRunner) else []

    def queue_position(self, job_id: str) -> int:
        """1-based queue position; 0 when not queued."""
        return self.runner.queue_position(job_id)

    def queue_snapshot(self) -> QueueSnapshot:
        """The running job, the queued ones in order and the loaded models, taken in one step
        (no await in between), as copies: every view of the queue reads one consistent picture."""
        return QueueSnapshot(
            current=self.runner.current_job,
            queued=self.runner.queued_jobs(),
            loaded_models=self.models.loaded,
            downloads=self.runner.download_jobs(),
        )

    async def get(self, job_id: str) -> Job:
        """A job by id: 404 if unknown, 410 once its retention has passed."""
        job = self.runner.live(job_id) or await self.store.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        if job.expired:
            raise GoneError(f"job {job_id} has expired")
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one now; a generating one by stopping the engine (worker mode;
        in-process a running native call cannot be stopped: 409). Returns the job once it has
        ended (a few milliseconds for a generating one)."""
        return await self.runner.cancel(await self.get(job_id))

    async def request_stop(self, job_id: str, *, wait: bool = False) -> Job:
        """Stop a job whatever its state (A1111 interrupt, a client that went away): a queued
        one is cancelled; a generating one ends as cancelled (code ``interrupted``), at once in
        worker mode, else as soon as the native call returns (its images are discarded).
        ``wait``: return once a stopped generating job has ended (worker mode)."""
        return await self.runner.request_stop(await self.get(job_id), wait=wait)

    async def delete(self, job_id: str) -> Job:
        """Delete a finished job for good: its record, its images and its place among the
        recent jobs; a ``deleted`` event tells every view (``/ws``). A queued or running job
        is a 409 (cancel it first), an unknown one a 404, an expired one a 410."""
        job = await self.get(job_id)
        if not job.finished:
            raise ConflictError(
                f"job {job_id} is {job.status}: cancel it first, then delete it", field="job_id"
            )
        if not await self.store.delete(job_id):
            raise JobNotFoundError(job_id)  # deleted meanwhile by another request
        self.runner.forget(job_id)
        await asyncio.to_thread(outputs.remove_job_files, self.output_dir, job_id)
        self.runner.announce_deleted(job)
        return job

    def request_stop_soon(self, job_id: str) -> None:
        """:meth:`request_stop` from code that may not await (a cancelled stream's cleanup)."""
        self.runner.request_stop_soon(job_id)

    def stop_requested(self, job_id: str) -> bool:
        """Whether a stop was asked for this (generating) job."""
        return self.runner.stop_requested(job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job has finished and return it."""
        await self.runner.wait_done(job_id, timeout)
        return await self.get(job_id)

    def preview(self, job_id: str) -> tuple[int, Image.Image] | None:
        """(step, image) of the running job's latest live preview; None when there is none."""
        return self.runner.preview(job_id)

    # -- durability ------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Re-queue the jobs a previous process accepted, in their order. The one it was running
        is retried once (:data:`MAX_ATTEMPTS`), then failed."""
        for job in await self.store.unfinished():
            if (job.request or job.upscale or job.convert or job.download) is None:
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
                await self.runner.finish(job, "failed", error=JobError(exc.code, exc.message))
                continue
            await self.runner.enqueue(job, plan, recovered=True)
            logger.info("recovered queued job %s", job.id)

    async def _fail_recovered(self, job: Job, message: str) -> None:
        await self.runner.finish(job, "failed", error=JobError("server_restarted", message))

    async def expire_now(self) -> list[str]:
        """Expire finished jobs older than the retention time and delete their files."""
        ids = await self.store.expire(time.time() - self.settings.job_ttl)
        for job_id in ids:
            self.runner.forget(job_id)
            await asyncio.to_thread(outputs.remove_job_files, self.output_dir, job_id)
        return ids

    async def _preload(self) -> None:
        """``--preload``: load the default model in queue order, so a job sent meanwhile waits
        for the load instead of doing it. A failure is logged: the first job loads it again."""
        name = self.models.chosen_default()  # not a guess among several models
        if name is None:
            return
        started = time.perf_counter()
        try:
            await self.models.load(name)
        except SdrestError as exc:
            logger.warning("preloading %s failed: %s", name, exc.message)
        except Exception:  # the server keeps serving; the first job tries again
            logger.exception("preloading %s failed", name)
        else:
            logger.info("preloaded %s in %.2fs", name, time.perf_counter() - started)

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

    def outputs_b64(self, job: Job) -> list[str]:
        """Every output image of a completed job as base64, in order (blocking: off the loop)."""
        if job.result is None:
            return []
        return [self.output_b64(job.id, ref.filename) for ref in job.result.images]

    async def preview_png(self, job: Job) -> tuple[int, bytes] | None:
        """(step, PNG) of a running job's latest live preview, scaled to the job's aspect;
        None when there is none. Encoded off the event loop, once per step."""
        return await self.runner.preview_png(job)

    def output_file(self, job_id: str, filename: str) -> Path:
        """Path of one output image (ValueError for anything outside the job's folder)."""
        return outputs.output_path(self.output_dir, job_id, filename)

