"""The job runner of a node that shares its queue: the database is the queue.

:class:`ClusterRunner` keeps :class:`~sdrest.jobs.runner.JobRunner`'s public methods (the
service facade and every family call them unchanged) but holds no queue of its own: accepting a
job inserts it (queued) into the store, and engine workers (:mod:`sdrest.jobs.workers`), on this
node or any other, claim it from there. It is used with ``--database-url`` (PostgreSQL, any
number of nodes) and with ``--engine-workers`` other than 1 (SQLite: one machine, N engines).

What a node shows (live jobs, queue positions, progress) is a cache fed by the event bus, which
gets every event of this node's workers and, through the relay (:mod:`sdrest.jobs.relay`), every
other node's; it is checked against the store every heartbeat, so a missed event costs at most
one heartbeat of staleness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from PIL import Image

from sdrest.engine.base import Engine, create_engine
from sdrest.errors import ConflictError, QueueFullError, RetryLaterError, SdrestError
from sdrest.jobs.events import JobEvent
from sdrest.jobs.runner import JobRunner
from sdrest.jobs.store import NodeInfo, PreviewEvent
from sdrest.jobs.workers import EngineWorker, WorkerOptions, worker_settings
from sdrest.models import ModelRegistry
from sdrest.schemas import Job, JobError
from sdrest.settings import Settings
from sdrest.tasks import cancel_all

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""A job whose worker vanished mid-run is retried once (as after a restart, service.py)."""
_STOP_WAIT = 5.0
"""Seconds a cancel waits for the stopped job to be recorded."""
_RECHECK = 1.0
"""Seconds between looks at the store while waiting for a job (in case an event was missed)."""
_NODE_TTL_HEARTBEATS = 3
"""A node is listed while its last heartbeat is at most this many heartbeats old."""


@dataclass(frozen=True)
class RelayHandlers:
    """What a node does with what the relay brings from the other nodes."""

    on_event: Callable[[JobEvent], None]
    on_stop: Callable[[str], None]
    """A stop was recorded for this job id: its worker checks now."""
    on_wake: Callable[[], None]
    """A job was queued (or may have been, while disconnected): idle workers look."""
    on_preview: Callable[[PreviewEvent], None]


class Relay(Protocol):
    """Carries events, stops and wake-ups between nodes (PostgreSQL LISTEN/NOTIFY)."""

    def send(self, event: JobEvent) -> None:
        """Deliver ``event`` to every other node (in order, without waiting)."""

    async def stop(self, job_id: str) -> None:
        """Tell every node's workers to check for a stop of ``job_id`` now."""

    async def wake(self) -> None:
        """Tell every node's workers that a job was queued."""

    def send_preview(self, job_id: str, step: int, png: bytes) -> None:
        """Deliver a running job's latest preview to every other node."""

    async def run(self, handlers: RelayHandlers) -> None:
        """Listen until cancelled (reconnecting by itself)."""


def node_name() -> str:
    """This process's default node name: host and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


def pin_device(engine: Engine, device: str) -> None:
    """Let ``engine``'s worker process see only GPU ``device`` (CUDA or ROCm numbering)."""
    env = getattr(engine, "env", None)
    if isinstance(env, dict):
        env.update(CUDA_VISIBLE_DEVICES=device, HIP_VISIBLE_DEVICES=device)
    else:
        logger.warning("--devices needs --engine-mode worker: %s ignored", device)


