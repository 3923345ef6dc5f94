"""Durable job records in SQLite (stdlib sqlite3, WAL), on one thread of their own.

The request (which may carry megabytes of base64 images) is written once, when the job is
accepted; later state changes rewrite only the small state document, so a job's payload is never
encoded twice. All calls are async and run on the store's thread: the event loop never waits on
disk.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import msgspec

from sdrest.schemas import ConvertRequest, DownloadRequest, ImgGenRequest, Job, UpscaleRequest

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
"""

_request_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(Job)
_img_decoder = msgspec.json.Decoder(ImgGenRequest)
_upscale_decoder = msgspec.json.Decoder(UpscaleRequest)
_convert_decoder = msgspec.json.Decoder(ConvertRequest)
_download_decoder = msgspec.json.Decoder(DownloadRequest)


def _state_bytes(job: Job) -> bytes:
    return _request_encoder.encode(
        msgspec.structs.replace(job, request=None, upscale=None, convert=None, download=None)
    )


def _request_bytes(job: Job) -> bytes | None:
    payload = job.request or job.upscale or job.convert or job.download
    return None if payload is None else _request_encoder.encode(payload)


def _summary_bytes(job: Job, request: bytes | None) -> bytes | None:
    """The request without its input images: what job listings read (prompt, size, steps)."""
    if job.request is not None and job.request.has_images:
        return _request_encoder.encode(job.request.without_images())
    if job.upscale is not None:
        return _request_encoder.encode(msgspec.structs.replace(job.upscale, image=""))
    return request


class JobStore:
    """Job records under ``{data_dir}/sdrest.sqlite3``."""

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
                if "summary" not in columns:  # a database from before summaries existed
                    db.execute("ALTER TABLE jobs ADD COLUMN summary BLOB")
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
        request = _request_bytes(job)
        summary = _summary_bytes(job, request)
        row = (job.id, job.status, job.owner, job.created, request, summary, _state_bytes(job))
        await self._run(
            lambda db: db.execute(
                "INSERT INTO jobs (id, status, owner, created, request, summary, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    async def update(self, job: Job) -> None:
        """Record a state change (status, timestamps, result, error)."""
        row = (job.status, job.completed, _state_bytes(job), job.id)
        await self._run(
            lambda db: db.execute(
                "UPDATE jobs SET status = ?, completed = ?, state = ? WHERE id = ?", row
            )
        )

    async def get(self, job_id: str, *, with_request: bool = False) -> Job | None:
        """One job by id, or None. ``expired`` is set on jobs past their retention. The request
        comes without its input images unless ``with_request``."""

        def fetch(db: sqlite3.Connection) -> Job | None:
            column = "request" if with_request else "summary"
            row = db.execute(
                f"SELECT state, expired, {column} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            return None if row is None else _job_from_row(row)

        return await self._run(fetch)

    async def unfinished(self) -> list[Job]:
        """Jobs that were queued or generating when the process stopped, oldest first."""

        def fetch(db: sqlite3.Connection) -> list[Job]:
            rows = db.execute(
                "SELECT state, expired, request FROM jobs"
                " WHERE status IN ('queued', 'generating') ORDER BY created"
            ).fetchall()
            return [_job_from_row(row) for row in rows]

        return await self._run(fetch)

    async def expire(self, finished_before: float) -> list[str]:
        """Mark jobs finished before the cutoff as expired; returns their ids."""

        def run(db: sqlite3.Connection) -> list[str]:
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
        where, args = ["expired = 0"], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        sql = (
            f"SELECT state, expired, summary FROM jobs WHERE {' AND '.join(where)}"
            " ORDER BY created DESC LIMIT ? OFFSET ?"
        )

        def fetch(db: sqlite3.Connection) -> builtins.list[Job]:
            rows = db.execute(sql, (*args, limit, offset)).fetchall()
            return [_job_from_row(row) for row in rows]

        return await self._run(fetch)


def _job_from_row(row: tuple[bytes, int, bytes | None]) -> Job:
    job = _state_decoder.decode(row[0])
    job.expired = bool(row[1])
    if row[2] is not None:
        if job.kind == "upscale":
            job.upscale = _upscale_decoder.decode(row[2])
        elif job.kind == "convert":
            job.convert = _convert_decoder.decode(row[2])
        elif job.kind == "download":
            job.download = _download_decoder.decode(row[2])
        else:
            job.request = _img_decoder.decode(row[2])
    return job
