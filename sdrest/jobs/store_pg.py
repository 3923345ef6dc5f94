"""The shared job store: PostgreSQL through psycopg 3's async pool.

Every node (API nodes and worker nodes, on any number of machines) works on the same tables. The
queue is the ``jobs`` table: a worker claims the oldest runnable job with ``SELECT ... FOR UPDATE
SKIP LOCKED`` (two workers never take the same one) and holds it under a lease it renews while
it runs. Times that decide leases are the database's clock, never a node's.

While the database is away every call raises :class:`~sdrest.errors.RetryLaterError` (503 with
``Retry-After``); the pool reconnects by itself once it is back.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from sdrest.errors import RetryLaterError
from sdrest.jobs.store import (
    JobStoreBase,
    NodeInfo,
    Renewal,
    ended,
    error_bytes,
    error_of,
    job_of,
    request_bytes,
    state_bytes,
    summary_bytes,
)
from sdrest.jobs.store_sqlite import lapsed
from sdrest.schemas import Job, JobError

logger = logging.getLogger(__name__)

NOW = "extract(epoch from clock_timestamp())::float8"
"""The database's clock in Unix seconds: leases and heartbeats never depend on a node's."""
_SCHEMA_LOCK = 0x5D4E57
"""Advisory lock id held while creating the tables: nodes that start together do it in turn."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq         BIGSERIAL,
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    created     DOUBLE PRECISION NOT NULL,
    completed   DOUBLE PRECISION,
    expired     BOOLEAN NOT NULL DEFAULT FALSE,
    request     BYTEA,
    summary     BYTEA,
    state       BYTEA NOT NULL,
    kind        TEXT NOT NULL DEFAULT '',
    model       TEXT NOT NULL DEFAULT '',
    worker      TEXT,
    lease_until DOUBLE PRECISION,
    stop        BYTEA
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
CREATE TABLE IF NOT EXISTS nodes (
    name      TEXT PRIMARY KEY,
    heartbeat DOUBLE PRECISION NOT NULL,
    info      BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS job_events (
    id      BIGSERIAL PRIMARY KEY,
    node    TEXT NOT NULL,
    type    TEXT NOT NULL,
    job_id  TEXT NOT NULL,
    body    BYTEA NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
"""
_node_decoder = msgspec.json.Decoder(NodeInfo)


class PgJobStore(JobStoreBase):
    """Jobs, the queue and node heartbeats in PostgreSQL (``--database-url``)."""

    single_node = False

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=2.0,  # a request waits this long for a connection, then gets a 503
            reconnect_timeout=0,  # retry for ever: the database coming back is the normal case
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
        )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (autocommit); a database that is away is a 503."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout, TimeoutError) as exc:
            logger.warning("job database unavailable: %s", exc)
            raise RetryLaterError("the job database is unavailable", retry_after=2) from exc

    async def open(self) -> None:
        """Connect (waiting up to the pool's timeout) and create the tables if needed."""
        await self._pool.open(wait=False)
        async with self.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await conn.execute(_SCHEMA)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._pool.close()

    async def _rows(self, sql: str, args: Sequence[object] = ()) -> builtins.list[tuple[Any, ...]]:
        async with self.connection() as conn:
            cursor = await conn.execute(sql, args)
            return await cursor.fetchall() if cursor.description else []

    async def _jobs(self, sql: str, args: Sequence[object] = ()) -> builtins.list[Job]:
        return [job_of(*row) for row in await self._rows(sql, args)]

    async def insert(self, job: Job) -> None:
        """Record a newly accepted job with its request (claimable from now on)."""
        request = request_bytes(job)
        await self._rows(
            "INSERT INTO jobs (id, status, owner, created, request, summary, state, kind, model)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                job.id,
                job.status,
                job.owner,
                job.created,
                request,
                summary_bytes(job, request),
                state_bytes(job),
                job.kind,
                job.model,
            ),
        )

    async def update(self, job: Job, *, worker: str | None = None) -> bool:
        """Record a state change; with ``worker``, only while it holds the claim."""
        sql = "UPDATE jobs SET status = %s, completed = %s, state = %s"
        sql += (", request = NULL" if job.finished else "") + " WHERE id = %s"  # see JobStoreBase
        args: tuple[object, ...] = (job.status, job.completed, state_bytes(job), job.id)
        if worker is not None:
            sql += " AND worker = %s AND status = 'generating'"
            args += (worker,)
        async with self.connection() as conn:
            cursor = await conn.execute(sql, args)
            return cursor.rowcount > 0

    async def get(self, job_id: str, *, with_request: bool = False) -> Job | None:
        """One job by id, or None (the request without images unless ``with_request``)."""
        column = "request" if with_request else "summary"
        sql = f"SELECT state, expired, {column} FROM jobs WHERE id = %s"
        jobs = await self._jobs(sql, (job_id,))
        return jobs[0] if jobs else None

    async def unfinished(self) -> builtins.list[Job]:
        """Queued or generating jobs with their full requests, oldest first."""
        return await self._jobs(
            "SELECT state, expired, request FROM jobs"
            " WHERE status IN ('queued', 'generating') ORDER BY seq"
        )

    async def active(self) -> builtins.list[Job]:
        """Queued and generating jobs in claim order (requests without images)."""
        return await self._jobs(
            "SELECT state, expired, summary FROM jobs"
            " WHERE status IN ('queued', 'generating') ORDER BY seq"
        )

    async def expire(self, finished_before: float) -> builtins.list[str]:
        """Mark jobs finished before the cutoff as expired (payloads dropped); their ids."""
        rows = await self._rows(
            "UPDATE jobs SET expired = TRUE, request = NULL, summary = NULL"
            " WHERE NOT expired AND completed IS NOT NULL AND completed < %s RETURNING id",
            (finished_before,),
        )
        return [str(row[0]) for row in rows]

    async def list(
        self,
        *,
        owner: str | None = None,
        statuses: tuple[str, ...] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Job]:
        """Jobs newest first (requests without input images); ``owner`` None = everyone's."""
        where, args = ["NOT expired"], builtins.list[object]()
        if owner is not None:
            where.append("owner = %s")
            args.append(owner)
        if statuses:
            where.append("status = ANY(%s)")
            args.append(list(statuses))
        return await self._jobs(
            f"SELECT state, expired, summary FROM jobs WHERE {' AND '.join(where)}"
            " ORDER BY created DESC, seq DESC LIMIT %s OFFSET %s",
            (*args, limit, offset),
        )

    async def delete(self, job_id: str) -> bool:
        """Remove a finished job's record; False when unknown, queued or running."""
        rows = await self._rows(
            "DELETE FROM jobs WHERE id = %s AND status NOT IN ('queued', 'generating')"
            " RETURNING id",
            (job_id,),
        )
        return bool(rows)

    # -- the queue ----------------------------------------------------------------------------

    async def count_queued(self) -> int:
        """How many jobs wait to be claimed."""
        rows = await self._rows("SELECT COUNT(*) FROM jobs WHERE status = 'queued'")
        return int(rows[0][0])

    async def claim(
        self, worker: str, *, loaded: Sequence[str], affinity_wait: float, lease: float
    ) -> Job | None:
        """Take the next job for ``worker`` (see :meth:`JobStoreBase.claim`)."""
        jobs = await self._jobs(
            f"UPDATE jobs SET status = 'generating', worker = %s, lease_until = {NOW} + %s,"
            " stop = NULL WHERE id = (SELECT id FROM jobs WHERE status = 'queued'"
            " ORDER BY CASE WHEN created < %s THEN 0 WHEN model = ANY(%s) THEN 1 ELSE 2 END, seq"
            " LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING state, expired, request",
            (worker, lease, time.time() - affinity_wait, list(loaded)),
        )
        return jobs[0] if jobs else None

    async def waiting(self, limit: int) -> builtins.list[Job]:
        """The first queued jobs (see :meth:`JobStoreBase.waiting`)."""
        return await self._jobs(
            "SELECT state, expired, request FROM jobs WHERE status = 'queued' ORDER BY seq"
            " LIMIT %s",
            (limit,),
        )

    async def claim_these(
        self, job_ids: Sequence[str], worker: str, lease: float
    ) -> builtins.list[Job]:
        """Take the listed jobs still queued (see :meth:`JobStoreBase.claim_these`)."""
        jobs = await self._jobs(
            f"UPDATE jobs SET status = 'generating', worker = %s, lease_until = {NOW} + %s,"
            " stop = NULL WHERE id = ANY(%s) AND status = 'queued'"
            " RETURNING state, expired, request",
            (worker, lease, list(job_ids)),
        )
        order = {job_id: n for n, job_id in enumerate(job_ids)}
        return sorted(jobs, key=lambda job: order[job.id])

    async def renew(self, job_id: str, worker: str, lease: float) -> Renewal:
        """Extend ``worker``'s lease on a job; says whether it still holds it, and any stop."""
        rows = await self._rows(
            f"UPDATE jobs SET lease_until = {NOW} + %s WHERE id = %s AND worker = %s"
            " AND status = 'generating' RETURNING stop",
            (lease, job_id, worker),
        )
        return Renewal(True, error_of(rows[0][0])) if rows else Renewal(False)

    async def requeue_expired(
        self, max_attempts: int, *, everything: bool = False
    ) -> builtins.list[Job]:
        """Jobs whose lease ran out go back to the queue (or fail past ``max_attempts``)."""
        lapsed_only = "" if everything else f" AND (lease_until IS NULL OR lease_until < {NOW})"
        async with self.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT state, expired, summary FROM jobs WHERE status = 'generating'"
                + lapsed_only
                + " FOR UPDATE SKIP LOCKED"
            )
            changed = [lapsed(job_of(*row), max_attempts) for row in await cursor.fetchall()]
            for job in changed:
                await conn.execute(
                    "UPDATE jobs SET status = %s, completed = %s, state = %s, worker = NULL,"
                    " lease_until = NULL WHERE id = %s",
                    (job.status, job.completed, state_bytes(job), job.id),
                )
        return changed

    async def release(self, job_id: str, worker: str) -> bool:
        """Hand a running job back to the queue (its worker stops cleanly)."""
        rows = await self._rows(
            "UPDATE jobs SET lease_until = 0 WHERE id = %s AND worker = %s"
            " AND status = 'generating' RETURNING id",
            (job_id, worker),
        )
        return bool(rows)

    async def cancel_queued(self, job_id: str, error: JobError) -> Job | None:
        """Cancel a job if it is still queued (a claim in flight locks it: then None)."""
        async with self.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT state, expired, summary FROM jobs WHERE id = %s AND status = 'queued'"
                " FOR UPDATE SKIP LOCKED",
                (job_id,),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            job = ended(job_of(*row), "cancelled", error)
            await conn.execute(
                "UPDATE jobs SET status = %s, completed = %s, state = %s, request = NULL"
                " WHERE id = %s",
                (job.status, job.completed, state_bytes(job), job.id),
            )
        return job

    async def request_stop(self, job_id: str, error: JobError) -> bool:
        """Ask the worker running a job to stop it (it reads this at its next renewal, or at
        once through the relay's notification); False when it is not running."""
        rows = await self._rows(
            "UPDATE jobs SET stop = %s WHERE id = %s AND status = 'generating' RETURNING id",
            (error_bytes(error), job_id),
        )
        return bool(rows)

    # -- nodes --------------------------------------------------------------------------------

    async def heartbeat(self, node: NodeInfo) -> None:
        """Record a node's heartbeat (the database's clock)."""
        node.heartbeat = time.time()
        await self._rows(
            f"INSERT INTO nodes (name, heartbeat, info) VALUES (%s, {NOW}, %s)"
            f" ON CONFLICT (name) DO UPDATE SET heartbeat = {NOW}, info = EXCLUDED.info",
            (node.name, msgspec.json.encode(node)),
        )

    async def nodes(self, *, within: float) -> builtins.list[NodeInfo]:
        """Nodes heard from in the last ``within`` seconds (by the database's clock)."""
        rows = await self._rows(
            f"SELECT info FROM nodes WHERE heartbeat >= {NOW} - %s ORDER BY name", (within,)
        )
        return [_node_decoder.decode(bytes(row[0])) for row in rows]

    async def forget_node(self, name: str) -> None:
        """Drop a node that stopped cleanly."""
        await self._rows("DELETE FROM nodes WHERE name = %s", (name,))

