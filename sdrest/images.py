"""Image input and output: decoding with limits, encoding, A1111 infotext, thumbnails.

Pure functions with no state. Decoding is the trust boundary for client images: every failure is
an :class:`ImageInputError` naming the request field, never a crash. Decoding runs on worker
threads, so nothing here touches process-wide settings (warning filters, Pillow's globals).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from PIL import Image, PngImagePlugin

from sdrest.decode_gate import decode_cost
from sdrest.errors import InvalidRequestError
from sdrest.units import format_bytes

if TYPE_CHECKING:
    from sdrest.decode_gate import DecodeHold
    from sdrest.settings import Limits

log = logging.getLogger(__name__)

#: Formats accepted from clients. An allowlist keeps Pillow's riskier decoders (EPS runs
#: Ghostscript, for one) away from untrusted bytes.
INPUT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: Output formats ``encode_image`` writes.

_FORMATS: Mapping[str, tuple[str, str, str]] = MappingProxyType(
    {
        "png": ("PNG", "image/png", "png"),
        "jpeg": ("JPEG", "image/jpeg", "jpg"),
        "webp": ("WEBP", "image/webp", "webp"),
    }
)
_ALIASES: Mapping[str, str] = MappingProxyType({"jpg": "jpeg"})
_WHITESPACE = re.compile(r"\s+")
_B64_URLSAFE = str.maketrans("-_", "+/")
_EXIF_IFD = 0x8769
_EXIF_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\0"
_ASCII_PREFIX = b"ASCII\0\0\0"
_JPEG_MAX_EXIF = 65_000  # one APP1 segment holds 65,533 bytes
_PNG_COMPRESS_LEVEL = 1  # a third of the time of level 6 for a few percent more bytes
_WEBP_LOSSLESS_EFFORT = 80  # effort 100 is ~5x slower for <1% smaller files
_THUMB_MAX_PIXELS = 1 << 28
_INFOTEXT_MAX_PIXELS = 1 << 26
_TRANSPARENT_LUT = (255,) + (0,) * 255


class ImageInputError(InvalidRequestError, ValueError):
    """A client image that cannot be used (400); ``field`` is the request field path.

    A domain error itself, so every family renders it as the 400 it is, with no re-wrapping."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field)
        self.reason = reason


# --- decoding ---------------------------------------------------------------------------------


def _strip_data_url(value: str, field: str) -> str:
    """The base64 payload of a ``data:`` URL, or ``value`` itself when it is not one."""
    if value[:5].lower() != "data:":
        return value
    header, sep, payload = value.partition(",")
    if not sep:
        raise ImageInputError(field, "malformed data URL (no comma)")
    mime, *params = (part.strip().lower() for part in header[5:].split(";"))
    if "base64" not in params:
        raise ImageInputError(field, "data URL must be base64-encoded")
    if mime and not mime.startswith("image/"):
        raise ImageInputError(field, f"data URL is not an image ({mime})")
    return payload


def _normalize_b64(text: str) -> str:
    """Whitespace removed, URL-safe alphabet mapped to the standard one, padding restored."""
    text = _WHITESPACE.sub("", text).translate(_B64_URLSAFE)
    if len(text) % 4 in (2, 3):
        text += "=" * (4 - len(text) % 4)
    return text


def b64_to_bytes(value: str) -> bytes:
    """Decode raw base64 or a base64 data URL; raises ``ValueError`` when it is not base64."""
    payload = _strip_data_url(value.strip(), "base64")
    return base64.b64decode(_normalize_b64(payload), validate=True)


def image_to_b64(data: bytes) -> str:
    """Standard base64 text of encoded image bytes (no data URL prefix)."""
    return base64.b64encode(data).decode("ascii")


def decode_input_image(
    value: str, field_name: str, limits: Limits, hold: DecodeHold | None = None
) -> Image.Image:
    """A base64 (or data URL) request image under the server's input limits; a 400 naming
    ``field_name`` when it is not a usable image. Blocking: call it off the event loop.
    ``hold``: the request's place in the service's decode budget (see :mod:`sdrest.decode_gate`)."""
    return decode_image_field(
        value,
        field_name,
        max_bytes=limits.max_image_bytes,
        max_pixels=limits.max_input_pixels,
        hold=hold,
    )


