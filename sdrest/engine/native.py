"""The native library, driven from one thread: the ONLY module that imports
``stable_diffusion_cpp``.

It runs in the supervised worker process (:mod:`sdrest.engine.worker`, the default) or in the
server's own process (:mod:`sdrest.engine.inprocess`). Either way all native calls come from one
thread, because a context is not thread-safe and the library's progress and log callbacks are
process-global. Loaded contexts are kept between jobs, keyed by :class:`ModelSpec` (files and load
options).

Hazards of the pinned 0.4.7 wrapper that this module defends against (measured, see
shared/tiny-models/README.md):

* a failed load returns an object with a NULL context whose destructor SIGSEGVs: we null the
  pointers before dropping it and raise :class:`ModelLoadError`;
* the wrapper frees its ctypes progress callback when ``generate_image`` returns, so the next call
  without one would jump into freed memory: we pass a callback on every call and reset it to NULL;
* ``verbose=False`` redirects the whole process's stdout/stderr: we keep ``verbose=True`` and route
  native logs into Python logging through our own log callback;
* LoRAs come only from the structured list: the wrapper's prompt-tag parser is replaced, so a
  ``<lora:...>`` in a user's prompt is plain text and can never name a file.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import stable_diffusion_cpp as sd_binding
import stable_diffusion_cpp.stable_diffusion_cpp as sd_cpp
from PIL import Image
from stable_diffusion_cpp import StableDiffusion

from sdrest.engine.base import (
    ConvertPlan,
    GenerationPlan,
    ModelSpec,
    ResolvedLora,
    UpscalePlan,
)
from sdrest.engine.libc import libc
from sdrest.engine.params import generation_kwargs, load_kwargs
from sdrest.errors import EngineError, ModelLoadError
from sdrest.schemas import Progress

logger = logging.getLogger(__name__)
native_logger = logging.getLogger("sdrest.native")


class _HiresParams(sd_binding.sd_hires_params_t):  # type: ignore[misc]
    """The 0.4.7 wrapper fills ``sd_hires_params_t(path=...)`` but the field is ``model_path``:
    ctypes keeps the unknown keyword as a plain attribute, so the ESRGAN path of a hires fix
    never reaches the library ("hires model upscaler requires a model path"). This subclass
    routes ``path`` into ``model_path``; the wrapper looks the class up on the package at each
    call, so installing it there (once, when the engine module loads) is enough.
    """

    def __init__(self, *args: Any, path: bytes | None = None, **fields: Any) -> None:
        if path is not None:
            fields["model_path"] = path
        super().__init__(*args, **fields)


if not issubclass(sd_binding.sd_hires_params_t, _HiresParams):
    sd_binding.sd_hires_params_t = _HiresParams

# sd_log_level_t -> logging level (the wrapper's own table is inverted, so we keep ours).
_NATIVE_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


def _forward_native_log(level: int, text: bytes | None, _data: ctypes.c_void_p) -> None:
    if text:
        message = text.decode("utf-8", errors="replace").rstrip()
        if message:
            native_logger.log(_NATIVE_LEVELS.get(level, logging.INFO), "%s", message)


# A module-level constant (not state): the C library keeps this pointer for the whole process,
# so the ctypes thunk must never be garbage collected.
_NATIVE_LOG_CALLBACK = sd_cpp.sd_log_callback(_forward_native_log)
sd_cpp.sd_set_log_callback(_NATIVE_LOG_CALLBACK, ctypes.c_void_p(0))
# The wrapper's log_event() prints to stdout whenever its logger allows; silence it for good.
_WRAPPER_LOGGER = logging.getLogger("stable-diffusion-cpp-python")


def library_version() -> str:
    """Version of the binding and the commit of the native library it was built from."""
    try:
        commit = sd_cpp.sd_commit().decode()
    except (AttributeError, OSError):
        commit = "unknown"
    return f"stable-diffusion-cpp-python {sd_binding.__version__} (sd.cpp {commit})"


def physical_cores() -> int:
    """The library's own count of physical cores: what ``threads = 0`` means. (The wrapper's
    default, half the logical CPUs, leaves half the cores idle on machines without SMT.)"""
    return max(1, int(sd_cpp.sd_get_num_physical_cores()))


def system_info() -> str:
    """The native library's build and CPU feature summary."""
    return str(sd_cpp.sd_get_system_info().decode("utf-8", errors="replace")).strip()


class _StructuredLoraDiffusion(StableDiffusion):  # type: ignore[misc]
    """The wrapper, with its prompt-tag LoRA parser replaced by our structured list."""

    sdrest_loras: tuple[ResolvedLora, ...] = ()

    def _extract_and_build_loras(self, prompt: str, lora_model_dir: str) -> tuple[Any, ...]:
        loras = self.sdrest_loras
        array = (sd_cpp.sd_lora_t * len(loras))()
        buffers = []  # the C side reads these strings during the call: keep them alive
        for slot, lora in zip(array, loras, strict=True):
            buffer = ctypes.create_string_buffer(lora.path.encode("utf-8"))
            buffers.append(buffer)
            slot.is_high_noise = lora.is_high_noise
            slot.multiplier = lora.multiplier
            slot.path = ctypes.cast(buffer, ctypes.c_char_p)
        return prompt, array, len(loras), buffers


