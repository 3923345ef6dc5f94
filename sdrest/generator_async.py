"""``AsyncGenerator``: the library API for code already in an event loop, and the one core the
synchronous :class:`~sdrest.Generator` runs on its private loop.

Every call goes through :class:`~sdrest.service.SdrestService` (submit, the event bus, wait,
the output files): the same planning, queue, worker process and infotext as the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
from PIL import Image

from sdrest.errors import InvalidRequestError, JobFailedError, ModelNotFoundError
from sdrest.generation import (
    GenerationCancelledError,
    ImageInput,
    info_for,
    input_b64,
    request_layer,
    with_info,
)
from sdrest.schemas import ImgGenRequest, Job, UpscaleRequest
from sdrest.service import SdrestService
from sdrest.settings import Settings, deep_merge, load_settings

Progress = Callable[[int, int, str], object]
"""``progress(step, steps, phase)``: phase is ``loading`` (step/steps count tensors),
``sampling`` (steps), ``upscaling`` (tiles) or ``converting``."""

_CANCEL_CODES = frozenset({"cancelled", "interrupted"})


def make_settings(
    models_dir: str | Path,
    model: str,
    data_dir: str | Path | None,
    settings: Settings | None,
    config_file: str | Path | None,
    overrides: Mapping[str, Any],
) -> tuple[Settings, Path | None]:
    """The generator's settings, and the private temporary data folder it made (or None).

    ``overrides`` are setting names (``threads``, ``engine_mode``, ``offload_to_cpu``...). The
    environment is not read: a library's configuration is what its caller passes. Without a
    ``data_dir`` the jobs and files live in a temporary folder removed on close, so a generator
    never shares (and never recovers jobs from) a server's database.
    """
    if settings is None:
        # No preload: a library call loads what it needs, and shows the load as its progress.
        flags = {"preview": "none", "preload": False, **overrides}
        flags.update(models_dir=str(models_dir), model=model)
        if data_dir is not None:
            flags["data_dir"] = str(data_dir)
        settings = load_settings(flags, env={}, config_file=config_file)
    elif overrides or config_file is not None:
        raise TypeError("pass settings= or setting overrides, not both")
    if settings.data_dir:
        return settings, None
    temporary = Path(tempfile.mkdtemp(prefix="sdrest-"))
    return msgspec.structs.replace(settings, data_dir=str(temporary)), temporary


def _read_outputs(service: SdrestService, job: Job) -> list[Image.Image]:
    """The job's output files as loaded PIL images carrying their :class:`ImageInfo`
    (blocking: off the loop)."""
    assert job.result is not None
    images = []
    for index, ref in enumerate(job.result.images):
        path = service.output_file(job.id, ref.filename)
        image = Image.open(io.BytesIO(path.read_bytes()))
        image.load()
        images.append(with_info(image, info_for(job, index, path)))
    return images


def _failure(job: Job) -> JobFailedError:
    if job.error is not None and job.error.code in _CANCEL_CODES:
        return GenerationCancelledError.from_job(job)
    return JobFailedError.from_job(job)


class AsyncGenerator:
    """Generate images from async code: ``async with AsyncGenerator(models_dir=...) as sd:
    images = await sd.txt2img("a lovely cat")``. The methods and arguments are those of
    :class:`~sdrest.Generator` (which documents them), awaited.

    Cancelling a task that awaits a method stops its job; :meth:`cancel` stops every job of this
    generator.
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
        self.settings, self._temporary = make_settings(
            models_dir, model, data_dir, settings, config_file, overrides
        )
        self.service = SdrestService(self.settings)
        """The service underneath (its queue, models, events), for what the methods do not do."""
        self._state = "new"
        self._start_lock = asyncio.Lock()
        self._jobs: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Scan the models and start the job system (the first call does it when needed); the
        model itself loads with the first generation."""
        async with self._start_lock:
            if self._state == "closed":
                raise RuntimeError("the generator is closed")
            if self._state == "new":
                await self.service.start()
                self._state = "started"

    async def close(self) -> None:
        """Stop the engine (its worker process) and the job system; remove the temporary data
        folder (and so the files :attr:`ImageInfo.path` names) unless ``data_dir`` was given."""
        async with self._start_lock:
            if self._state == "started":
                await self.service.stop()
            self._state = "closed"
        if self._temporary is not None:
            await asyncio.to_thread(shutil.rmtree, self._temporary, True)
            self._temporary = None

    async def __aenter__(self) -> AsyncGenerator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- generation --------------------------------------------------------------------------

    async def txt2img(
        self, prompt: str, *, progress: Progress | None = None, **options: Any
    ) -> list[Image.Image]:
        """Text to image; ``options`` as :meth:`sdrest.Generator.txt2img` takes them."""
        return await self.generate(_layer(prompt, options), progress=progress)

    async def img2img(
        self,
        prompt: str,
        image: ImageInput,
        *,
        strength: float | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> list[Image.Image]:
        """Image to image (see :meth:`sdrest.Generator.img2img`)."""
        layer = _layer(prompt, {**options, "strength": strength})
        return await self.generate(layer, {"init_image": image}, progress=progress)

    async def inpaint(
        self,
        prompt: str,
        image: ImageInput,
        mask: ImageInput,
        *,
        strength: float | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> list[Image.Image]:
        """Repaint the white part of ``mask`` (see :meth:`sdrest.Generator.inpaint`)."""
        layer = _layer(prompt, {**options, "strength": strength})
        images = {"init_image": image, "mask_image": mask}
        return await self.generate(layer, images, progress=progress)

    async def generate(
        self,
        request: ImgGenRequest | Mapping[str, Any],
        images: Mapping[str, ImageInput] | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[Image.Image]:
        """Run one canonical request (an :class:`~sdrest.ImgGenRequest`, or its fields as an
        ``img_gen`` body whose missing fields take the model's defaults); ``images`` maps image
        fields (``init_image``, ``mask_image``, ``control_image``) to input images."""
        await self.start()
        layer = msgspec.to_builtins(request) if isinstance(request, ImgGenRequest) else request
        layer = dict(layer)
        for name, value in (images or {}).items():
            layer[name] = await asyncio.to_thread(input_b64, value, name)
        full = self._compose(layer)
        job = await self._follow(lambda: self.service.submit(full, family="library"), progress)
        return await asyncio.to_thread(_read_outputs, self.service, job)

    async def upscale(
        self,
        image: ImageInput,
        *,
        upscaler: str | None = None,
        repeats: int = 1,
        progress: Progress | None = None,
    ) -> Image.Image:
        """Upscale with an ESRGAN model (see :meth:`sdrest.Generator.upscale`)."""
        await self.start()
        name = upscaler or self._only_upscaler()
        data = await asyncio.to_thread(input_b64, image, "image")
        request = UpscaleRequest(image=data, upscaler=name, repeats=repeats)
        submit = self.service.submit_upscale
        job = await self._follow(lambda: submit(request, family="library"), progress)
        return (await asyncio.to_thread(_read_outputs, self.service, job))[0]

    async def cancel(self) -> None:
        """Stop this generator's running and queued jobs; each waiting call raises
        :class:`~sdrest.generation.GenerationCancelledError`."""
        for job_id in list(self._jobs):
            with contextlib.suppress(JobFailedError, InvalidRequestError, LookupError):
                await self.service.request_stop(job_id, wait=True)

    # -- internals ---------------------------------------------------------------------------

    def _compose(self, layer: Mapping[str, Any]) -> ImgGenRequest:
        """The request with the model's preset defaults under what the caller set."""
        model = layer.get("model")
        defaults = self.service.models.defaults_for(model if isinstance(model, str) else None)
        try:
            return msgspec.convert(deep_merge(defaults, layer), ImgGenRequest)
        except msgspec.ValidationError as exc:
            raise InvalidRequestError(f"invalid request: {exc}") from exc

    def _only_upscaler(self) -> str:
        names = [entry.name for entry in self.service.models.entries("upscaler")]
        if len(names) == 1:
            return names[0]
        found = ", ".join(names) or "none"
        raise ModelNotFoundError(f"name the upscaler (found: {found})")

    async def _follow(self, submit: Callable[[], Awaitable[Job]], progress: Progress | None) -> Job:
        """Submit, report progress until the job ends, and return it completed (else raise its
        :class:`~sdrest.errors.JobFailedError`). Leaving early (a cancelled task, a progress
        callback that raised) stops the job."""
        service = self.service
        async with service.events.subscribe() as events:
            job = await submit()
            self._jobs.add(job.id)
            try:
                last = (job.progress.phase, -1, -1)
                while not job.finished:
                    event = await events.get()
                    if event.job.id != job.id:
                        continue
                    job, p = event.job, event.job.progress
                    now = (p.phase, p.step, p.steps)
                    if progress is not None and event.type == "progress" and now != last:
                        last = now
                        progress(p.step, p.steps, p.phase)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(service.request_stop(job.id, wait=True))
                raise
            finally:
                self._jobs.discard(job.id)
        job = await service.get(job.id)
        if job.status != "completed" or job.result is None:
            raise _failure(job)
        return job


def _layer(prompt: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`~sdrest.generation.request_layer` of the named options; the rest are request
    fields."""
    named = {
        "negative_prompt", "width", "height", "steps", "cfg_scale", "sampler", "scheduler",
        "seed", "batch_count", "strength", "model", "loras", "output_format",
    }  # fmt: skip
    given = {k: v for k, v in options.items() if k in named}
    extra = {k: v for k, v in options.items() if k not in named}
    return request_layer(prompt, **given, fields=extra)
