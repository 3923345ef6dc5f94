"""Which job runner a configuration gets: the classic one (one engine, the queue in memory) or
:class:`~sdrest.jobs.cluster.ClusterRunner` (the queue in the database)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from sdrest.jobs.cluster import ClusterRunner
from sdrest.jobs.events import EventBus
from sdrest.jobs.runner import JobRunner
from sdrest.jobs.store import JobStoreBase
from sdrest.models import ModelRegistry
from sdrest.models.pull import PullOutcome
from sdrest.settings import Settings


def uses_cluster(settings: Settings) -> bool:
    """Whether the queue lives in the database (``--database-url``, or several engines)."""
    return bool(settings.database_url) or settings.engine.engine_workers != 1


class RunnerFactory(Protocol):
    """:class:`JobRunner`'s constructor (or :class:`ClusterRunner`'s, its extras bound)."""

    def __call__(
        self,
        *,
        capacity: int,
        events: EventBus,
        store: JobStoreBase,
        output_dir: Path,
        models_dir: Path,
        idle_unload: float,
        after_convert: Callable[[], Awaitable[None]],
        after_download: Callable[[PullOutcome | None], Awaitable[None]] | None = None,
    ) -> JobRunner:
        """Build the runner."""


def runner_for(settings: Settings, registry: ModelRegistry) -> RunnerFactory:
    """The runner class a configuration asks for (with its extra arguments bound)."""
    if not uses_cluster(settings):
        return JobRunner
    return functools.partial(ClusterRunner, settings=settings, registry=registry)
