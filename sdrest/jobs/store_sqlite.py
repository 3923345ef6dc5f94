"""The embedded job store: SQLite (stdlib sqlite3, WAL) on one thread of its own.

One process owns the database, so every call runs in turn on the store's thread: a claim is a
read and a write with nothing in between, and needs no locking of its own.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import msgspec

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
from sdrest.schemas import Job, JobError, Progress

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id        TEXT PRIMARY KEY,
    status    TEXT NOT NULL,
    owner     TEXT NOT NULL DEFAULT '',
    created   REAL NOT NULL,
    completed REAL,
    expired   INTEGER NOT NULL DEFAULT 0,
    request   BLOB,
    summary   BLOB,
    state     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created);
CREATE TABLE IF NOT EXISTS nodes (
    name      TEXT PRIMARY KEY,
    heartbeat REAL NOT NULL,
    info      BLOB NOT NULL
);
"""
_ADDED_COLUMNS = {
    "summary": "BLOB",
    "kind": "TEXT NOT NULL DEFAULT ''",
    "model": "TEXT NOT NULL DEFAULT ''",
    "worker": "TEXT",
    "lease_until": "REAL",
    "stop": "BLOB",
}
"""Columns newer than the first schema, added to an older database when it is opened."""
_node_decoder = msgspec.json.Decoder(NodeInfo)
_DROP_PAYLOAD = ", request = NULL"
"""Added to the write that finishes a job. Only queued and running jobs need their request
(recovery, claims); listings read ``summary``. SQLite keeps a large value in a chain of overflow
pages that must be walked to reach the columns stored after it, so a finished job's request of a
few MB of base64 images would otherwise be read through by every history listing (every
``/api/queue/status`` poll)."""


def _drop_payload(job: Job) -> str:
    return _DROP_PAYLOAD if job.finished else ""


