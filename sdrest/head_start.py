"""``sdrest serve``'s head start: the engine worker, and the default model's load, begin before
the server imports its web stack.

Without it the worker starts when the service does, after the server's imports and app build,
and the preload follows: start to first image is then the sum of the two. With it they overlap:
the worker imports the library and loads the default model while the server starts, and the
service adopts that worker (``--preload``, the one local engine worker, the default). The
service's own preload then finds the model loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sdrest.engine.launch import LaunchedWorker, launch_worker
from sdrest.errors import SdrestError
from sdrest.settings import Settings

if TYPE_CHECKING:
    from sdrest.engine.supervisor import WorkerEngine
    from sdrest.models import ModelRegistry

logger = logging.getLogger(__name__)


@dataclass
class HeadStart:
    """The engine and the scanned registry to build the service with."""

    engine: WorkerEngine
    registry: ModelRegistry
    launched: LaunchedWorker

    def abandon(self) -> None:
        """The server will not start: stop the worker (blocking, a moment)."""
        self.launched.close()


def eligible(settings: Settings) -> bool:
    """Whether this configuration preloads on one local worker engine: the classic queue (what
    :func:`sdrest.jobs.roles.uses_cluster` says, without importing the job machinery before
    the worker starts)."""
    engine = settings.engine
    return (
        settings.preload
        and engine.engine_mode == "worker"
        and not settings.database_url
        and engine.engine_workers == 1
    )


def head_start(settings: Settings, early: LaunchedWorker | None = None) -> HeadStart | None:
    """Start the worker now (or take ``early``, started before the settings were read: see
    sdrest/entry.py) and send it the default model's load (when the default is not a guess
    among several models); None when this configuration gets no head start (``early`` is then
    stopped)."""
    if not eligible(settings):
        if early is not None:
            early.discard()
        return None
    launched = early if early is not None else launch_worker()
    launched.kept = True
    # Imported after the start on purpose: these imports overlap the worker's own.
    from sdrest import model_specs
    from sdrest.engine.wire import ConfigureCall, LoadCall
    from sdrest.models import ModelRegistry

    budget, nice = settings.engine.memory_budget_bytes, settings.engine.worker_nice
    level = logging.getLogger("sdrest").getEffectiveLevel()
    launched.send(ConfigureCall(budget, nice, level))

    registry = ModelRegistry(
        settings.models_path, settings.presets, hash_cache_path=settings.data_path / "hashes.json"
    )
    try:
        registry.scan()
        name = settings.model or _only_model(registry)
        if name is not None:
            launched.send(LoadCall(model_specs.model_spec(name, settings, registry)))
    except (SdrestError, OSError) as exc:  # the service's preload says it properly
        logger.debug("no head start for the default model: %s", exc)
    from sdrest.engine.supervisor import WorkerEngine  # after the load was sent: not needed first

    return HeadStart(WorkerEngine(budget, nice=nice, launched=launched), registry, launched)


def _only_model(registry: ModelRegistry) -> str | None:
    names = [m.name for m in registry.generation_models()]
    return names[0] if len(names) == 1 else None
