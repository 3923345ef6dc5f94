"""``stream: true``: the reply as server-sent events, as OpenAI's image streaming sends them.

Up to ``partial_images`` events ``image_generation.partial_image`` (``image_edit.*`` for edits)
carry live previews of the running job, spread over its sampling steps; then one ``.completed``
event per image. A failed job ends the stream with an ``error`` event (the SDK raises it). A
client that leaves mid-stream stops its job, as the synchronous answer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator

import msgspec

from sdrest.api.openai.errors import exception_error
from sdrest.api.openai.responses import CompletedImageEvent, ErrorEvent, PartialImageEvent
from sdrest.api.openai.translate import ImagesJob
from sdrest.errors import JobFailedError
from sdrest.images import image_to_b64
from sdrest.schemas import Job
from sdrest.service import SdrestService

_encoder = msgspec.json.Encoder()

Event = PartialImageEvent | CompletedImageEvent | ErrorEvent


def partial_steps(steps: int, partials: int) -> list[int]:
    """The sampling steps after which each partial image is sent: spread evenly, never 0."""
    return [max(1, math.floor(steps * (k + 1) / (partials + 1))) for k in range(partials)]


def sse(event: Event) -> bytes:
    """One server-sent event, named by its ``type``."""
    return b"event: " + event.type.encode() + b"\ndata: " + _encoder.encode(event) + b"\n\n"


async def _partials(
    service: SdrestService, job: Job, translated: ImagesJob, prefix: str
) -> AsyncGenerator[bytes, None]:
    """The partial images of a running job, until it has finished."""
    request = translated.request
    size = f"{request.width}x{request.height}"
    thresholds = partial_steps(request.sample_params.sample_steps, translated.partial_images)
    async with service.events.subscribe() as events:
        current = await service.get(job.id)  # it may have moved before the subscription
        sent = 0
        while not current.finished:
            event = await events.get()
            if event.job.id != job.id:
                continue
            current = event.job
            if sent >= len(thresholds) or current.progress.preview_step < thresholds[sent]:
                continue
            preview = await service.preview_png(current)
            if preview is None:
                continue
            yield sse(PartialImageEvent.of(prefix, size, sent, image_to_b64(preview[1])))
            sent += 1


async def job_events(
    service: SdrestService, job: Job, translated: ImagesJob, prefix: str
) -> AsyncIterator[bytes]:
    """The event stream of one submitted job (``prefix``: ``image_generation`` or
    ``image_edit``)."""
    finished = False
    try:
        async with contextlib.aclosing(_partials(service, job, translated, prefix)) as partials:
            async for partial in partials:
                yield partial
        finished = True
        done = await service.get(job.id)
        if done.status != "completed" or done.result is None:
            status, body = exception_error(JobFailedError.from_job(done))
            yield sse(ErrorEvent("error", body.error, status))
            return
        fmt = translated.request.output_format
        for ref in done.result.images:
            b64 = await asyncio.to_thread(service.output_b64, done.id, ref.filename)
            yield sse(CompletedImageEvent.of(prefix, ref, fmt, b64))
    finally:
        if not finished:  # the client left (or the stream failed) before the job ended
            service.request_stop_soon(job.id)
