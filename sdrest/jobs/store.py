"""The job store: one interface, two databases.

:class:`JobStoreBase` is what the job system needs from a database: durable job records, and the
queue itself (claims under a lease, stops asked for from any node, node heartbeats). Two
implementations: :class:`~sdrest.jobs.store_sqlite.JobStore` (SQLite, the embedded default: one
machine) and :class:`~sdrest.jobs.store_pg.PgJobStore` (PostgreSQL, shared by every node).

The request (which may carry megabytes of base64 images) is written once, when the job is
accepted; later state changes rewrite only the small state document, so a job's payload is never
encoded twice. Only queued and running jobs need it (recovery, claims): the write that finishes a
job drops it, and listings read the ``summary`` (the request without its images). Every call is
async: the event loop never waits on the database.
"""

from __future__ import annotations

import builtins
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import msgspec

from sdrest.schemas import ConvertRequest, DownloadRequest, ImgGenRequest, Job, UpscaleRequest
from sdrest.schemas.job import JobError
from sdrest.schemas.nodes import NodeInfo as NodeInfo
from sdrest.schemas.nodes import WorkerInfo as WorkerInfo

_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(Job)
_img_decoder = msgspec.json.Decoder(ImgGenRequest)
_upscale_decoder = msgspec.json.Decoder(UpscaleRequest)
_convert_decoder = msgspec.json.Decoder(ConvertRequest)
_download_decoder = msgspec.json.Decoder(DownloadRequest)
_error_decoder = msgspec.json.Decoder(JobError)


class Renewal(msgspec.Struct, frozen=True):
    """The answer to a lease renewal: whether the worker still holds the job, and the stop a
    client asked for meanwhile (from any node)."""

    held: bool
    stop: JobError | None = None


class PreviewEvent(msgspec.Struct, frozen=True):
    """A running job's latest live preview as PNG, for the nodes that do not run it."""

    job_id: str
    step: int
    png: bytes


def state_bytes(job: Job) -> bytes:
    """The job's state document: everything but its request payload."""
    return _encoder.encode(
        msgspec.structs.replace(job, request=None, upscale=None, convert=None, download=None)
    )


def request_bytes(job: Job) -> bytes | None:
    """The job's request payload (images included), or None."""
    payload = job.request or job.upscale or job.convert or job.download
    return None if payload is None else _encoder.encode(payload)


def summary_bytes(job: Job, request: bytes | None) -> bytes | None:
    """The request without its input images: what job listings read (prompt, size, steps)."""
    if job.request is not None and job.request.has_images:
        return _encoder.encode(job.request.without_images())
    if job.upscale is not None:
        return _encoder.encode(msgspec.structs.replace(job.upscale, image=""))
    return request


def error_bytes(error: JobError) -> bytes:
    """A stop reason as stored."""
    return _encoder.encode(error)


def error_of(data: bytes | None) -> JobError | None:
    """A stored stop reason, or None."""
    return None if data is None else _error_decoder.decode(data)


def job_of(state: bytes, expired: object = False, payload: bytes | None = None) -> Job:
    """A job from its state document, expired flag and request (or summary) payload."""
    job = _state_decoder.decode(state)
    job.expired = bool(expired)
    if payload is not None:
        if job.kind == "upscale":
            job.upscale = _upscale_decoder.decode(payload)
        elif job.kind == "convert":
            job.convert = _convert_decoder.decode(payload)
        elif job.kind == "download":
            job.download = _download_decoder.decode(payload)
        else:
            job.request = _img_decoder.decode(payload)
    return job


def ended(job: Job, status: str, error: JobError) -> Job:
    """``job`` finished now with ``error`` (a cancel, a lost worker), its payload dropped."""
    job.status = "failed" if status == "failed" else "cancelled"
    job.completed = time.time()
    job.error = error
    return job