def decode_image_field(
    value: str, field: str, *, max_bytes: int, max_pixels: int, hold: DecodeHold | None = None
) -> Image.Image:
    """Decode raw base64 or a ``data:image/...;base64,`` URL into a loaded PIL image.

    The base64 length is checked before decoding and the pixel count before pixels are loaded,
    so an oversize payload or a decompression bomb costs nothing. The image mode is untouched.
    """
    data = _image_bytes(value, field, max_bytes)
    return open_image_bytes(data, field, max_pixels=max_pixels, hold=hold)


def input_image_size(value: str, field: str, limits: Limits) -> tuple[int, int]:
    """(width, height) of a request image from its header alone: the same checks (and 400s) as
    :func:`decode_input_image`, no pixel decoded. For sizing an operation's output before any
    work (an upscale, a resize). Blocking: call it off the event loop."""
    data = _image_bytes(value, field, limits.max_image_bytes)
    with _open_unloaded(data, field, max_pixels=limits.max_input_pixels) as image:
        return image.size


def _image_bytes(value: str, field: str, max_bytes: int) -> bytes:
    """The bytes of a base64 image field, its length bounded before anything is copied."""
    # Cheap bound before any copy: generous for line-wrapped base64, fatal for abuse.
    if len(value) > 2 * (max_bytes * 4 // 3 + 4) + 1024:
        raise ImageInputError(field, f"image larger than {format_bytes(max_bytes)}")
    text = _normalize_b64(_strip_data_url(value.strip(), field))
    if not text:
        raise ImageInputError(field, "empty image")
    if len(text) // 4 * 3 - text[-2:].count("=") > max_bytes:
        raise ImageInputError(field, f"image larger than {format_bytes(max_bytes)}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(field, "not valid base64") from exc


def _open_unloaded(data: bytes, field: str, *, max_pixels: int) -> Image.Image:
    """``Image.open`` with the format allowlist and the pixel guard; pixels not yet loaded."""
    if not data:
        raise ImageInputError(field, "empty image")
    try:
        image = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageInputError(field, f"image too large ({exc})") from exc
    except Exception as exc:  # trust boundary: any decoder failure is the client's problem
        log.debug("%s: unreadable image", field, exc_info=True)
        raise ImageInputError(
            field, "not a usable image (PNG, JPEG, WebP, GIF, BMP or TIFF expected)"
        ) from exc
    width, height = image.size
    # Pillow's own threshold counts too: beyond it Image.open already warned of a bomb.
    limit = (
        max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)
    )
    if width <= 0 or height <= 0 or width * height > limit:
        image.close()
        raise ImageInputError(field, f"image of {width}x{height} pixels is too large")
    return image


def _load(image: Image.Image, field: str) -> Image.Image:
    try:
        image.load()
    except Exception as exc:  # truncated or corrupt data, whatever the plugin raises
        log.debug("%s: corrupt image", field, exc_info=True)
        raise ImageInputError(field, f"corrupt image data ({exc})") from exc
    return image


def open_image_bytes(
    data: bytes, field: str, *, max_pixels: int, hold: DecodeHold | None = None
) -> Image.Image:
    """Open and fully load image bytes, with the format allowlist and the pixel-count guard.

    With a ``hold`` the image's decode cost (from its header) is reserved before its pixels
    load: :class:`~sdrest.errors.ServerBusyError` when the decode budget has no room."""
    image = _open_unloaded(data, field, max_pixels=max_pixels)
    if hold is not None:
        try:
            hold.reserve(decode_cost(image), field)
        except BaseException:
            image.close()
            raise
    return _load(image, field)


# --- conversions ------------------------------------------------------------------------------


def to_rgb(image: Image.Image) -> Image.Image:
    """The image as RGB; alpha is dropped, not composited (what stable-diffusion.cpp wants)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def to_mask(image: Image.Image) -> Image.Image:
    """The image as an "L" mask (white = repaint), by luminance."""
    return image if image.mode == "L" else image.convert("L")


def has_alpha(image: Image.Image) -> bool:
    """Whether the image carries transparency (an alpha band or a transparent palette entry)."""
    return "A" in image.getbands() or "transparency" in image.info


def alpha_to_mask(image: Image.Image) -> Image.Image | None:
    """OpenAI edits: transparent pixels become white (repaint) in an "L" mask; None if none.

    None too when the image has no alpha at all, so callers can require a separate mask.
    """
    if not has_alpha(image):
        return None
    rgba = image if image.mode in ("RGBA", "LA") else image.convert("RGBA")
    alpha = rgba.getchannel("A")
    if alpha.getextrema()[0] != 0:
        return None
    return alpha.point(_TRANSPARENT_LUT)


def fit_size(image: Image.Image, width: int, height: int) -> Image.Image:
    """The image resized to ``width`` x ``height`` with Lanczos; the same object if it fits."""
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.LANCZOS)


def drop_opaque_alpha(image: Image.Image) -> Image.Image:
    """RGB when an RGBA image is fully opaque (the library always returns RGBA).

    Smaller files, faster encoding, nothing lost.
    """
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        return image.convert("RGB")
    return image


# --- encoding ---------------------------------------------------------------------------------


def _format(fmt: str) -> str:
    key = _ALIASES.get(fmt.lower(), fmt.lower())
    if key not in _FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; expected one of {', '.join(_FORMATS)}")
    return key


def media_type(fmt: str) -> str:
    """HTTP content type of an output format (``ValueError`` for an unknown one)."""
    return _FORMATS[_format(fmt)][1]


def extension(fmt: str) -> str:
    """File extension of an output format (jpeg -> jpg)."""
    return _FORMATS[_format(fmt)][2]


def _exif_with_comment(text: str) -> bytes:
    exif = Image.Exif()
    # EXIF UserComment with the UNICODE prefix, as A1111 (via piexif) writes it.
    exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = _UNICODE_PREFIX + text.encode("utf-16-be")
    return exif.tobytes()


def encode_image(
    image: Image.Image,
    fmt: str,
    *,
    quality: int = 100,
    infotext: str | None = None,
) -> bytes:
    """Encode to png, jpeg or webp; ``infotext`` goes where A1111 puts it.

    PNG is lossless (``quality`` ignored; compression level 1 for speed: encoding is on every
    job's critical path) with the infotext in a ``parameters`` text chunk. JPEG takes
    ``quality`` 1..100 and drops alpha; WebP takes 0..100 and is lossless at 100. Both carry the
    infotext as an EXIF UserComment. A JPEG whose infotext does not fit one EXIF segment is
    written without it rather than failing.
    """
    key = _format(fmt)
    quality = max(0, min(100, quality))
    image = drop_opaque_alpha(image)
    out = io.BytesIO()
    if key == "png":
        info = None
        if infotext is not None:
            info = PngImagePlugin.PngInfo()
            info.add_text("parameters", infotext)
        image.save(out, "PNG", pnginfo=info, compress_level=_PNG_COMPRESS_LEVEL)
    elif key == "jpeg":
        exif = _exif_with_comment(infotext) if infotext is not None else b""
        if len(exif) > _JPEG_MAX_EXIF:
            log.warning("infotext of %d characters too long for JPEG EXIF; left out", len(exif))
            exif = b""
        image.convert("RGB").save(out, "JPEG", quality=max(1, quality), exif=exif)
    else:
        exif = _exif_with_comment(infotext) if infotext is not None else b""
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if has_alpha(image) else "RGB")
        lossless = quality == 100
        effort = _WEBP_LOSSLESS_EFFORT if lossless else quality
        image.save(out, "WEBP", quality=effort, lossless=lossless, exif=exif)
    return out.getvalue()


# --- A1111 infotext ---------------------------------------------------------------------------

_NEGATIVE = "Negative prompt:"
_PAIR = r'\s*(\w[\w ./+()-]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)'
_PAIR_RE = re.compile(_PAIR)
_PARAMS_LINE_RE = re.compile(rf"(?:{_PAIR})+")


def _quote(value: object) -> str:
    text = str(value)
    if any(c in text for c in ',:"\n\r') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def build_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """AUTOMATIC1111's infotext: prompt, ``Negative prompt: ...``, then ``Key: value, ...``.

    Parameters keep their order; ``None`` values are left out, values holding ``,``, ``:`` or
    ``"`` are JSON-quoted, and a value equal to its key is written as the bare key, all as A1111
    does. The negative prompt line is omitted when empty, the parameter line when there are none.
    """
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{_NEGATIVE} {negative_prompt}")
    pairs = [
        key if key == value else f"{key}: {_quote(value)}"
        for key, value in params.items()
        if value is not None
    ]
    if pairs:
        lines.append(", ".join(pairs))
    return "\n".join(lines)


def _unquote(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value


def parse_infotext(text: str) -> dict[str, str]:
    """Read an infotext back: ``prompt``, ``negative_prompt`` and every ``Key`` as a string.

    The last line holds the parameters when it is a list of ``Key: value`` pairs (or, as A1111
    decides, holds at least three of them); otherwise it belongs to the prompt.
    """
    lines = text.rstrip().split("\n")
    last = lines[-1]
    is_params = bool(last.strip()) and (
        (len(lines) > 1 and _PARAMS_LINE_RE.fullmatch(last) is not None)
        or len(_PAIR_RE.findall(last)) >= 3
    )
    body = lines[:-1] if is_params else lines
    prompt: list[str] = []
    negative: list[str] = []
    target = prompt
    for line in body:
        if target is prompt and line.startswith(_NEGATIVE):
            target = negative
            line = line[len(_NEGATIVE) :].lstrip()
        target.append(line)
    out = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative)}
    if is_params:
        for key, raw in _PAIR_RE.findall(last):
            out[key.strip()] = _unquote(raw)
    return out


def _decode_user_comment(comment: bytes | str) -> str | None:
    if isinstance(comment, str):
        return comment or None
    prefix, body = comment[:8], comment[8:]
    if prefix == _UNICODE_PREFIX:
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            return body.decode("utf-16", errors="replace")
        # A1111/piexif write big-endian; some tools little-endian. ASCII-heavy text has its
        # zero bytes first in big-endian pairs.
        big = body[0::2].count(0) >= body[1::2].count(0)
        return body.decode("utf-16-be" if big else "utf-16-le", errors="replace")
    if prefix in (_ASCII_PREFIX, b"\0" * 8):
        return body.rstrip(b"\0").decode("utf-8", errors="replace") or None
    return None


def read_infotext(data: bytes) -> str | None:
    """The infotext stored in a PNG ``parameters`` chunk or a JPEG/WebP EXIF UserComment.

    Safe on untrusted bytes: anything unreadable gives None.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
        text = image.info.get("parameters")
        width, height = image.size
        if text is None and image.format == "PNG" and width * height <= _INFOTEXT_MAX_PIXELS:
            image.load()  # text chunks after the pixel data are only read by load()
            text = image.info.get("parameters")
        if isinstance(text, str):
            return text
        comment = image.getexif().get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    except Exception:  # untrusted bytes: no infotext, not a crash
        log.debug("no readable infotext", exc_info=True)
        return None
    if isinstance(comment, bytes | str):
        return _decode_user_comment(comment)
    return None


# --- thumbnails -------------------------------------------------------------------------------


def make_thumbnail(data: bytes, size: int) -> bytes:
    """A JPEG (RGB, quality 85) whose longest side is ``size`` clamped to 50..500, aspect kept.

    Images already smaller are not enlarged; transparency is composited on white. Raises
    :class:`ImageInputError` (field ``image``) for anything that is not a usable image.
    """
    size = max(50, min(500, size))
    image = _open_unloaded(data, "image", max_pixels=_THUMB_MAX_PIXELS)
    image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
    image = _load(image, "image")
    if has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, "white")
        image.paste(rgba, mask=rgba.getchannel("A"))
    else:
        image = to_rgb(image)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def png_b64(image: Image.Image) -> str:
    """An image as base64 PNG (fast compression): how a decoded image is handed on as a field."""
    return image_to_b64(encode_image(image, "png"))


def preview_png(image: Image.Image, width: int, height: int, max_side: int = 512) -> bytes:
    """A live preview as PNG, scaled to the job's aspect at most ``max_side`` on its long side.

    Latent-projection previews are 1/8 of the image: scaled up (bilinear) so every client shows
    them at a useful size, but capped because previews are encoded on every poll.
    """
    scale = min(1.0, max_side / max(width, height, 1))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return encode_image(to_rgb(image), "png")