class JobStore(JobStoreBase):
    """Job records under ``{data_dir}/sdrest.sqlite3``; claim order is insertion (rowid) order."""

    single_node = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdrest-store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
                for name, declaration in _ADDED_COLUMNS.items():
                    if name not in columns:  # a database from an older version
                        db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")
                # Older versions kept finished jobs' payloads: drop them (_DROP_PAYLOAD).
                db.execute(
                    "UPDATE jobs SET request = NULL WHERE request IS NOT NULL"
                    " AND status NOT IN ('queued', 'generating')"
                )
                self._db = db
            return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        """Create the database and its tables if needed."""
        await self._run(lambda db: None)

    async def close(self) -> None:
        """Close the connection and stop the store thread."""

        def shut(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._run(shut)
        self._executor.shutdown(wait=True)

    async def insert(self, job: Job) -> None:
        """Record a newly accepted job with its request."""
        request = request_bytes(job)
        summary = summary_bytes(job, request)
        row = (job.id, job.status, job.owner, job.created, request, summary, state_bytes(job))
        row_kind = (*row, job.kind, job.model)
        await self._run(
            lambda db: db.execute(
                "INSERT INTO jobs (id, status, owner, created, request, summary, state, kind,"
                " model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row_kind,
            )
        )

    async def update(self, job: Job, *, worker: str | None = None) -> bool:
        """Record a state change; with ``worker``, only while it holds the claim. A finished
        job's request payload is dropped (:data:`_DROP_PAYLOAD`)."""
        sql = "UPDATE jobs SET status = ?, completed = ?, state = ?" + _drop_payload(job)
        sql += " WHERE id = ?"
        row: tuple[object, ...] = (job.status, job.completed, state_bytes(job), job.id)
        if worker is not None:
            sql += " AND worker = ? AND status = 'generating'"
            row += (worker,)
        cursor = await self._run(lambda db: db.execute(sql, row))
        return cursor.rowcount > 0

    async def get(self, job_id: str, *, with_request: bool = False) -> Job | None:
        """One job by id, or None (the request without images unless ``with_request``)."""

        def fetch(db: sqlite3.Connection) -> Job | None:
            column = "request" if with_request else "summary"
            row = db.execute(
                f"SELECT state, expired, {column} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            return None if row is None else job_of(*row)

        return await self._run(fetch)

    async def unfinished(self) -> builtins.list[Job]:
        """Jobs that were queued or generating when the process stopped, oldest first."""
        return await self._select(
            "SELECT state, expired, request FROM jobs"
            " WHERE status IN ('queued', 'generating') ORDER BY created"
        )

    async def active(self) -> builtins.list[Job]:
        """Queued and generating jobs in claim order (requests without images)."""
        return await self._select(
            "SELECT state, expired, summary FROM jobs"
            " WHERE status IN ('queued', 'generating') ORDER BY rowid"
        )

    async def _select(self, sql: str, args: tuple[object, ...] = ()) -> builtins.list[Job]:
        def fetch(db: sqlite3.Connection) -> builtins.list[Job]:
            return [job_of(*row) for row in db.execute(sql, args).fetchall()]

        return await self._run(fetch)

    async def expire(self, finished_before: float) -> builtins.list[str]:
        """Mark jobs finished before the cutoff as expired; returns their ids."""

        def run(db: sqlite3.Connection) -> builtins.list[str]:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM jobs WHERE expired = 0 AND completed IS NOT NULL"
                    " AND completed < ?",
                    (finished_before,),
                )
            ]
            # The request payload is dropped too: an expired job keeps only a tombstone.
            db.executemany(
                "UPDATE jobs SET expired = 1, request = NULL, summary = NULL WHERE id = ?",
                [(i,) for i in ids],
            )
            return ids

        return await self._run(run)

    async def list(
        self,
        *,
        owner: str | None = None,
        statuses: tuple[str, ...] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Job]:
        """Jobs newest first (requests without input images); ``owner`` None = everyone's."""
        where, args = ["expired = 0"], builtins.list[object]()
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        sql = (
            f"SELECT state, expired, summary FROM jobs WHERE {' AND '.join(where)}"
            " ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?"
        )
        return await self._select(sql, (*args, limit, offset))

    async def delete(self, job_id: str) -> bool:
        """Remove a finished job's record; False when unknown, queued or running."""
        cursor = await self._run(
            lambda db: db.execute(
                "DELETE FROM jobs WHERE id = ? AND status NOT IN ('queued', 'generating')",
                (job_id,),
            )
        )
        return cursor.rowcount > 0

    # -- the queue ----------------------------------------------------------------------------

    async def count_queued(self) -> int:
        """How many jobs wait to be claimed."""

        def count(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()
            return int(row[0])

        return await self._run(count)

    async def claim(
        self, worker: str, *, loaded: Sequence[str], affinity_wait: float, lease: float
    ) -> Job | None:
        """Take the next job for ``worker`` (see :meth:`JobStoreBase.claim`)."""
        marks = ", ".join("?" * len(loaded)) or "NULL"

        def take(db: sqlite3.Connection) -> Job | None:
            now = time.time()
            row = db.execute(
                "SELECT id, state, expired, request FROM jobs WHERE status = 'queued'"
                f" ORDER BY CASE WHEN created < ? THEN 0 WHEN model IN ({marks}) THEN 1"
                " ELSE 2 END, rowid LIMIT 1",
                (now - affinity_wait, *loaded),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'generating', worker = ?, lease_until = ?, stop = NULL"
                " WHERE id = ?",
                (worker, now + lease, row[0]),
            )
            return job_of(row[1], row[2], row[3])

        return await self._run(take)

    async def waiting(self, limit: int) -> builtins.list[Job]:
        """The first queued jobs (see :meth:`JobStoreBase.waiting`)."""

        def read(db: sqlite3.Connection) -> builtins.list[Job]:
            rows = db.execute(
                "SELECT state, expired, request FROM jobs WHERE status = 'queued' ORDER BY rowid"
                " LIMIT ?",
                (limit,),
            ).fetchall()
            return [job_of(*row) for row in rows]

        return await self._run(read)

    async def claim_these(
        self, job_ids: Sequence[str], worker: str, lease: float
    ) -> builtins.list[Job]:
        """Take the listed jobs still queued (see :meth:`JobStoreBase.claim_these`)."""

        def take(db: sqlite3.Connection) -> builtins.list[Job]:
            taken = []
            for job_id in job_ids:
                row = db.execute(
                    "UPDATE jobs SET status = 'generating', worker = ?, lease_until = ?,"
                    " stop = NULL WHERE id = ? AND status = 'queued'"
                    " RETURNING state, expired, request",
                    (worker, time.time() + lease, job_id),
                ).fetchone()
                if row is not None:
                    taken.append(job_of(*row))
            return taken

        return await self._run(take)

    async def renew(self, job_id: str, worker: str, lease: float) -> Renewal:
        """Extend ``worker``'s lease on a job; says whether it still holds it, and any stop."""

        def run(db: sqlite3.Connection) -> Renewal:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ?"
                " AND status = 'generating' RETURNING stop",
                (time.time() + lease, job_id, worker),
            )
            row = cursor.fetchone()
            return Renewal(False) if row is None else Renewal(True, error_of(row[0]))

        return await self._run(run)

    async def requeue_expired(
        self, max_attempts: int, *, everything: bool = False
    ) -> builtins.list[Job]:
        """Jobs whose lease ran out go back to the queue (or fail past ``max_attempts``)."""

        def run(db: sqlite3.Connection) -> builtins.list[Job]:
            cutoff = float("inf") if everything else time.time()
            rows = db.execute(
                "SELECT state, expired, summary FROM jobs WHERE status = 'generating'"
                " AND (lease_until IS NULL OR lease_until < ?)",
                (cutoff,),
            ).fetchall()
            changed = [lapsed(job_of(*row), max_attempts) for row in rows]
            for job in changed:
                db.execute(
                    "UPDATE jobs SET status = ?, completed = ?, state = ?, worker = NULL,"
                    " lease_until = NULL WHERE id = ?",
                    (job.status, job.completed, state_bytes(job), job.id),
                )
            return changed

        return await self._run(run)

    async def release(self, job_id: str, worker: str) -> bool:
        """Hand a running job back to the queue (its worker stops cleanly)."""
        cursor = await self._run(
            lambda db: db.execute(
                "UPDATE jobs SET lease_until = 0 WHERE id = ? AND worker = ?"
                " AND status = 'generating'",
                (job_id, worker),
            )
        )
        return cursor.rowcount > 0

    async def cancel_queued(self, job_id: str, error: JobError) -> Job | None:
        """Cancel a job if it is still queued; None otherwise."""

        def run(db: sqlite3.Connection) -> Job | None:
            row = db.execute(
                "SELECT state, expired, summary FROM jobs WHERE id = ? AND status = 'queued'",
                (job_id,),
            ).fetchone()
            if row is None:
                return None
            job = ended(job_of(*row), "cancelled", error)
            db.execute(
                f"UPDATE jobs SET status = ?, completed = ?, state = ?{_DROP_PAYLOAD} WHERE id = ?",
                (job.status, job.completed, state_bytes(job), job.id),
            )
            return job

        return await self._run(run)

    async def request_stop(self, job_id: str, error: JobError) -> bool:
        """Ask the worker running a job to stop it; False when it is not running."""
        cursor = await self._run(
            lambda db: db.execute(
                "UPDATE jobs SET stop = ? WHERE id = ? AND status = 'generating'",
                (error_bytes(error), job_id),
            )
        )
        return cursor.rowcount > 0

    # -- nodes --------------------------------------------------------------------------------

    async def heartbeat(self, node: NodeInfo) -> None:
        """Record a node's heartbeat."""
        node.heartbeat = time.time()
        row = (node.name, node.heartbeat, msgspec.json.encode(node))
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO nodes (name, heartbeat, info) VALUES (?, ?, ?)", row
            )
        )

    async def nodes(self, *, within: float) -> builtins.list[NodeInfo]:
        """Nodes heard from in the last ``within`` seconds."""

        def fetch(db: sqlite3.Connection) -> builtins.list[NodeInfo]:
            rows = db.execute(
                "SELECT info FROM nodes WHERE heartbeat >= ? ORDER BY name",
                (time.time() - within,),
            ).fetchall()
            return [_node_decoder.decode(row[0]) for row in rows]

        return await self._run(fetch)

    async def forget_node(self, name: str) -> None:
        """Drop a node that stopped cleanly."""
        await self._run(lambda db: db.execute("DELETE FROM nodes WHERE name = ?", (name,)))


def lapsed(job: Job, max_attempts: int) -> Job:
    """A running job whose worker is gone: queued again, or failed once it started
    ``max_attempts`` times (a job that kills its worker can never crash-loop the cluster)."""
    if job.attempts >= max_attempts:
        return ended(
            job,
            "failed",
            JobError(
                "server_restarted",
                f"the worker running this job stopped, {job.attempts} times;"
                " it is not retried again",
            ),
        )
    job.status, job.started, job.progress = "queued", None, Progress()
    return job
