"""``sdrest.Generator``: image generation as a library call, the way the binding and diffusers
shape it::

    import sdrest

    with sdrest.Generator(models_dir="models", model="flux2-klein") as sd:
        images = sd.txt2img("a lovely cat", steps=4, seed=42)
        images[0].save("cat.png")
        print(sdrest.image_info(images[0]).seed)

It runs the job service (:class:`~sdrest.service.SdrestService`, no HTTP server) on a private
event loop in a background thread, so the methods block their caller and work the same in a
script and inside a running loop (Jupyter); the native library runs in the service's worker
process, so a native crash raises :class:`~sdrest.errors.JobFailedError` here and the caller lives
on. Code already in a loop can await :class:`~sdrest.AsyncGenerator` instead.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from PIL import Image

from sdrest.generation import ImageInput
from sdrest.generator_async import AsyncGenerator, Progress
from sdrest.generator_loop import LoopThread, Relay
from sdrest.schemas import ImgGenRequest
from sdrest.settings import Settings


def _close(thread: LoopThread, core: AsyncGenerator) -> None:
    """Stop the service and the loop (close(), or when the generator is collected or at exit)."""
    if thread.alive:
        try:
            thread.run(lambda _relay: core.close())
        finally:
            thread.close()


class Generator:
    """Generate images with stable-diffusion.cpp, in-process API, engine in a worker process.

    ``Generator(models_dir="models", model="", *, data_dir=None, settings=None,
    config_file=None, **overrides)``: ``model`` is a registry model or preset name (empty: the
    only model there is); ``overrides`` are setting names as ``sdrest serve`` takes them
    (``threads=4``, ``offload_to_cpu=True``, ``engine_mode="in-process"``...); the environment
    is not read. Without ``data_dir`` jobs and files live in a temporary folder removed by
    :meth:`close`. ``settings`` (a whole :class:`~sdrest.Settings`) replaces all of those.

    Every method returns PIL images carrying their seed and parameters: ``image.info["seed"]``,
    ``image.info["parameters"]`` (the AUTOMATIC1111 infotext) and, typed,
    ``sdrest.image_info(image)`` (:class:`~sdrest.ImageInfo`). Failures raise
    :class:`~sdrest.errors.SdrestError` subclasses: bad arguments ``InvalidRequestError``, an
    unknown model ``ModelNotFoundError``, a job that failed ``JobFailedError`` (``.code``:
    ``engine_crashed``, ``model_load_failed``, ``generation_failed``...), a cancelled one
    :class:`~sdrest.GenerationCancelledError`.

    ``progress(step, steps, phase)`` is called on the calling thread: phase ``loading`` (steps
    count tensors), then ``sampling``, or ``upscaling`` (tiles). An exception in it, or an
    interrupt (Ctrl-C, Jupyter's stop button) while a method waits, stops the job.
    """

    def __init__(
        self,
        models_dir: str | Path = "models",
        model: str = "",
        *,
        data_dir: str | Path | None = None,
        settings: Settings | None = None,
        config_file: str | Path | None = None,
        **overrides: Any,
    ) -> None:
        self._thread = LoopThread()

        async def create(_relay: Relay | None) -> AsyncGenerator:
            core = AsyncGenerator(
                models_dir,
                model,
                data_dir=data_dir,
                settings=settings,
                config_file=config_file,
                **overrides,
            )
            try:
                await core.start()
            except BaseException:
                await core.close()
                raise
            return core

        try:
            self._core = self._thread.run(create)
        except BaseException:
            self._thread.close()
            raise
        self.settings: Settings = self._core.settings
        """The settings it runs with."""
        self._finalizer = weakref.finalize(self, _close, self._thread, self._core)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker process and the job system (idempotent). Without ``data_dir`` the
        output files go too; the returned images stay usable."""
        self._finalizer()

    def __enter__(self) -> Generator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cancel(self) -> None:
        """Stop every running and queued generation of this generator (from another thread, or
        from a progress callback); each waiting call raises ``GenerationCancelledError``."""
        self._thread.run(lambda _relay: self._core.cancel())

    # -- generation --------------------------------------------------------------------------

    def txt2img(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        sampler: str | None = None,
        scheduler: str | None = None,
        seed: int | None = None,
        batch_count: int | None = None,
        model: str | None = None,
        loras: Mapping[str, float] | None = None,
        progress: Progress | None = None,
        **fields: Any,
    ) -> list[Image.Image]:
        """Generate ``batch_count`` images (seeds ``seed``, ``seed + 1``...; a negative or no
        seed: random).

        Options left out take the model's preset defaults, then the request's own (512x512,
        20 steps, CFG 7, the model's sampler). ``loras`` maps LoRA names to weights;
        ``fields`` are any other :class:`~sdrest.ImgGenRequest` fields, in its wire form
        (``clip_skip=2``, ``vae_tiling_params={"enabled": True}``, ``hires={...}``).
        """
        options = {
            "negative_prompt": negative_prompt, "width": width, "height": height,
            "steps": steps, "cfg_scale": cfg_scale, "sampler": sampler, "scheduler": scheduler,
            "seed": seed, "batch_count": batch_count, "model": model, "loras": loras,
        }  # fmt: skip
        options = {k: v for k, v in options.items() if v is not None}
        return self._thread.run(
            lambda relay: self._core.txt2img(prompt, progress=relay, **options, **fields),
            progress,
        )

    def img2img(
        self,
        prompt: str,
        image: ImageInput,
        *,
        strength: float | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> list[Image.Image]:
        """Re-generate ``image`` (a PIL image, a path or encoded bytes) towards ``prompt``;
        ``strength`` 0..1 (default 0.75) is how much changes. The output size is ``width`` x
        ``height`` (default 512x512, whatever the input's size). Other options as
        :meth:`txt2img`."""
        return self._thread.run(
            lambda relay: self._core.img2img(
                prompt, image, strength=strength, progress=relay, **options
            ),
            progress,
        )

    def inpaint(
        self,
        prompt: str,
        image: ImageInput,
        mask: ImageInput,
        *,
        strength: float | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> list[Image.Image]:
        """Repaint the part of ``image`` that is white in ``mask`` (black is kept). Options as
        :meth:`img2img`."""
        return self._thread.run(
            lambda relay: self._core.inpaint(
                prompt, image, mask, strength=strength, progress=relay, **options
            ),
            progress,
        )

    def upscale(
        self,
        image: ImageInput,
        *,
        upscaler: str | None = None,
        repeats: int = 1,
        progress: Progress | None = None,
    ) -> Image.Image:
        """Upscale ``image`` with an ESRGAN model from the models folder (``upscaler``: its
        name; default: the only one). The file decides the factor (2x, 4x); ``repeats`` (1..4)
        runs it again on its own result."""
        return self._thread.run(
            lambda relay: self._core.upscale(
                image, upscaler=upscaler, repeats=repeats, progress=relay
            ),
            progress,
        )

    def generate(
        self,
        request: ImgGenRequest | Mapping[str, Any],
        images: Mapping[str, ImageInput] | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[Image.Image]:
        """Run a whole canonical request (an :class:`~sdrest.ImgGenRequest`, or an ``img_gen``
        body as a dict; missing fields take the model's defaults). ``images`` maps image fields
        (``init_image``, ``mask_image``) to input images."""
        return self._thread.run(
            lambda relay: self._core.generate(request, images, progress=relay), progress
        )
