"""http(s) URLs where A1111 takes an image (``init_images``, ``mask``, ``extra_images``).

A1111 fetches such URLs; so does sdrest unless started with ``--no-allow-url-images``, only
through :func:`sdrest.net.fetch.fetch_image_bytes` (which refuses private addresses on every hop)
and at most ``--fetch-per-minute`` times per client address, as on ``/api``.
Fetched bytes become base64 so the rest of the path sees one kind of image value.
"""

from __future__ import annotations

import base64

import msgspec

from sdrest.api.sdapi.schemas import Img2ImgBody, Txt2ImgBody
from sdrest.errors import InvalidRequestError, SdrestError
from sdrest.net.rate import FetchRateLimiter
from sdrest.settings import Settings


def is_url(value: str) -> bool:
    """Whether an image value is an http(s) URL rather than base64 or a data URL."""
    head = value[:8].lower()
    return head.startswith(("http://", "https://"))


def has_urls(body: Txt2ImgBody) -> bool:
    """Whether any image field of the body holds a URL."""
    return any(is_url(v) for v, _ in _image_values(body))


def _image_values(body: Txt2ImgBody) -> list[tuple[str, str]]:
    values: list[tuple[str, str]] = []
    if body.extra_images is not None:
        values += [(v, f"extra_images[{i}]") for i, v in enumerate(body.extra_images)]
    if isinstance(body, Img2ImgBody):
        if body.init_images is not None:
            values += [(v, f"init_images[{i}]") for i, v in enumerate(body.init_images)]
        if body.mask is not None:
            values.append((body.mask, "mask"))
    return values


async def _fetch(value: str, field: str, settings: Settings) -> str:
    if not is_url(value):
        return value
    if not settings.fetch.allow_url_images:
        raise InvalidRequestError(
            f"{field}: URL images are disabled on this server (start it with"
            " --allow-url-images); send base64 or a data URL",
            field=field,
        )
    try:
        from sdrest.net.fetch import fetch_image_bytes  # httpx loads only when needed

        data = await fetch_image_bytes(
            value, settings.fetch, max_bytes=settings.limits.max_image_bytes
        )
    except SdrestError as exc:  # name the A1111 field, not the fetcher's "url"
        exc.field = field
        exc.message = f"{field}: {exc.message}"
        raise
    return base64.b64encode(data).decode("ascii")


async def fetch_url_images(
    body: Txt2ImgBody, settings: Settings, limiter: FetchRateLimiter, client: str
) -> Txt2ImgBody:
    """The body with every URL image replaced by its fetched bytes (base64); the fetches count
    against ``client``'s ``--fetch-per-minute`` (429 past it, nothing fetched)."""
    if not has_urls(body):
        return body
    if settings.fetch.allow_url_images:
        limiter.check(client, sum(1 for v, _ in _image_values(body) if is_url(v)))
    changes: dict[str, object] = {}
    if body.extra_images is not None:
        changes["extra_images"] = [
            await _fetch(v, f"extra_images[{i}]", settings) for i, v in enumerate(body.extra_images)
        ]
    if isinstance(body, Img2ImgBody):
        if body.init_images is not None:
            changes["init_images"] = [
                await _fetch(v, f"init_images[{i}]", settings)
                for i, v in enumerate(body.init_images)
            ]
        if body.mask is not None:
            changes["mask"] = await _fetch(body.mask, "mask", settings)
    return msgspec.structs.replace(body, **changes)
