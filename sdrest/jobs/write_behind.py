"""Write-behind: a finished generation's images are encoded and written while the engine
already runs the next job.

The job stays ``generating`` (phase ``encoding``) until its files are written and completes only
then; the writes run one after another, so jobs complete in the order they ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Protocol

import msgspec

from sdrest.errors import SdrestError
from sdrest.jobs.execute import PendingOutput
from sdrest.schemas import Job, JobError, JobResult, JobStatus

logger = logging.getLogger(__name__)


def _encoding(job: Job, announce: Callable[[Job], None]) -> None:
    job.progress = msgspec.structs.replace(job.progress, phase="encoding")
    announce(job)  # streams, /ws and (--database-url) the other nodes see the phase too


class Finish(Protocol):
    """How a write ends its job (:meth:`sdrest.jobs.runner.JobRunner.finish`)."""

    async def __call__(
        self,
        job: Job,
        status: JobStatus,
        *,
        result: JobResult | None = None,
        error: JobError | None = None,
    ) -> None:
        """Record the job's end."""


class WriteBehind:
    """The chain of pending writes of one runner; each write ends its own job."""

    def __init__(self, finish: Finish, announce: Callable[[Job], None]) -> None:
        self._finish = finish
        self._announce = announce
        """Publishes a job's progress (its ``encoding`` phase)."""
        self._last: asyncio.Task[None] | None = None
        self.job_id: str | None = None
        """The job whose images are being written (still ``generating``, phase ``encoding``)."""

    def start(self, job: Job, output: PendingOutput) -> None:
        """Write ``output`` in a task, after the writes started before it."""
        previous = self._last
        self._last = asyncio.create_task(self._write(job, output, previous))

    async def drain(self) -> None:
        """Wait for the writes started so far (a stopping runner still completes those jobs)."""
        if self._last is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._last)

    async def _write(
        self,
        job: Job,
        output: PendingOutput,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await previous  # never raises: each write ends its own job
        self.job_id = job.id
        try:
            result = await output.write(functools.partial(_encoding, job, self._announce))
        except SdrestError as exc:
            await self._finish(job, "failed", error=JobError(exc.code, exc.message))
        except Exception as exc:  # the job fails; the consumer goes on
            logger.exception("job %s: writing its images failed", job.id)
            await self._finish(job, "failed", error=JobError("internal_error", str(exc)))
        else:
            await self._finish(job, "completed", result=result)
        finally:
            if self.job_id == job.id:
                self.job_id = None
