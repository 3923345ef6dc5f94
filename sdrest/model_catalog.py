"""The models half of the facade: what the API families may ask about models, in one place.

Families never reach into the :class:`~sdrest.models.ModelRegistry` or :mod:`sdrest.planning`
themselves; they ask ``service.models``. Every name lookup goes through
:meth:`ModelRegistry.find`, so "what does this name mean" has one answer, and an unknown name is
always :class:`~sdrest.errors.ModelNotFoundError` (404 ``model_not_found``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from sdrest import model_specs, planning
from sdrest.engine.base import Engine, ModelSpec
from sdrest.errors import SdrestError
from sdrest.models import FileHeader, ModelEntry, ModelPreset, ModelRegistry
from sdrest.schemas import RequestLayer
from sdrest.settings import Settings

logger = logging.getLogger(__name__)

Model = ModelEntry | ModelPreset
"""A file in the models folder, or a configured preset."""


class ModelCatalog:
    """Lookups, defaults, hashes and loaded state of the models; ``service.models``."""

    def __init__(
        self,
        registry: ModelRegistry,
        settings: Settings,
        engine: Callable[[], Engine | None],
        between_jobs: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]],
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._engine = engine
        self._between_jobs = between_jobs
        self._default: str | None = None
        self._announced_default: str | None = None

    # -- lookups -------------------------------------------------------------------------

    def find(self, identifier: str, type: str | None = None) -> Model:
        """A preset, or a file by name, file name, relative path or SHA-256 prefix (404)."""
        return self._registry.find(identifier, type)

    def main_entry(self, name: str) -> ModelEntry:
        """The file that generates for ``name`` (a preset's main model) (404)."""
        return self._registry.main_entry(name)

    def entries(self, type: str | None = None) -> list[ModelEntry]:
        """Files (sorted by relative path), optionally of one type."""
        return self._registry.entries(type)

    def generation_models(self) -> list[Model]:
        """What a user can pick as "the model": checkpoints, diffusion models, then presets."""
        return self._registry.generation_models()

    def presets(self) -> list[ModelPreset]:
        """Every configured preset."""
        return self._registry.presets()

    def preset_error(self, name: str) -> str | None:
        """What is wrong with a preset after the last scan, or None."""
        return self._registry.preset_error(name)

    @property
    def duplicates(self) -> dict[str, list[str]]:
        """``"type/name" -> relpaths`` for names that are not unique per type."""
        return self._registry.duplicates

    @property
    def models_dir(self) -> Path:
        """The models folder."""
        return self._registry.models_dir

    def type_folders(self, type: str) -> list[Path]:
        """The existing typed folders of ``type`` (``lora/``, ``loras/``...)."""
        return self._registry.type_folders(type)

    def resolve_component(self, field: str, value: str) -> Path:
        """A component file by name or by a path inside the models folder (404 / 400)."""
        return self._registry.resolve_component(field, value)

    def header(self, path: str | Path) -> FileHeader:
        """A file's header (cached by size and mtime)."""
        return self._registry.header(path)

    def sha256(self, model: ModelEntry | str) -> str | None:
        """A file's SHA-256 (by entry or generation-model name) once the background hashing
        has reached it; None before, and for presets and unknown names."""
        if isinstance(model, str):
            return self._registry.sha256(model)
        return self._registry.hashes.sha256_of(model)

    def short_hash(self, name: str) -> str | None:
        """A1111's 10-digit hash of a model, once hashed."""
        return self._registry.short_hash(name)

    def hash_now(self, model: ModelEntry) -> str:
        """Hash a file now, cached by (path, size, mtime). Blocking: seconds per GB; call it
        off the event loop."""
        return self._registry.hashes.compute(model.path)

    # -- the default model and request defaults --------------------------------------------

    def default(self) -> str:
        """The model a request that names none uses: ``--model``, else the only model, else the
        most recently loaded one, else the first by name (400 when there is none at all)."""
        if self._default is not None:
            return self._default
        name = model_specs.default_model_name(self._settings, self._registry, self.last_loaded)
        if name != self._announced_default:  # logged when it changes, not per request
            self._announced_default = name
            if not self._settings.model:
                logger.info("default model (no --model given): %s", name)
        return name

    def chosen_default(self) -> str | None:
        """The default when it is not a guess (set at run time, ``--model``, or the only model);
        None when several models exist and none was chosen. What ``--preload`` loads."""
        if self._default is not None or self._settings.model:
            return self.default()
        names = [m.name for m in self._registry.generation_models()]
        return names[0] if len(names) == 1 else None

    def default_or_none(self) -> str | None:
        """:meth:`default`, or None while there is no model to default to."""
        try:
            return self.default()
        except SdrestError:
            return None

    def set_default(self, name: str) -> None:
        """Make ``name`` the default until the server restarts (404/400 for a bad name)."""
        self.spec(name)
        self._default = name

    def reset_default(self) -> None:
        """Forget a default set at run time: the configured one (or the only model) applies."""
        self._default = None

    def defaults_for(self, model: str | None) -> RequestLayer:
        """Default generation fields of ``model`` (its preset's, under the server's), in
        canonical field names, for a family to layer its request over."""
        return planning.request_defaults(model or self.default(), self._settings, self._registry)

    def footprint(self, name: str) -> int:
        """Bytes model ``name`` is counted as when loaded (its files' sizes, as the engine counts
        them against ``--memory-budget-mb``). Blocking (stat calls)."""
        total = 0
        for path in self.spec(name).files().values():
            with contextlib.suppress(OSError):
                total += Path(path).stat().st_size
        return total

    def spec(self, name: str) -> ModelSpec:
        """The files and load options that make up model (or preset) ``name``."""
        return model_specs.model_spec(name, self._settings, self._registry)

    # -- loaded state ----------------------------------------------------------------------

    @property
    def loaded(self) -> tuple[str, ...]:
        """Every model the engine holds (several within ``memory_budget_mb``), latest last."""
        engine = self._engine()
        return engine.info().loaded_models if engine is not None else ()

    @property
    def last_loaded(self) -> str | None:
        """The model the engine used last and still holds, if any."""
        engine = self._engine()
        return engine.loaded_model if engine is not None else None

    async def load(self, name: str | None = None) -> str:
        """Load a model (default: the default one) in queue order, never during a job."""
        name = name or self.default()
        spec = self.spec(name)
        await self._between_jobs(lambda: self._require_engine().load(spec))
        return name

    async def unload(self, name: str | None = None) -> None:
        """Free model ``name`` (default: all) in queue order; the next job loads what it needs."""
        await self._between_jobs(lambda: self._require_engine().unload(name))

    async def refresh(self) -> None:
        """Rescan the models folder and restart background hashing, off the event loop."""

        def rescan() -> None:
            self._registry.scan()
            self._registry.start_hashing()

        await asyncio.to_thread(rescan)

    def _require_engine(self) -> Engine:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("service not started")
        return engine
