"""The stable-diffusion.cpp-rest readme's synchronous API under ``/api/v1``.

``POST /api/v1/generate`` waits for the images and answers ``{job_id, status: "completed",
images: [{data, seed, parameters}], generation_time}``; ``GET /api/v1/generate/{job_id}`` answers
the same document for any job (its images once completed). The job is an ordinary /api job: it
appears in the queue, ``/ws`` and ``/api/queue/job/{id}`` like the others. The readme's
``/api/v1/models`` and ``/api/v1/auth/*`` paths are the /api handlers under their v1 names
(:mod:`sdrest.api.rest.routes`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import (
    JSONResponse,
    client_address,
    read_body,
    run_sync,
    service_of,
    visible_job,
)
from sdrest.api.rest import generation_handlers, translate
from sdrest.api.rest.schemas import GenerateBody
from sdrest.auth import principal_of
from sdrest.schemas import Job
from sdrest.service import SdrestService

_STATUS = {"queued": "queued", "running": "processing"}


class V1GenerateBody(GenerateBody, kw_only=True):
    """``POST /api/v1/generate``: the /api generation body with the readme's names."""

    model: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    """Alias of ``model_name``."""
    batch_size: int | None = None
    """Alias of ``batch_count``."""


class V1Image(msgspec.Struct, kw_only=True):
    """One generated image: base64 data, its seed and the parameters that made it."""

    data: str
    seed: int
    parameters: dict[str, Any]


class V1Result(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer of ``/api/v1/generate`` and ``/api/v1/generate/{job_id}``."""

    job_id: str
    status: str
    """``queued``, ``processing``, ``completed``, ``failed`` or ``cancelled``."""
    images: list[V1Image] = msgspec.field(default_factory=list)
    generation_time: float | None = None
    """Seconds from the start of the job to its end (finished jobs)."""
    error: str | None = None
    warnings: list[str] | None = None


_decoder = msgspec.json.Decoder(V1GenerateBody)


def _parameters(job: Job, seed: int) -> dict[str, Any]:
    """The readme's ``parameters`` of one image."""
    request = job.request
    if request is None:
        return {"seed": seed}
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "model": job.model,
        "width": request.width,
        "height": request.height,
        "steps": request.sample_params.sample_steps,
        "cfg_scale": request.sample_params.guidance.txt_cfg,
        "seed": seed,
        "batch_size": request.batch_count,
    }


def result_of(service: SdrestService, job: Job) -> V1Result:
    """A job as the v1 document (reads its image files: call it off the event loop)."""
    status = _STATUS.get(job.status, job.status)
    images = []
    if job.status == "completed" and job.result is not None:
        images = [
            V1Image(
                data=service.output_b64(job.id, ref.filename),
                seed=ref.seed,
                parameters=_parameters(job, ref.seed),
            )
            for ref in job.result.images
        ]
    took = None
    if job.started is not None and job.completed is not None:
        took = round(job.completed - job.started, 3)
    error = job.error.message if job.error is not None else None
    return V1Result(
        job_id=job.id, status=status, images=images, generation_time=took, error=error
    )


async def generate(request: Request) -> Response:
    """Generate and wait: the readme's synchronous text-to-image (img2img with ``init_image``)."""
    service = service_of(request)
    raw = await read_body(request)
    body, warnings = generation_handlers.decode_generate(service, raw, _decoder)
    body = msgspec.structs.replace(
        body,
        model_name=body.model_name or body.model,
        batch_count=body.batch_count if body.batch_count is not None else body.batch_size,
    )
    body = await generation_handlers.fetch_url_images(service, body, client_address(request))
    mode: translate.Mode = "img2img" if (body.init_image or body.source_image) else "text2img"
    canonical, more = await generation_handlers.plan_request(service, body, mode)
    job = await generation_handlers.submit(service, canonical, principal_of(request).username)
    done = await run_sync(request, service, job)
    if done is None:  # the client left: nobody reads this answer
        return Response(status_code=499)
    result = await asyncio.to_thread(result_of, service, done)
    result.warnings = (warnings + more) or None
    return JSONResponse(result)


async def generation(request: Request) -> Response:
    """A v1 job's document: its status, and its images once completed."""
    job = await visible_job(request, request.path_params["job_id"])
    service = service_of(request)
    return JSONResponse(await asyncio.to_thread(result_of, service, job))
