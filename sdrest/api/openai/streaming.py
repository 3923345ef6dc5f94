"""``stream: true``: the reply as server-sent events, as OpenAI's image streaming sends them.

Up to ``partial_images`` events ``image_generation.partial_image`` (``image_edit.*`` for edits)
carry live previews of the running job, spread over its sampling steps; then one ``.completed``
event per image. A failed job ends the stream with an ``error`` event (the SDK raises it). A
client that leaves mid-stream stops its job, as the synchronous answer does.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from sdrest.api.openai.errors import job_failure
from sdrest.api.openai.translate import Translated
from sdrest.images import image_to_b64
from sdrest.schemas import Job
from sdrest.service import SdrestService

_encoder = msgspec.json.Encoder()


def partial_steps(steps: int, partials: int) -> list[int]:
    """The sampling steps after which each partial image is sent: spread evenly, never 0."""
    return [max(1, math.floor(steps * (k + 1) / (partials + 1))) for k in range(partials)]


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return b"event: " + event.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n"


def _base(kind: str, size: str, output_format: str) -> dict[str, Any]:
    return {
        "created_at": int(time.time()),
        "size": size,
        "quality": "auto",
        "background": "opaque",
        "output_format": output_format,
        "type": kind,
    }


async def job_events(
    service: SdrestService, job: Job, translated: Translated, prefix: str
) -> AsyncIterator[bytes]:
    """The event stream of one submitted job (``prefix``: ``image_generation`` or
    ``image_edit``)."""
    request = translated.request
    size = f"{request.width}x{request.height}"
    fmt = request.output_format
    thresholds = partial_steps(request.sample_params.sample_steps, translated.partial_images)
    finished = False
    try:
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
                data = _base(f"{prefix}.partial_image", size, "png")
                data["partial_image_index"] = sent
                data["b64_json"] = image_to_b64(preview[1])
                yield sse(data["type"], data)
                sent += 1
        finished = True
        done = await service.get(job.id)
        if done.status != "completed" or done.result is None:
            status, body = job_failure(done.error)
            yield sse("error", {"type": "error", **body, "status": status})
            return
        for ref in done.result.images:
            data = _base(f"{prefix}.completed", f"{ref.width}x{ref.height}", fmt)
            data["b64_json"] = await asyncio.to_thread(service.output_b64, done.id, ref.filename)
            data["usage"] = {
                "input_tokens": 0,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
                "output_tokens": 0,
                "total_tokens": 0,
            }
            yield sse(data["type"], data)
    finally:
        if not finished:  # the client left (or the stream failed) before the job ended
            service.request_stop_soon(job.id)