class JobStoreBase(ABC):
    """Durable jobs and the queue over them; every call is async and safe from the loop."""

    single_node: bool = True
    """True when one process owns the database (SQLite): at start it may requeue every job
    left running, without waiting for leases to run out."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, and create the tables if needed."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect."""

    @abstractmethod
    async def insert(self, job: Job) -> None:
        """Record a newly accepted job with its request (queued: claimable from now on)."""

    @abstractmethod
    async def update(self, job: Job, *, worker: str | None = None) -> bool:
        """Record a state change. With ``worker``, only while that worker holds the job's
        claim (a worker whose lease ran out writes nothing); returns whether it was written.
        A finished job's request payload is dropped (its summary stays)."""

    @abstractmethod
    async def get(self, job_id: str, *, with_request: bool = False) -> Job | None:
        """One job by id, or None. ``expired`` is set on jobs past their retention. The
        request comes without its input images unless ``with_request``."""

    @abstractmethod
    async def unfinished(self) -> builtins.list[Job]:
        """Queued or generating jobs with their full requests, oldest first."""

    @abstractmethod
    async def active(self) -> builtins.list[Job]:
        """Queued and generating jobs in claim order (requests without images)."""

    @abstractmethod
    async def expire(self, finished_before: float) -> builtins.list[str]:
        """Mark jobs finished before the cutoff as expired; returns their ids."""

    @abstractmethod
    async def list(
        self,
        *,
        owner: str | None = None,
        statuses: tuple[str, ...] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Job]:
        """Jobs newest first (requests without input images); ``owner`` None = everyone's."""

    @abstractmethod
    async def delete(self, job_id: str) -> bool:
        """Remove a finished job's record for good (a queued or running one is left alone,
        atomically against claims); returns whether a record was removed."""

    # -- the queue ----------------------------------------------------------------------------

    @abstractmethod
    async def count_queued(self) -> int:
        """How many jobs wait to be claimed."""

    @abstractmethod
    async def claim(
        self, worker: str, *, loaded: Sequence[str], affinity_wait: float, lease: float
    ) -> Job | None:
        """Take the next job for ``worker`` under a lease of ``lease`` seconds, or None.

        The oldest queued job, except that a job for a model in ``loaded`` goes first while
        no job has waited longer than ``affinity_wait`` seconds. The job comes with its full
        request and its stored state (status ``queued``: the worker marks it started)."""

    @abstractmethod
    async def waiting(self, limit: int) -> builtins.list[Job]:
        """The first ``limit`` queued jobs in the order they were queued, with their full
        requests (read only: a worker looks for jobs to coalesce with the one it claimed)."""

    @abstractmethod
    async def claim_these(
        self, job_ids: Sequence[str], worker: str, lease: float
    ) -> builtins.list[Job]:
        """Take the listed jobs that are still queued for ``worker`` (as :meth:`claim` does),
        in the order listed; the others are left alone (taken or cancelled meanwhile)."""

    @abstractmethod
    async def renew(self, job_id: str, worker: str, lease: float) -> Renewal:
        """Extend ``worker``'s lease on a job; says whether it still holds it, and any stop."""

    @abstractmethod
    async def requeue_expired(
        self, max_attempts: int, *, everything: bool = False
    ) -> builtins.list[Job]:
        """Jobs whose worker stopped renewing its lease (every running one with
        ``everything``) go back to the queue, or fail once they started ``max_attempts``
        times. Returns them as they are now."""

    @abstractmethod
    async def release(self, job_id: str, worker: str) -> bool:
        """A worker that stops cleanly hands its running job back to the queue at once (no
        waiting for its lease); False when it no longer held it."""

    @abstractmethod
    async def cancel_queued(self, job_id: str, error: JobError) -> Job | None:
        """Cancel a job if it is still queued (atomically against claims); None otherwise."""

    @abstractmethod
    async def request_stop(self, job_id: str, error: JobError) -> bool:
        """Ask the worker running a job to stop it with ``error``; False when not running."""

    # -- nodes --------------------------------------------------------------------------------

    @abstractmethod
    async def heartbeat(self, node: NodeInfo) -> None:
        """Record a node's heartbeat and what it runs."""

    @abstractmethod
    async def nodes(self, *, within: float) -> builtins.list[NodeInfo]:
        """Nodes heard from in the last ``within`` seconds, by name."""

    @abstractmethod
    async def forget_node(self, name: str) -> None:
        """Drop a node that stopped cleanly."""


def open_job_store(database_url: str, data_path: Path) -> JobStoreBase:
    """The store a configuration asks for: PostgreSQL for a ``postgresql://`` URL, else
    SQLite under ``data_path``."""
    if database_url:
        from sdrest.jobs.store_pg import PgJobStore  # psycopg only when asked for

        return PgJobStore(database_url)
    from sdrest.jobs.store_sqlite import JobStore

    return JobStore(data_path / "sdrest.sqlite3")

