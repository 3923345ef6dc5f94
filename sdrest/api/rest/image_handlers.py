"""``/api/image/*`` endpoints: download (public), resize and crop; access rules, bodies and
answers are declared in :mod:`sdrest.api.rest.routes`. The Pillow work is in
:mod:`sdrest.api.rest.image_tools`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import (
    JSONResponse,
    client_address,
    parse_choice,
    read_body,
    service_of,
)
from sdrest.api.rest import image_tools, translate
from sdrest.api.rest.utility_responses import DownloadReply, ImageReply
from sdrest.api.routing import Query
from sdrest.decode_gate import DecodeHold
from sdrest.errors import InvalidRequestError
from sdrest.images import image_to_b64
from sdrest.settings import Limits

_resize_decoder = msgspec.json.Decoder(image_tools.ResizeBody)
_crop_decoder = msgspec.json.Decoder(image_tools.CropBody)

Encoding = Literal["binary", "base64"]
ENCODINGS: Final[dict[str, Encoding]] = {
    "binary": "binary",
    "raw": "binary",
    "base64": "base64",
    "json": "base64",
}
"""``?encoding=`` spellings."""
DOWNLOAD_QUERY: Final = (
    Query("url", {"type": "string"}, "The http(s) URL of the image.", required=True),
    Query(
        "encoding",
        {"type": "string", "enum": list(ENCODINGS)},
        "`binary` answers the image itself, `base64` a JSON document.",
    ),
)
"""What ``GET /api/image/download`` reads."""
_DOWNLOAD_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}


async def download(request: Request) -> Response:
    """Fetch a remote image for the browser (public).

    Unless the server runs with ``--no-allow-url-images`` (403 then); public addresses only,
    every redirect re-checked (see :mod:`sdrest.net.fetch`), ``--fetch-per-minute`` per client.
    """
    service = service_of(request)
    url = request.query_params.get("url", "").strip()
    if not url:
        raise InvalidRequestError("the url query parameter is required", field="url")
    query = request.query_params.get("encoding")
    encoding = parse_choice(query, "encoding", ENCODINGS, "binary")
    from sdrest.net.fetch import fetch_image  # httpx loads only when a URL is fetched

    service.url_fetches.check(client_address(request))

    image = await fetch_image(
        url, service.settings.fetch, max_bytes=service.settings.limits.max_image_bytes
    )
    if encoding == "binary":
        return Response(image.data, media_type=image.media_type, headers=_DOWNLOAD_HEADERS)
    encoded = image_to_b64(image.data)
    answer = DownloadReply(
        image=encoded,
        data_url=f"data:{image.media_type};base64,{encoded}",
        mime_type=image.media_type,
        format=image.format.lower(),
        width=image.width,
        height=image.height,
        size=len(image.data),
    )
    return JSONResponse(answer)


async def _image_tool(
    request: Request,
    decoder: msgspec.json.Decoder[Any],
    work: Callable[[Any, Limits, DecodeHold], ImageReply],
) -> Response:
    service = service_of(request)
    limits = service.settings.limits
    body = translate.decode(await read_body(request), decoder)
    return JSONResponse(
        await asyncio.to_thread(service.decodes.call, lambda hold: work(body, limits, hold))
    )


async def resize(request: Request) -> Response:
    """Stretch, fit or fill to a size; base64 in, base64 out."""
    return await _image_tool(request, _resize_decoder, image_tools.resize_image)


async def crop(request: Request) -> Response:
    """A box inside the image; base64 in, base64 out."""
    return await _image_tool(request, _crop_decoder, image_tools.crop_image)
