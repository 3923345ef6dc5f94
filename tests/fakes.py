"""Test doubles at the engine boundary, for pure HTTP behaviour (no native library)."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
from pathlib import Path

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
from sdrest.errors import ConflictError, EngineAbortedError, EngineCrashedError, EngineError
from sdrest.schemas import Progress


class FakeEngine:
    """Solid-colour images whose colour depends on the seed; can be held to keep a job running.
    ``abortable`` says whether it behaves like the worker engine (abort stops a held job) or the
    in-process one (abort is refused)."""

    def __init__(self, *, abortable: bool = True) -> None:
        self.supports_abort = abortable
        self.aborted = asyncio.Event()
        self.calls: list[GenerationPlan] = []
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.holding = asyncio.Event()
        """Set while a generation waits on ``hold``, every step's progress and preview reported."""
        self.fail_with: str | None = None
        self.crash_call: int | None = None
        """The generation with this index in ``calls`` fails as a native crash would."""
        self._loaded: str | None = None
        self.converted: list[ConvertPlan] = []

    @property
    def loaded_model(self) -> str | None:
        return self._loaded

    async def generate(
        self,
        plan: GenerationPlan,
        on_progress: ProgressFn,
        on_preview: PreviewFn | None = None,
    ) -> list[Image.Image]:
        index = len(self.calls)
        self.calls.append(plan)
        self._loaded = plan.model.name
        self.aborted.clear()  # an abort is for the call running when it comes
        self.holding.clear()
        self.started.set()
        steps = plan.request.sample_params.sample_steps
        for _image in range(plan.request.batch_count):  # like the library: steps per image
            for step in range(1, steps + 1):
                on_progress(Progress("sampling", step, steps, 0.01))
                if on_preview is not None and plan.preview_method != "none":
                    size = (max(1, plan.request.width // 8), max(1, plan.request.height // 8))
                    on_preview(step, Image.new("RGB", size, (0, step % 256, 0)))
                await asyncio.sleep(0)
        if self.hold is not None:
            self.holding.set()
            held, aborted = (
                asyncio.ensure_future(self.hold.wait()),
                asyncio.ensure_future(self.aborted.wait()),
            )
            try:
                await asyncio.wait({held, aborted}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.holding.clear()
                held.cancel()
                aborted.cancel()
            if self.aborted.is_set():
                raise EngineAbortedError("the running job was stopped")
        if self.crash_call == index:
            raise EngineCrashedError("the engine worker died (SIGSEGV)")
        if self.fail_with:
            raise EngineError(self.fail_with)
        req = plan.request
        return [
            Image.new("RGB", (req.width, req.height), ((plan.seed + i) % 256, 0, 0))
            for i in range(req.batch_count)
        ]

    async def upscale(self, plan: UpscalePlan, on_progress: ProgressFn) -> Image.Image:
        return plan.image.resize(
            (plan.image.width * 2, plan.image.height * 2), Image.Resampling.NEAREST
        )

    async def convert(self, plan: ConvertPlan, on_progress: ProgressFn) -> None:
        self.converted.append(plan)
        on_progress(Progress("converting"))
        await asyncio.to_thread(shutil.copyfile, plan.input_path, plan.output_path)

    async def load(self, spec: ModelSpec) -> None:
        self._loaded = spec.name

    def info(self) -> EngineInfo:
        return EngineInfo(mode="fake", loaded_models=(self._loaded,) if self._loaded else ())

    async def abort(self) -> None:
        if not self.supports_abort:
            raise ConflictError("this engine cannot stop a running generation")
        self.aborted.set()

    async def unload(self, name: str | None = None) -> None:
        if name in (None, self._loaded):
            self._loaded = None

    async def close(self) -> None:
        self._loaded = None


def write_safetensors_header(
    path: Path, names: list[str], metadata: dict[str, str] | None = None
) -> Path:
    """A valid safetensors file whose tensors are one f32 zero each (header-level fixtures)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    for i, name in enumerate(names):
        header[name] = {"dtype": "F32", "shape": [1], "data_offsets": [i * 4, i * 4 + 4]}
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * len(names)))
    return path


def write_fake_checkpoint(path: Path) -> Path:
    """A file the registry detects as a full checkpoint (diffusion model + VAE tensors)."""
    return write_safetensors_header(
        path,
        [
            "model.diffusion_model.double_stream_modulation_img.lin.weight",
            "model.diffusion_model.single_blocks.0.linear1.weight",
            "first_stage_model.decoder.conv_in.weight",
            "text_encoders.llm.model.embed_tokens.weight",
        ],
    )


ESRGAN_X2_TENSORS = ["conv_first.weight", "conv_body.weight", "conv_up1.weight", "conv_last.weight"]


def write_fake_esrgan(path: Path) -> Path:
    """A header-only file the registry types as a 2x ESRGAN upscaler."""
    return write_safetensors_header(path, ESRGAN_X2_TENSORS)


def write_fake_lora(path: Path) -> Path:
    """A file the registry detects as a LoRA."""
    return write_safetensors_header(
        path,
        [
            "model.diffusion_model.img_in.lora_down.weight",
            "model.diffusion_model.img_in.lora_up.weight",
        ],
    )
