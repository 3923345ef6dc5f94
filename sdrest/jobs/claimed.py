"""The shared store as one engine worker's private runner sees it (see sdrest/jobs/workers.py):
its writes need the worker's claim, so a worker whose lease ran out (cut off from the database
for too long) can never overwrite the run another worker took over."""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Sequence

from sdrest.errors import RetryLaterError
from sdrest.jobs.store import JobStoreBase, NodeInfo, Renewal
from sdrest.schemas import Job, JobError

logger = logging.getLogger(__name__)

_RETRY_WRITE = 0.5
"""Seconds between tries of a worker's write while the database is away."""


class ClaimedStore(JobStoreBase):
    """The shared store as one worker's runner sees it: its writes need the worker's claim."""

    def __init__(
        self, store: JobStoreBase, worker: str, lease: float, on_lost: Callable[[str], None]
    ) -> None:
        self.inner, self.worker, self.lease = store, worker, lease
        self.on_lost = on_lost
        """Called with a job's id when a write finds the claim gone: what this worker does
        with that job from now on is nobody's news."""
        self.single_node = store.single_node

    async def open(self) -> None:
        """The shared store is opened by its owner."""

    async def close(self) -> None:
        """The shared store is closed by its owner."""

    async def insert(self, job: Job) -> None:
        """Workers never accept jobs."""
        raise RuntimeError("a worker does not insert jobs")

    async def update(self, job: Job, *, worker: str | None = None) -> bool:
        """Write only while this worker holds the claim. While the database is away the write
        is retried for up to one lease: past that the job is another worker's anyway."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease
        while True:
            try:
                written = await self.inner.update(job, worker=self.worker)
                break
            except RetryLaterError:
                if loop.time() > deadline:
                    logger.warning("job %s: state not recorded, the database is away", job.id)
                    written = False
                    break
                await asyncio.sleep(_RETRY_WRITE)
        if not written:
            self.on_lost(job.id)
        return written

    async def get(self, job_id: str, *, with_request: bool = False) -> Job | None:
        """See :meth:`JobStoreBase.get`."""
        return await self.inner.get(job_id, with_request=with_request)

    async def unfinished(self) -> builtins.list[Job]:
        """See :meth:`JobStoreBase.unfinished`."""
        return await self.inner.unfinished()

    async def active(self) -> builtins.list[Job]:
        """See :meth:`JobStoreBase.active`."""
        return await self.inner.active()

    async def expire(self, finished_before: float) -> builtins.list[str]:
        """See :meth:`JobStoreBase.expire`."""
        return await self.inner.expire(finished_before)

    async def list(
        self,
        *,
        owner: str | None = None,
        statuses: tuple[str, ...] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Job]:
        """See :meth:`JobStoreBase.list`."""
        return await self.inner.list(owner=owner, statuses=statuses, limit=limit, offset=offset)

    async def delete(self, job_id: str) -> bool:
        """See :meth:`JobStoreBase.delete`."""
        return await self.inner.delete(job_id)

    async def count_queued(self) -> int:
        """See :meth:`JobStoreBase.count_queued`."""
        return await self.inner.count_queued()

    async def claim(
        self, worker: str, *, loaded: Sequence[str], affinity_wait: float, lease: float
    ) -> Job | None:
        """See :meth:`JobStoreBase.claim`."""
        return await self.inner.claim(
            worker, loaded=loaded, affinity_wait=affinity_wait, lease=lease
        )

    async def waiting(self, limit: int) -> builtins.list[Job]:
        """See :meth:`JobStoreBase.waiting`."""
        return await self.inner.waiting(limit)

    async def claim_these(
        self, job_ids: Sequence[str], worker: str, lease: float
    ) -> builtins.list[Job]:
        """See :meth:`JobStoreBase.claim_these`."""
        return await self.inner.claim_these(job_ids, worker, lease)

    async def renew(self, job_id: str, worker: str, lease: float) -> Renewal:
        """See :meth:`JobStoreBase.renew`."""
        return await self.inner.renew(job_id, worker, lease)

    async def requeue_expired(
        self, max_attempts: int, *, everything: bool = False
    ) -> builtins.list[Job]:
        """See :meth:`JobStoreBase.requeue_expired`."""
        return await self.inner.requeue_expired(max_attempts, everything=everything)

    async def release(self, job_id: str, worker: str) -> bool:
        """See :meth:`JobStoreBase.release`."""
        return await self.inner.release(job_id, worker)

    async def cancel_queued(self, job_id: str, error: JobError) -> Job | None:
        """See :meth:`JobStoreBase.cancel_queued`."""
        return await self.inner.cancel_queued(job_id, error)

    async def request_stop(self, job_id: str, error: JobError) -> bool:
        """See :meth:`JobStoreBase.request_stop`."""
        return await self.inner.request_stop(job_id, error)

    async def heartbeat(self, node: NodeInfo) -> None:
        """See :meth:`JobStoreBase.heartbeat`."""
        await self.inner.heartbeat(node)

    async def nodes(self, *, within: float) -> builtins.list[NodeInfo]:
        """See :meth:`JobStoreBase.nodes`."""
        return await self.inner.nodes(within=within)

    async def forget_node(self, name: str) -> None:
        """See :meth:`JobStoreBase.forget_node`."""
        await self.inner.forget_node(name)
