"""Engine workers: each claims jobs from the shared queue (the database) and runs them on its own
engine, holding each job under a lease it renews while the job runs.

A worker runs a claimed job through a private :class:`~sdrest.jobs.runner.JobRunner` (its own
engine): the very code that runs jobs on a single machine, so progress, previews, the encoding
phase and cancellation behave the same. With a txt2img job it also claims the waiting jobs that
can share its native call (:mod:`sdrest.jobs.coalesce`), and the runner runs them together. Its
store is a view that writes only while this worker still holds the claim
(:mod:`sdrest.jobs.claimed`): a worker whose lease ran out (cut off from the database for too
long) can never overwrite the run another worker took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec

from sdrest import planning
from sdrest.engine.base import Engine, GenerationPlan
from sdrest.errors import RetryLaterError, SdrestError
from sdrest.jobs import coalesce
from sdrest.jobs.claimed import ClaimedStore
from sdrest.jobs.events import EventBus, JobEvent
from sdrest.jobs.runner import JobRunner
from sdrest.jobs.store import JobStoreBase, WorkerInfo
from sdrest.models import ModelRegistry
from sdrest.models.pull import PullOutcome
from sdrest.schemas import Job, JobError
from sdrest.settings import Settings

logger = logging.getLogger(__name__)

_IDLE_POLL = 0.5
"""Seconds between claims while the queue is empty (a notification wakes a worker sooner)."""
LOST_LEASE = JobError("worker_lost", "this worker lost its claim on the job (lease ran out)")


@dataclass(frozen=True)
class WorkerOptions:
    """How workers claim and hold jobs (from ``[engine]`` settings)."""

    lease: float
    """Seconds a claim lasts without renewal; renewed every third of it."""
    affinity_wait: float
    """Seconds an older job may wait while a worker prefers jobs for its loaded model."""
    max_attempts: int
    """Starts after which a job whose worker vanished fails instead of running again."""


def worker_settings(settings: Settings, index: int, count: int) -> Settings:
    """The settings of local worker ``index`` of ``count``: on a CPU the threads are split
    between them (each gets its share of ``--threads``, or of the cores when it is 0)."""
    if count <= 1:
        return settings
    total = settings.load.threads or max(1, (os.cpu_count() or 2) // 2)
    share = max(1, total // count)
    return msgspec.structs.replace(
        settings, load=msgspec.structs.replace(settings.load, threads=share)
    )


class EngineWorker:
    """One engine: claims the next job, runs it, renews its lease, and stops it when asked."""

    def __init__(
        self,
        name: str,
        *,
        store: JobStoreBase,
        engine: Engine,
        settings: Settings,
        registry: ModelRegistry,
        options: WorkerOptions,
        emit: Callable[[JobEvent], None],
        after_convert: Callable[[], Awaitable[None]],
        after_download: Callable[[PullOutcome | None], Awaitable[None]] | None,
        device: str = "",
        share_preview: Callable[[str, int, bytes], None] | None = None,
    ) -> None:
        self.name = name
        self._share_preview = share_preview
        """Hands each new preview (as PNG) to the other nodes; None: nobody else needs it."""
        self._shared_step: dict[str, int] = {}
        self._sharing: asyncio.Task[None] | None = None
        self.device = device
        self.store = store
        self.settings = settings
        self.registry = registry
        self.options = options
        self._emit = emit
        self._lost: set[str] = set()
        bus = EventBus()
        bus.listen(self._forward)
        self.runner = JobRunner(
            capacity=1,
            events=bus,
            store=ClaimedStore(store, name, options.lease, self._lost.add),
            output_dir=settings.output_path,
            models_dir=registry.models_dir,
            idle_unload=settings.engine.idle_unload,
            after_convert=after_convert,
            after_download=after_download,
        )
        """The private runner the claimed jobs run through (its engine is this worker's)."""
        self.runner.attach(engine)
        self.runner.coalesce = settings.coalesce
        self.current: str | None = None
        """The job on this worker's engine (claimed, not yet handed to the write-behind)."""
        self._held: dict[str, asyncio.Task[None]] = {}
        """Every job this worker holds the lease of, with the task that renews it until the job
        has ended: the current one and those whose images are still being written."""
        self._wake = asyncio.Event()

    @property
    def engine(self) -> Engine:
        """This worker's engine."""
        return self.runner.engine

    def info(self) -> WorkerInfo:
        """What this worker runs and holds, for heartbeats."""
        try:
            loaded = list(self.engine.info().loaded_models)
        except Exception:  # an engine between processes: show nothing rather than fail
            loaded = []
        return WorkerInfo(
            name=self.name, device=self.device, job=self.current, loaded_models=loaded
        )

    def _forward(self, event: JobEvent) -> None:
        # A job whose claim was lost runs elsewhere now: its local end is nobody's news.
        if event.job.id not in self._lost:
            self._emit(event)
            if event.type == "progress" and self._share_preview is not None:
                self._maybe_share_preview(event.job)

    def _maybe_share_preview(self, job: Job) -> None:
        """Encode and share the job's newest preview, one at a time (a step that comes while
        one is being encoded is skipped: the next one supersedes it)."""
        step = job.progress.preview_step
        if not step or self._shared_step.get(job.id) == step:
            return
        if self._sharing is not None and not self._sharing.done():
            return
        self._shared_step = {job.id: step}
        self._sharing = asyncio.get_running_loop().create_task(self._share(job))

    async def _share(self, job: Job) -> None:
        preview = await self.runner.preview_png(job)
        if preview is not None and self._share_preview is not None:
            self._share_preview(job.id, *preview)

    def holds(self, job_id: str) -> bool:
        """Whether ``job_id`` runs here (on the engine, or still writing its images)."""
        return job_id == self.current or job_id in self._held

    def wake(self) -> None:
        """A job was queued: claim now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and run jobs until cancelled."""
        consumer = asyncio.create_task(self.runner.consume(), name=f"{self.name}-engine")
        # A claimed download runs in the runner's download lane (a thread), not on the engine.
        downloads = asyncio.create_task(self.runner.consume_downloads(), name=f"{self.name}-dl")
        try:
            while True:
                job = await self._next()
                self.current = job.id
                try:
                    await self._run(job)
                finally:
                    self.current = None
        except asyncio.CancelledError:
            # Stopping cleanly: the leases held lapse now, so any node requeues those jobs at
            # its next heartbeat instead of after the whole lease.
            for job_id in list(self._held):
                with contextlib.suppress(Exception):
                    await self.store.release(job_id, self.name)
            raise
        finally:
            for task in (*self._held.values(), consumer, downloads):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _next(self) -> Job:
        while True:
            self._wake.clear()
            job: Job | None = None
            try:
                loaded = self.engine.info().loaded_models
                job = await self.store.claim(
                    self.name,
                    loaded=loaded,
                    affinity_wait=self.options.affinity_wait,
                    lease=self.options.lease,
                )
            except RetryLaterError:
                pass  # the database is away: try again at the next poll
            except Exception:
                logger.exception("claiming a job failed")
            if job is not None:
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _IDLE_POLL)

    async def _run(self, job: Job) -> None:
        """Run a claimed job; return once the engine is free for the next claim. A job whose
        images are still being written keeps its lease (renewed) until it has ended."""
        logger.info("%s claimed job %s (attempt %d)", self.name, job.id, job.attempts + 1)
        try:
            plan = await asyncio.to_thread(planning.plan_for_job, job, self.settings, self.registry)
        except SdrestError as exc:
            await self.runner.finish(job, "failed", error=JobError(exc.code, exc.message))
            self._lost.discard(job.id)
            return
        claimed = [(job, plan), *await self._partners(plan)]
        # Queued with no await between: the runner's consumer finds them together and runs the
        # partners in the first one's native call (see jobs/coalesce.py).
        for each, its_plan in claimed:
            await self.runner.enqueue(each, its_plan, recovered=True)
        for each, _ in claimed:
            self._held[each.id] = asyncio.create_task(
                self._hold(each.id), name=f"{self.name}-lease"
            )
        await self.runner.wait_engine_free(job.id)

    async def _partners(self, plan: object) -> list[tuple[Job, GenerationPlan]]:
        """The waiting jobs that can share ``plan``'s native call (the same txt2img, seeds that
        continue its batch), claimed by this worker; none when coalescing is off."""
        if not (self.runner.coalesce and coalesce.eligible(plan)):
            return []
        try:
            waiting = await self.store.waiting(coalesce.MAX_IMAGES)
            plans = await asyncio.to_thread(self._plans, waiting)
            chosen = coalesce.partners(plan, list(plans.items()))
            taken = await self.store.claim_these(chosen, self.name, self.options.lease)
        except RetryLaterError:  # the database is away: the claimed job runs alone
            return []
        return [(each, plan_) for each in taken if (plan_ := plans.get(each.id)) is not None]

    def _plans(self, jobs: Sequence[Job]) -> dict[str, GenerationPlan | None]:
        """Each waiting job's plan when it could share a call (None otherwise), in order."""
        plans: dict[str, GenerationPlan | None] = {}
        for each in jobs:
            if each.kind != "img_gen" or not coalesce.may_coalesce(each.request):
                plans[each.id] = None  # not planned: it would decode its images for nothing
                continue
            try:
                planned = planning.plan_for_job(each, self.settings, self.registry)
            except SdrestError:  # it fails when it is claimed, and says why then
                planned = None
            plans[each.id] = planned if coalesce.eligible(planned) else None
        return plans

    async def _hold(self, job_id: str) -> None:
        """Renew the job's lease until it has ended (its files written, or it stopped)."""
        keeper = asyncio.create_task(self._keep_lease(job_id), name=f"{self.name}-renew")
        try:
            await self.runner.wait_done(job_id, None)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self._held.pop(job_id, None)
            self._lost.discard(job_id)

    async def _keep_lease(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.options.lease / 3)
            try:
                renewal = await self.store.renew(job_id, self.name, self.options.lease)
            except RetryLaterError:
                continue  # keep generating; the result is written only if the claim survives
            if not renewal.held:
                logger.warning("%s lost its claim on job %s: stopping it", self.name, job_id)
                self._lost.add(job_id)
                await self.stop(job_id, LOST_LEASE)
                return
            if renewal.stop is not None:
                await self.stop(job_id, renewal.stop)

    async def stop(self, job_id: str, reason: JobError) -> None:
        """Stop ``job_id`` if this worker runs it (a cancel, a stop, a lost claim)."""
        job = self.runner.live(job_id)
        if job is None or job.finished or self.runner.stop_requested(job_id):
            return
        with contextlib.suppress(SdrestError):  # an engine that cannot abort finishes the job
            if reason.code == "cancelled":
                await self.runner.cancel(job)
            else:
                await self.runner.request_stop(job)