def _progress_thunk(on_step: Callable[[int, int, float], None]) -> Callable[..., None]:
    def report(step: int, steps: int, seconds: float) -> None:
        try:
            on_step(int(step), int(steps), float(seconds))
        except Exception:  # an exception must never unwind through C frames
            logger.exception("progress callback failed")

    return report


def _reset_progress_callback() -> None:
    # A NULL function pointer: the library stops calling the (now freed) wrapper thunk.
    sd_cpp.sd_set_progress_callback(sd_cpp.sd_progress_callback(), ctypes.c_void_p(0))


@contextlib.contextmanager
def _native_progress(phase: str, emit: Callable[[Progress], None]) -> Iterator[None]:
    """Report the library's progress callback as ``phase`` for one native call, and always
    unregister it after: the thunk lives only as long as this block."""
    thunk = sd_cpp.sd_progress_callback(
        lambda step, steps, seconds, _d: emit(Progress(phase, int(step), int(steps), seconds))
    )
    sd_cpp.sd_set_progress_callback(thunk, ctypes.c_void_p(0))
    try:
        yield
    finally:
        _reset_progress_callback()


def _reset_preview_callback() -> None:
    # The wrapper registers a per-call preview thunk and never unregisters it: NULL it, or the
    # next generation would call freed memory.
    sd_cpp.sd_set_preview_callback(sd_cpp.sd_preview_callback(), 0, 1, True, False, None)


