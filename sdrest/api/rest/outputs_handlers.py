"""Public output downloads (the endpoint behind ``/api/queue/job/{job_id}/output/{filename}``
and its alias ``/api/v1/jobs/{job_id}/output/{filename}``), with ``?thumb=true&size=50..500``
thumbnails.

Public per the spec (a web page's ``<img>`` cannot send a token): job ids carry 80 random bits,
so a URL is a capability. Only a plain file named like an output, directly inside the job's own
folder, is ever served: the name is matched against a strict pattern (no ``..``, no slash, no
absolute path) and symlinks are refused.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from sdrest.api.common import parse_flag, parse_int, service_of
from sdrest.errors import InvalidRequestError, JobNotFoundError, NotFoundError
from sdrest.images import ImageInputError, make_thumbnail
from sdrest.service import SdrestService

_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}
# Outputs are written once under an unguessable id and never change: cache them for good.
_CACHE_FOREVER = "public, max-age=31536000, immutable"
DEFAULT_THUMB = 200


def _plain_file(path: Path, folder: Path) -> bool:
    """A regular file, not a symlink, really inside ``folder``."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False  # symlinks (lstat does not follow them), folders, devices
    return path.resolve().parent == folder.resolve()


async def _missing(service: SdrestService, job_id: str, filename: str) -> NotFoundError:
    """The right 404/410 for a file that is not there: unknown job, expired job or no such file."""
    try:
        await service.get(job_id)  # 410 JOB_EXPIRED once retention has passed
    except NotFoundError:
        return JobNotFoundError(job_id)
    return NotFoundError(f"job {job_id} has no output file {filename!r}")


async def download(request: Request) -> Response:
    """Serve one output image, or a JPEG thumbnail of it."""
    service = service_of(request)
    job_id, filename = request.path_params["job_id"], request.path_params["filename"]
    thumb = parse_flag(request.query_params.get("thumb"), "thumb")
    size = parse_int(request.query_params.get("size"), "size", DEFAULT_THUMB, 50, 500)
    if "size" in request.query_params and not thumb:
        raise InvalidRequestError("size applies to thumbnails: add thumb=true", field="size")
    try:
        path = service.output_file(job_id, filename)
    except ValueError:
        raise NotFoundError(f"no output file {filename!r} for job {job_id!r}") from None
    if not await asyncio.to_thread(_plain_file, path, path.parent):
        raise await _missing(service, job_id, filename)
    suffix = path.suffix.lower()
    if not thumb:
        return FileResponse(
            path,
            media_type=_MEDIA_TYPES.get(suffix, "application/octet-stream"),
            headers={"Cache-Control": _CACHE_FOREVER},
        )
    try:
        small = await asyncio.to_thread(lambda: make_thumbnail(path.read_bytes(), size))
    except (OSError, ImageInputError) as exc:
        raise NotFoundError(f"cannot make a thumbnail of {filename!r}: {exc}") from exc
    return Response(
        small,
        media_type="image/jpeg",
        headers={"Cache-Control": _CACHE_FOREVER, "Content-Disposition": "inline"},
    )

