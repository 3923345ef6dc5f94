"""``POST /api/models/download``: get model files from the Hugging Face hub, as a job.

A download is a job of kind ``download``, shown in the queue, ``/ws`` and
``/api/queue/job/{id}`` like any other, with bytes done/total as its progress
(``current_step``/``total_steps``, phase ``downloading``). It runs in its own lane, in a
thread, beside the engine's queue: minutes of network never hold a generation up. Each file lands
in the typed folder its header says; a multi-file family (a diffusion model with its VAE and text
encoders) gets a preset in the server's config file. The hub is asked only when the job runs, so
an unknown repository, a network error or a checksum mismatch fails the job (its ``error``).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest.model_responses import ModelDownloadReply
from sdrest.api.rest.schemas import DownloadBody
from sdrest.api.rest.translate import decode
from sdrest.auth import principal_of
from sdrest.schemas import DownloadRequest

_decoder = msgspec.json.Decoder(DownloadBody)


async def download_model(request: Request) -> Response:
    """Check the names and queue the download (202); poll ``status_url`` for its progress."""
    body = decode(await read_body(request, 64 * 1024), _decoder)
    job = await service_of(request).submit_download(
        DownloadRequest(
            repo=body.repo, files=body.files or [], all_files=body.all, revision=body.revision
        ),
        owner=principal_of(request).username,
        family="rest",
    )
    assert job.download is not None
    return JSONResponse(
        ModelDownloadReply(
            request_id=job.id,
            job_id=job.id,
            status="queued",
            message="Model download queued; the files appear in /api/models when done",
            repo=job.model,
            files=job.download.files,
            status_url=f"/api/queue/job/{job.id}",
        ),
        status_code=202,
    )
