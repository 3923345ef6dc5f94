"""``/api/image/resize`` and ``/api/image/crop``: wire bodies and the pure Pillow work behind them.

Everything here is synchronous CPU work with no I/O; the routes run it through
``asyncio.to_thread`` so a large image never stalls the event loop. The output size is checked
from the input's header before its pixels are decoded. Input images go through the
same decoder as generation inputs (format allowlist, byte and pixel limits), so these tools are no
easier to abuse than a generation request.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from PIL import Image, ImageOps

from sdrest.api.rest.utility_responses import Dimensions, ImageReply
from sdrest.decode_gate import DecodeHold
from sdrest.errors import InvalidRequestError
from sdrest.images import (
    decode_input_image,
    encode_image,
    has_alpha,
    image_to_b64,
    input_image_size,
    media_type,
)
from sdrest.settings import Limits

OutputFormat = Literal["png", "jpeg", "webp"]
ResizeMode = Literal["stretch", "fit", "fill"]
Quality = Annotated[int, Meta(ge=1, le=100)]
Size = Annotated[int, Meta(ge=1)]
_KEPT_MODES = frozenset({"RGB", "RGBA", "L", "LA"})


class _Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base: unknown fields are refused, so a typo is a 400 naming it."""


class ResizeBody(_Body):
    """``POST /api/image/resize``.

    Give ``width`` and ``height``, or one of them to keep the aspect ratio. ``mode``: ``stretch``
    makes exactly width x height, ``fit`` keeps the aspect ratio inside that box, ``fill`` covers
    the box and crops the overflow evenly from both sides.
    """

    image: str
    """Base64 or a ``data:image/...;base64,`` URL."""
    width: Size | None = None
    height: Size | None = None
    mode: ResizeMode = "stretch"
    output_format: OutputFormat = "png"
    quality: Quality = 95
    """JPEG/WebP quality (WebP at 100 is lossless; PNG ignores it)."""


class CropBody(_Body):
    """``POST /api/image/crop``: the box ``x, y, width, height`` must lie inside the image."""

    image: str
    width: Size
    height: Size
    x: Annotated[int, Meta(ge=0)] = 0
    y: Annotated[int, Meta(ge=0)] = 0
    output_format: OutputFormat = "png"
    quality: Quality = 95


def decode_input(value: str, limits: Limits, hold: DecodeHold | None = None) -> Image.Image:
    """The request image, decoded under the server's input limits (400 naming ``image``) and,
    with a ``hold``, the decode budget."""
    image = decode_input_image(value, "image", limits, hold)
    if image.mode in _KEPT_MODES:
        return image
    # Palette, 16-bit, CMYK...: Lanczos and the encoders want 8-bit RGB(A) or grey.
    return image.convert("RGBA" if has_alpha(image) else "RGB")


def target_size(
    original: tuple[int, int], width: int | None, height: int | None, limits: Limits
) -> tuple[int, int]:
    """The requested size, the missing side derived from the aspect ratio; 400 when out of range."""
    if width is None and height is None:
        raise InvalidRequestError("give width, height or both", field="width")
    ow, oh = original
    if width is None:
        assert height is not None
        width = max(1, round(ow * height / oh))
    elif height is None:
        height = max(1, round(oh * width / ow))
    for name, value in (("width", width), ("height", height)):
        if value > limits.max_size:
            raise InvalidRequestError(
                f"{name} must be at most {limits.max_size}, got {value}", field=name
            )
    if width * height > limits.max_input_pixels:
        raise InvalidRequestError(
            f"{width}x{height} is more than {limits.max_input_pixels} pixels", field="width"
        )
    return width, height


def resize(image: Image.Image, size: tuple[int, int], mode: ResizeMode) -> Image.Image:
    """Resize with Lanczos in one of the three modes (see :class:`ResizeBody`)."""
    if mode == "fit":
        return ImageOps.contain(image, size, Image.Resampling.LANCZOS)
    if mode == "fill":
        return ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def crop_box(
    size: tuple[int, int], x: int, y: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """The Pillow box (left, top, right, bottom); 400 when any part falls outside the image."""
    iw, ih = size
    if x + width > iw or y + height > ih:
        raise InvalidRequestError(
            f"crop box {width}x{height} at ({x}, {y}) does not fit inside the {iw}x{ih} image",
            field="width" if x + width > iw else "height",
        )
    return x, y, x + width, y + height


def _reply(image: Image.Image, original: tuple[int, int], fmt: str, quality: int) -> ImageReply:
    data = encode_image(image, fmt, quality=quality)
    return ImageReply(
        image=image_to_b64(data),
        width=image.width,
        height=image.height,
        format=fmt,
        mime_type=media_type(fmt),
        size=len(data),
        original=Dimensions(*original),
    )


def resize_image(body: ResizeBody, limits: Limits, hold: DecodeHold | None = None) -> ImageReply:
    """Size the output from the image's header, then decode, resize and re-encode (CPU: run it
    off the event loop)."""
    size = target_size(
        input_image_size(body.image, "image", limits), body.width, body.height, limits
    )
    with decode_input(body.image, limits, hold) as image:
        return _reply(resize(image, size, body.mode), image.size, body.output_format, body.quality)


def crop_image(body: CropBody, limits: Limits, hold: DecodeHold | None = None) -> ImageReply:
    """Check the box against the image's header, then decode, crop and re-encode (CPU: run it
    off the event loop)."""
    original = input_image_size(body.image, "image", limits)
    box = crop_box(original, body.x, body.y, body.width, body.height)
    with decode_input(body.image, limits, hold) as image:
        return _reply(image.crop(box), image.size, body.output_format, body.quality)