class _RecentNativeLines(logging.Handler):
    """Keeps the last native log lines so a failure can say what the library said."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(level=logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def take(self) -> str:
        text = " | ".join(line for line in self.lines if line.strip())
        self.lines.clear()
        return text


class NativeCore:
    """The native library driven from ONE thread (whichever calls it): model contexts, the
    upscaler and conversions. Not thread-safe by design: the in-process engine calls it from its
    executor thread, the worker process from its main thread.

    Several model contexts may stay loaded within ``memory_budget`` bytes (estimated as the sum
    of the model's file sizes); the least recently used is freed first. A budget of 0 keeps one
    model at a time.
    """

    def __init__(self, memory_budget: int = 0) -> None:
        self.memory_budget = memory_budget
        self._contexts: collections.OrderedDict[ModelSpec, _StructuredLoraDiffusion] = (
            collections.OrderedDict()
        )
        self._upscaler: Any = None
        self._upscaler_key: tuple[str, int] | None = None
        self._recent = _RecentNativeLines()
        native_logger.addHandler(self._recent)

    @property
    def loaded_models(self) -> list[str]:
        """Names of the loaded models, the most recently used last."""
        # A model may be loaded in several variants (per-request components or load options):
        # listed once, where its most recently used variant is.
        names = [spec.name for spec in self._contexts]
        return list(reversed(dict.fromkeys(reversed(names))))

    def load(self, spec: ModelSpec, emit: Callable[[Progress], None]) -> StableDiffusion:
        """The context for ``spec``: kept from an earlier call, or loaded now."""
        sd = self._contexts.get(spec)
        if sd is not None:
            self._contexts.move_to_end(spec)
            return sd
        for label, path in (
            ("model", spec.model_path),
            ("diffusion model", spec.diffusion_model_path),
        ):
            if path and not Path(path).is_file():
                raise ModelLoadError(f"model load failed: {label} file not found: {path}")
        self._make_room(footprint(spec))
        logger.info("loading model %s", spec.name)
        self._recent.take()
        try:
            with _native_progress("loading", emit):
                sd = _StructuredLoraDiffusion(**load_kwargs(spec, physical_cores()))
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"model load failed: {exc}") from exc
        _WRAPPER_LOGGER.setLevel(logging.CRITICAL)
        if not sd._model.model:
            # NULL context: null the pointers first, or the destructor's free() crashes.
            sd._model.model = None
            sd._upscaler.upscaler = None
            detail = self._recent.take()
            raise ModelLoadError(
                f"model load failed: {spec.name}" + (f" ({detail})" if detail else "")
            )
        self._contexts[spec] = sd
        return sd

    def _make_room(self, needed: int) -> None:
        """Free least recently used contexts until ``needed`` more bytes fit the budget."""
        while self._contexts and (
            self.memory_budget <= 0
            or sum(map(footprint, self._contexts)) + needed > self.memory_budget
        ):
            self._free_oldest()

    def _free_oldest(self) -> None:
        self.unload(next(iter(self._contexts)).name)

    def unload(self, name: str | None = None) -> None:
        """Free the contexts of model ``name``, or every one."""
        for spec in [spec for spec in self._contexts if name in (None, spec.name)]:
            logger.info("unloading model %s", spec.name)
            self._contexts.pop(spec).close()

    def generate(
        self,
        plan: GenerationPlan,
        emit: Callable[[Progress], None],
        preview: Callable[[int, Image.Image], None] | None,
    ) -> list[Image.Image]:
        """Load the plan's model if needed and generate."""
        sd = self.load(plan.model, emit)
        kwargs = generation_kwargs(plan)
        sd.sdrest_loras = plan.loras
        self._recent.take()

        def on_step(step: int, steps: int, seconds: float) -> None:
            emit(Progress("sampling", step, steps, seconds))

        if preview is not None and plan.preview_method != "none":

            def on_preview(step: int, frames: list[Image.Image], _noisy: bool) -> None:
                if frames:
                    preview(int(step), frames[0])

            kwargs["preview_callback"] = on_preview
        try:
            images: list[Image.Image] = sd.generate_image(
                progress_callback=_progress_thunk(on_step), **kwargs
            )
        except (ValueError, RuntimeError, TypeError, MemoryError) as exc:
            raise EngineError(f"generation failed: {exc}") from exc
        finally:
            sd.sdrest_loras = ()
            _reset_progress_callback()
            _reset_preview_callback()
        if not images or any(img.width == 0 or img.height == 0 for img in images):
            detail = self._recent.take()
            raise EngineError(
                "generate_image returned empty results" + (f" ({detail})" if detail else "")
            )
        return images

    def upscale(self, plan: UpscalePlan, emit: Callable[[Progress], None]) -> Image.Image:
        """ESRGAN upscale (the upscaler context is kept for the next call)."""
        key = (plan.upscaler_path, plan.threads)
        if self._upscaler_key != key:
            self._free_upscaler()
            ctx = sd_cpp.new_upscaler_ctx(
                plan.upscaler_path.encode("utf-8"),
                False,
                False,
                plan.threads if plan.threads > 0 else physical_cores(),
                128,
            )
            if not ctx:
                raise ModelLoadError(f"model load failed: upscaler {Path(plan.upscaler_path).name}")
            self._upscaler, self._upscaler_key = ctx, key
        # Imported here: the image codecs it brings would delay the worker's start.
        from sdrest.images import to_rgb

        image = to_rgb(plan.image)  # planning decoded it as RGB already: no copy
        for _ in range(plan.repeats):
            image = _run_upscale(self._upscaler, image, emit)
        return image

    def convert(self, plan: ConvertPlan, emit: Callable[[Progress], None]) -> None:
        """Quantize a model file; written as ``.part`` and renamed when complete."""
        from stable_diffusion_cpp.stable_diffusion import GGML_TYPE_MAP

        target = Path(plan.output_path)
        partial = target.with_name(target.name + ".part")  # never a half-written model in the scan
        self._recent.take()
        emit(Progress("converting"))
        with _native_progress("converting", emit):
            ok = sd_cpp.convert(
                plan.input_path.encode("utf-8"),
                b"",
                str(partial).encode("utf-8"),
                GGML_TYPE_MAP[plan.weight_type],
                b"",
                True,
            )
        if not ok or not partial.is_file():
            partial.unlink(missing_ok=True)
            detail = self._recent.take()
            raise EngineError(
                f"convert failed: {Path(plan.input_path).name}" + (f" ({detail})" if detail else "")
            )
        partial.replace(target)

    def _free_upscaler(self) -> None:
        if self._upscaler:
            sd_cpp.free_upscaler_ctx(self._upscaler)
        self._upscaler, self._upscaler_key = None, None

    def close(self) -> None:
        """Free every context; the object is unusable afterwards."""
        self.unload()
        self._free_upscaler()
        native_logger.removeHandler(self._recent)


def footprint(spec: ModelSpec) -> int:
    """Bytes a model is assumed to take when loaded: the sum of its files' sizes (weights
    dominate; compute buffers come on top and are not counted)."""
    total = 0
    for path in spec.files().values():
        with contextlib.suppress(OSError):
            total += os.path.getsize(path)
    return total


def _libc_free() -> Callable[[Any], None] | None:
    c_library = libc()
    if c_library is None:
        return None
    free = c_library.free
    free.argtypes = [ctypes.c_void_p]
    free.restype = None
    return free


_FREE = _libc_free()


def _run_upscale(ctx: Any, image: Image.Image, emit: Callable[[Progress], None]) -> Image.Image:
    raw = image.tobytes()
    buffer = (ctypes.c_uint8 * len(raw)).from_buffer_copy(raw)
    source = sd_cpp.sd_image_t(
        width=image.width,
        height=image.height,
        channel=3,
        data=ctypes.cast(buffer, ctypes.POINTER(ctypes.c_uint8)),
    )
    with _native_progress("upscaling", emit):
        result = sd_cpp.upscale(ctx, source, 1)
    if not result.data or result.width == 0:
        raise EngineError("upscale returned no image")
    size = result.width * result.height * result.channel
    data = ctypes.string_at(result.data, size)
    if _FREE is not None:
        # The library mallocs the output; the wrapper leaks it, we give it back.
        _FREE(ctypes.cast(result.data, ctypes.c_void_p))
    mode = {3: "RGB", 4: "RGBA", 1: "L"}[result.channel]
    return Image.frombytes(mode, (result.width, result.height), data)
