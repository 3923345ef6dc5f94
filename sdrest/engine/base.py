"""The engine boundary: what the job system asks of a backend, with no native import.

Tests may put a double behind :class:`Engine` for pure HTTP behaviour; the product uses
:class:`sdrest.engine.supervisor.WorkerEngine` (the library in a supervised worker process) or
:class:`sdrest.engine.inprocess.InProcessEngine`. Only :mod:`sdrest.engine.native` imports the
native library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from sdrest.schemas import ImgGenRequest, Progress
from sdrest.settings import LoadOptions, Settings

ProgressFn = Callable[[Progress], None]
"""Called on the event loop: engines hop from their native thread themselves."""
PreviewFn = Callable[[int, Image.Image], None]
"""(step, image): a live preview of the image being sampled; delivered like progress."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides which native context is loaded. Equal specs share a context."""

    name: str
    model_path: str = ""
    diffusion_model_path: str = ""
    vae_path: str = ""
    taesd_path: str = ""
    clip_l_path: str = ""
    clip_g_path: str = ""
    t5xxl_path: str = ""
    llm_path: str = ""
    clip_vision_path: str = ""
    control_net_path: str = ""
    lora_dir: str = ""
    options: LoadOptions = field(default_factory=LoadOptions)

    def files(self) -> dict[str, str]:
        """The model's files by role (``model``, ``vae``, ``clip_l``, ...), the unset ones left
        out."""
        return {
            name.removesuffix("_path"): value
            for name, value in vars(self).items()
            if name.endswith("_path") and value
        }


@dataclass(frozen=True)
class ResolvedLora:
    """A structured LoRA resolved to an absolute path inside the LoRA folder."""

    path: str
    multiplier: float
    is_high_noise: bool = False


@dataclass(frozen=True)
class GenerationPlan:
    """A validated request with its images decoded and its names resolved to files."""

    model: ModelSpec
    request: ImgGenRequest
    seed: int
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    control_image: Image.Image | None = None
    ref_images: tuple[Image.Image, ...] = ()
    loras: tuple[ResolvedLora, ...] = ()
    hires_upscaler_path: str = ""
    """The ESRGAN file of a hires fix whose upscaler is "model"."""
    tile_upscaler_path: str = ""
    """The ESRGAN file of a tiled upscale (SD upscale) whose upscaler is "model"."""
    preview_method: str = "none"
    preview_interval: int = 1


@dataclass(frozen=True)
class UpscalePlan:
    """Upscale ``image`` with the ESRGAN file ``upscaler_path``, ``repeats`` times."""

    upscaler_path: str
    image: Image.Image
    repeats: int = 1
    threads: int = 0
    output_format: str = "png"
    output_compression: int = 100


@dataclass(frozen=True)
class ConvertPlan:
    """Quantize ``input_path`` into the GGUF file ``output_path`` with ``weight_type``."""

    input_path: str
    output_path: str
    weight_type: str


@dataclass(frozen=True)
class EngineInfo:
    """What runs the native library now (``/api/system``, ``/sdcpp/v1/capabilities``)."""

    mode: str
    """``worker`` or ``in-process`` (or a test double's name)."""
    loaded_models: tuple[str, ...] = ()
    """Loaded models, the most recently used last."""
    library_version: str | None = None
    system_info: str | None = None
    worker_pid: int | None = None
    worker_starts: int = 0
    """How many worker processes were started (the first one included)."""
    worker_crashes: int = 0


class Engine(Protocol):
    """A backend that runs one native call at a time."""

    @property
    def supports_abort(self) -> bool:
        """Whether :meth:`abort` can stop a running call."""
        ...

    def info(self) -> EngineInfo:
        """What runs the native library now."""
        ...

    async def abort(self) -> None:
        """Stop the running call now: it raises :class:`sdrest.errors.EngineAbortedError`.

        Raises :class:`sdrest.errors.ConflictError` when the engine cannot (``supports_abort``
        is false)."""
        ...

    @property
    def loaded_model(self) -> str | None:
        """Name of the model whose context is loaded, if any."""
        ...

    async def generate(
        self,
        plan: GenerationPlan,
        on_progress: ProgressFn,
        on_preview: PreviewFn | None = None,
    ) -> list[Image.Image]:
        """Run one generation; raises :class:`sdrest.errors.EngineError` on failure.

        ``on_preview`` receives live previews when the plan asks for them."""
        ...

    async def upscale(self, plan: UpscalePlan, on_progress: ProgressFn) -> Image.Image:
        """Upscale one image with an ESRGAN model."""
        ...

    async def convert(self, plan: ConvertPlan, on_progress: ProgressFn) -> None:
        """Write a quantized copy of a model file (serialized with generations)."""
        ...

    async def load(self, spec: ModelSpec) -> None:
        """Load (or keep) the context for ``spec`` without generating."""
        ...

    async def unload(self, name: str | None = None) -> None:
        """Free the context of model ``name``, or every loaded one."""
        ...

    async def close(self) -> None:
        """Free everything and stop the engine thread."""
        ...


def create_engine(settings: Settings) -> Engine:
    """The engine ``settings.engine`` asks for. The in-process one imports the native library
    into this process; the worker one never does."""
    budget = settings.engine.memory_budget_bytes
    if settings.engine.engine_mode == "in-process":
        from sdrest.engine.inprocess import InProcessEngine  # the native library loads here

        return InProcessEngine(budget)
    from sdrest.engine.supervisor import WorkerEngine

    return WorkerEngine(budget, nice=settings.engine.worker_nice)
