"""The engine in the server's own process: :class:`NativeCore` on one executor thread.

For embedding and debugging (``engine_mode = "in-process"``). A native crash takes the whole
process down and a running call cannot be stopped; the worker engine
(:mod:`sdrest.engine.supervisor`) does not have those limits and is the default.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from PIL import Image

from sdrest.engine.base import (
    ConvertPlan,
    EngineInfo,
    GenerationPlan,
    ModelSpec,
    PreviewFn,
    ProgressFn,
    UpscalePlan,
)
from sdrest.engine.native import NativeCore, library_version, system_info
from sdrest.errors import ConflictError

T = TypeVar("T")
P = ParamSpec("P")


class InProcessEngine:
    """:class:`sdrest.engine.base.Engine` over the real library in this process."""

    supports_abort = False

    def __init__(self, memory_budget: int = 0) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdrest-native")
        self._core = NativeCore(memory_budget)

    @property
    def loaded_model(self) -> str | None:
        """Name of the most recently used loaded model, if any."""
        loaded = self._core.loaded_models
        return loaded[-1] if loaded else None

    def info(self) -> EngineInfo:
        """What runs the native library, and its version."""
        return EngineInfo(
            mode="in-process",
            loaded_models=tuple(self._core.loaded_models),
            library_version=library_version(),
            system_info=system_info(),
        )

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def generate(
        self,
        plan: GenerationPlan,
        on_progress: ProgressFn,
        on_preview: PreviewFn | None = None,
    ) -> list[Image.Image]:
        """Load the model if needed, then generate on the native thread."""
        emit = loop_hop(on_progress)
        preview = loop_hop(on_preview) if on_preview is not None else None
        return await self._call(lambda: self._core.generate(plan, emit, preview))

    async def upscale(self, plan: UpscalePlan, on_progress: ProgressFn) -> Image.Image:
        """ESRGAN upscale on the native thread (the upscaler context is kept)."""
        emit = loop_hop(on_progress)
        return await self._call(lambda: self._core.upscale(plan, emit))

    async def convert(self, plan: ConvertPlan, on_progress: ProgressFn) -> None:
        """Quantize a model file to GGUF on the native thread (serialized with generations)."""
        emit = loop_hop(on_progress)
        await self._call(lambda: self._core.convert(plan, emit))

    async def load(self, spec: ModelSpec) -> None:
        """Load (or keep) the context for ``spec``."""
        await self._call(lambda: self._core.load(spec, lambda _p: None))

    async def unload(self, name: str | None = None) -> None:
        """Free model ``name``'s context, or every one."""
        await self._call(lambda: self._core.unload(name))

    async def abort(self) -> None:
        """In-process, a native call cannot be interrupted."""
        raise ConflictError("the in-process engine cannot stop a running generation")

    async def close(self) -> None:
        """Free every context and stop the native thread."""
        await self._call(self._core.close)
        self._executor.shutdown(wait=True)


def loop_hop(callback: Callable[P, None]) -> Callable[P, None]:
    """``callback`` delivered on the event loop thread, whatever thread calls it."""
    loop = asyncio.get_running_loop()

    def hop(*args: P.args, **kwargs: P.kwargs) -> None:
        loop.call_soon_threadsafe(functools.partial(callback, *args, **kwargs))

    return hop