class ClusterRunner(JobRunner):
    """A node's view of the shared queue, and its local engine workers (``engine_workers``)."""

    def __init__(
        self,
        *,
        settings: Settings,
        registry: ModelRegistry,
        serves_http: bool = True,
        **runner_args: Any,
    ) -> None:
        super().__init__(**runner_args)
        self.settings = settings
        self.registry = registry
        self.node = NodeInfo(
            name=settings.engine.node_name or node_name(),
            role="api+worker" if serves_http else "worker",
            host=socket.gethostname(),
            pid=os.getpid(),
            started=time.time(),
        )
        if settings.engine.engine_workers == 0:
            self.node.role = "api"
        self.engine_factory: Callable[[Settings], Engine] = create_engine
        """Makes each local worker's engine (tests give fakes)."""
        self.relay: Relay | None = None
        if not self.store.single_node:
            from sdrest.jobs.relay import PgRelay
            from sdrest.jobs.store_pg import PgJobStore

            if isinstance(self.store, PgJobStore):
                self.relay = PgRelay(self.store, self.node.name)
        self.workers: list[EngineWorker] = []
        self._active: dict[str, Job] = {}
        """Queued and running jobs in claim order, as the last event or store read showed them."""
        self._waiters: dict[str, asyncio.Event] = {}
        self._stops: set[str] = set()
        self._owned_engines: list[Engine] = []
        self._previews_elsewhere: dict[str, tuple[int, bytes]] = {}
        """The latest preview of each job running on another node (from the relay)."""
        self.known_nodes: list[NodeInfo] = []
        """The live nodes as of the last heartbeat (health, ``/api/system``)."""
        self.events.listen(self._observe)

    # -- what this node shows ---------------------------------------------------------------

    def _observe(self, event: JobEvent) -> None:
        job = event.job
        if job.finished:
            self._active.pop(job.id, None)
            self._previews_elsewhere.pop(job.id, None)
            self._stops.discard(job.id)
            waiter = self._waiters.pop(job.id, None)
            if waiter is not None:
                waiter.set()
        elif job.id in self._active or event.type == "state":
            self._active[job.id] = job

    def live(self, job_id: str) -> Job | None:
        """A queued or running job as this node last heard of it (a copy), else None."""
        job = self._active.get(job_id)
        return msgspec.structs.replace(job) if job is not None else None

    @property
    def current_job(self) -> Job | None:
        """The oldest running job (a copy)."""
        running = [job for job in self._active.values() if job.status == "generating"]
        return msgspec.structs.replace(running[0]) if running else None

    def queued_ids(self) -> list[str]:
        """Queued job ids in claim order."""
        return [job.id for job in self._active.values() if job.status == "queued"]

    def queued_jobs(self) -> list[Job]:
        """Queued jobs in claim order (copies)."""
        return [msgspec.structs.replace(j) for j in self._active.values() if j.status == "queued"]

    def queue_position(self, job_id: str) -> int:
        """1-based position among the queued jobs; 0 when not queued."""
        ids = self.queued_ids()
        return ids.index(job_id) + 1 if job_id in ids else 0

    def download_jobs(self) -> list[Job]:
        """Downloads wait in the one shared queue here: there is no separate lane."""
        return []

    def stop_requested(self, job_id: str) -> bool:
        """Whether this node asked for a stop of this job."""
        return job_id in self._stops

    def _local_worker(self, job_id: str) -> EngineWorker | None:
        return next((w for w in self.workers if w.holds(job_id)), None)

    def preview(self, job_id: str) -> tuple[int, Image.Image] | None:
        """The latest preview of a job running on this node's workers."""
        worker = self._local_worker(job_id)
        return worker.runner.preview(job_id) if worker is not None else None

    async def preview_png(self, job: Job) -> tuple[int, bytes] | None:
        """(step, PNG) of a running job's latest preview, wherever it runs."""
        worker = self._local_worker(job.id)
        if worker is None:
            return self._previews_elsewhere.get(job.id)
        return await worker.runner.preview_png(job)

    async def wait_done(self, job_id: str, timeout: float | None) -> None:
        """Wait until the job has finished, wherever it runs."""
        async with asyncio.timeout(timeout):
            while True:
                if job_id not in self._active:
                    stored = await self.store.get(job_id)
                    if stored is None or stored.finished:
                        return
                waiter = self._waiters.setdefault(job_id, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), _RECHECK)
                if waiter.is_set():
                    return

    # -- accepting and stopping jobs ---------------------------------------------------------

    def announce_deleted(self, job: Job) -> None:
        """Tell the views of every node that a finished job was deleted."""
        self._emit(JobEvent("deleted", job))

    def _emit(self, event: JobEvent) -> None:
        """Publish on this node and on every other one."""
        self.events.publish(event)
        if self.relay is not None:
            self.relay.send(event)

    async def enqueue(self, job: Job, plan: Any, *, recovered: bool = False) -> Job:
        """Insert the job into the shared queue (429 past ``max_queue`` queued jobs)."""
        if not recovered:
            if await self.store.count_queued() >= self._queue.capacity:
                raise QueueFullError(f"job queue is full ({self._queue.capacity} pending)")
            await self.store.insert(job)
        self._emit(JobEvent("state", job))
        for worker in self.workers:
            worker.wake()
        if self.relay is not None:
            with contextlib.suppress(SdrestError):
                await self.relay.wake()
        return msgspec.structs.replace(job)

    async def cancel(self, job: Job) -> Job:
        """Cancel a queued job now, a running one by stopping it on its worker."""
        if job.finished:
            return job
        reason = JobError("cancelled", "job cancelled by client")
        cancelled = await self.store.cancel_queued(job.id, reason)
        if cancelled is not None:
            self._emit(JobEvent("state", cancelled))
            return cancelled
        stop = JobError("cancelled", "job cancelled by client while generating")
        return await self._stop_running(job, stop, wait=True)

    async def request_stop(self, job: Job, *, wait: bool = False) -> Job:
        """Stop a job whatever its state; a running one ends as ``interrupted``."""
        if job.finished:
            return job
        cancelled = await self.store.cancel_queued(
            job.id, JobError("cancelled", "job cancelled by client")
        )
        if cancelled is not None:
            self._emit(JobEvent("state", cancelled))
            return cancelled
        stop = JobError("interrupted", "job stopped by client")
        return await self._stop_running(job, stop, wait=wait)

    def request_stop_soon(self, job_id: str) -> None:
        """:meth:`request_stop` from code that may not await."""
        job = self._active.get(job_id)
        if job is None:
            return
        task = asyncio.get_running_loop().create_task(self._stop_quietly(job))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop_running(self, job: Job, reason: JobError, *, wait: bool) -> Job:
        if await self.store.request_stop(job.id, reason):
            self._stops.add(job.id)
            self._deliver_stop(job.id)
            if self.relay is not None:
                with contextlib.suppress(SdrestError):
                    await self.relay.stop(job.id)
            if wait:
                with contextlib.suppress(TimeoutError):
                    await self.wait_done(job.id, _STOP_WAIT)
        return await self.store.get(job.id) or job

    def _deliver_stop(self, job_id: str) -> None:
        """A stop for ``job_id`` was recorded: the local worker running it (if any) reads it
        at once instead of at its next lease renewal."""
        worker = self._local_worker(job_id)
        if worker is not None:
            task = asyncio.get_running_loop().create_task(self._stop_on(worker, job_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _stop_on(self, worker: EngineWorker, job_id: str) -> None:
        renewal = await self.store.renew(job_id, worker.name, worker.options.lease)
        if renewal.stop is not None:
            await worker.stop(job_id, renewal.stop)

    async def between_jobs(self, operation: Callable[[], Awaitable[None]]) -> None:
        """Model loads and unloads run on this node's first worker, between its jobs."""
        if not self.workers:
            raise ConflictError("this node runs no engine workers (--engine-workers 0)")
        await self.workers[0].runner.between_jobs(operation)

    # -- running -----------------------------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        """Take the service's engine (the first local worker's, unless ``--devices`` gives
        each worker its own) and make the local workers, so that model loads asked for before
        :meth:`consume` runs (``--preload``) already have a worker to wait for."""
        super().attach(engine)
        if not self.workers:
            self._start_workers()

    def _options(self) -> WorkerOptions:
        engine = self.settings.engine
        return WorkerOptions(
            lease=engine.lease_seconds,
            affinity_wait=engine.affinity_wait,
            max_attempts=MAX_ATTEMPTS,
        )

    def _start_workers(self) -> None:
        count = self.settings.engine.engine_workers
        devices = [d.strip() for d in self.settings.engine.devices.split(",") if d.strip()]
        if devices:
            count = len(devices)
        for index in range(count):
            settings = worker_settings(self.settings, index, count)
            device = devices[index] if devices else ""
            if index == 0 and self._engine is not None and not devices:
                engine = self._engine
            else:
                engine = self.engine_factory(settings)
                self._owned_engines.append(engine)
                if device:
                    pin_device(engine, device)
            self.workers.append(
                EngineWorker(
                    f"{self.node.name}/{index}",
                    store=self.store,
                    engine=engine,
                    settings=settings,
                    registry=self.registry,
                    options=self._options(),
                    emit=self._emit,
                    after_convert=self._after_convert,
                    after_download=self._after_download,
                    device=device,
                    share_preview=self.relay.send_preview if self.relay is not None else None,
                )
            )

    async def consume(self) -> None:
        """Run this node: its engine workers, the relay, heartbeats and lease checks."""
        if self.store.single_node:  # one process owns the database: nothing else runs jobs
            for job in await self.store.requeue_expired(MAX_ATTEMPTS, everything=True):
                logger.info("job %s interrupted by a server stop: %s", job.id, job.status)
        if not self.workers and self.store.single_node:
            logger.warning(
                "--engine-workers 0 without --database-url: no worker will run the queued jobs"
            )
        tasks = [asyncio.create_task(w.run(), name=w.name) for w in self.workers]
        tasks.append(asyncio.create_task(self._maintain(), name="sdrest-node"))
        if self.relay is not None:
            relay = self.relay.run(
                RelayHandlers(
                    self._relayed, self._relayed_stop, self._relayed_wake, self._relayed_preview
                )
            )
            tasks.append(asyncio.create_task(relay, name="sdrest-relay"))
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_all(tasks)
            for engine in self._owned_engines:
                with contextlib.suppress(Exception):
                    await engine.close()
            with contextlib.suppress(Exception):
                await self.store.forget_node(self.node.name)

    async def consume_downloads(self) -> None:
        """Downloads are claimed from the shared queue like any job: nothing to do here."""
        await asyncio.Event().wait()

    def _relayed(self, event: JobEvent) -> None:
        self.events.publish(msgspec.structs.replace(event, relayed=True))

    def _relayed_preview(self, preview: PreviewEvent) -> None:
        if preview.job_id in self._active:
            self._previews_elsewhere[preview.job_id] = (preview.step, preview.png)

    def _relayed_stop(self, job_id: str) -> None:
        self._deliver_stop(job_id)

    def _relayed_wake(self) -> None:
        for worker in self.workers:
            worker.wake()

    async def _maintain(self) -> None:
        """Every heartbeat: requeue jobs whose worker vanished, resync, say this node lives."""
        while True:
            try:
                await self.maintain_once()
            except RetryLaterError:
                pass  # the database is away: the pool reconnects, try again next beat
            except Exception:
                logger.exception("node maintenance failed")
            await asyncio.sleep(self.settings.engine.heartbeat_seconds)

    async def maintain_once(self) -> None:
        """One heartbeat's work (see :meth:`_maintain`)."""
        for job in await self.store.requeue_expired(MAX_ATTEMPTS):
            logger.warning("job %s: its worker stopped renewing its lease: %s", job.id, job.status)
            self._emit(JobEvent("state", job))
            self._relayed_wake()
        stored = await self.store.active()
        known = self._active
        fresh: dict[str, Job] = {}
        for job in stored:
            cached = known.get(job.id)
            fresh[job.id] = cached if cached is not None and cached.status == job.status else job
        for job_id in set(known) - set(fresh):  # ended while an event was missed
            waiter = self._waiters.pop(job_id, None)
            if waiter is not None:
                waiter.set()
        self._active = fresh
        self.node.workers = [worker.info() for worker in self.workers]
        await self.store.heartbeat(self.node)
        self.known_nodes = await self.nodes()

    async def nodes(self) -> list[NodeInfo]:
        """The nodes heard from lately (this one included)."""
        within = self.settings.engine.heartbeat_seconds * _NODE_TTL_HEARTBEATS
        return await self.store.nodes(within=max(within, 1.0))
