"""Pure pieces of ``/sdapi/v1/extra-single-image`` and ``extra-batch-images``.

The wire bodies (A1111's ``ExtrasSingleImageRequest`` / ``ExtrasBatchImagesRequest``), the size
arithmetic A1111's postprocessing upscale does, the final Pillow resize/crop and the PNG written
back. The endpoints (``extras_handlers``) only add I/O: decoding, the ESRGAN job, the response.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import msgspec
from PIL import Image, PngImagePlugin

from sdrest.errors import InvalidRequestError

MAX_FACTOR = 8.0
"""Largest ``upscaling_resize`` (A1111's own slider stops at 8)."""
MAX_REPEATS = 4
"""Most ESRGAN passes one job may run (the service's own bound)."""
MAX_BATCH_IMAGES = 64
"""Most images one ``extra-batch-images`` request may carry."""
_PNG_COMPRESS_LEVEL = 1  # the images go straight back over the wire: speed over bytes


class ExtrasOptions(msgspec.Struct, kw_only=True):
    """Fields both extras endpoints share. Unknown fields are ignored, as A1111 ignores them
    (webuiapi sends ``show_extras_results``, ``upscale_first``, ``codeformer_weight``)."""

    resize_mode: int = 0
    """0: scale by ``upscaling_resize``; 1: to ``upscaling_resize_w`` x ``upscaling_resize_h``."""
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str | None = "None"
    upscaler_2: str | None = "None"
    extras_upscaler_2_visibility: float = 0.0
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    show_extras_results: bool = True
    upscale_first: bool = False


class ExtrasSingleRequest(ExtrasOptions, kw_only=True):
    """``POST /extra-single-image``: one base64 image (or data URL)."""

    image: str


class BatchImage(msgspec.Struct, kw_only=True):
    """One entry of ``imageList``."""

    data: str
    name: str = ""


class ExtrasBatchRequest(ExtrasOptions, kw_only=True):
    """``POST /extra-batch-images``: ``imageList`` of ``{data, name}``."""

    imageList: list[BatchImage]  # the A1111 wire name


def check_options(options: ExtrasOptions) -> None:
    """Refuse what sdrest cannot do instead of silently skipping it (400 with the field)."""
    if options.resize_mode not in (0, 1):
        raise InvalidRequestError(
            "resize_mode must be 0 (scale by upscaling_resize) or 1 (to a size)",
            field="resize_mode",
        )
    if options.gfpgan_visibility != 0:
        raise InvalidRequestError(
            "face restoration (GFPGAN) is not available in sdrest; send gfpgan_visibility 0",
            field="gfpgan_visibility",
        )
    if options.codeformer_visibility != 0:
        raise InvalidRequestError(
            "face restoration (CodeFormer) is not available in sdrest; send"
            " codeformer_visibility 0",
            field="codeformer_visibility",
        )
    second = (options.upscaler_2 or "None").strip()
    if second.lower() != "none" and options.extras_upscaler_2_visibility != 0:
        raise InvalidRequestError(
            'a second upscaler is not supported; send upscaler_2 "None" or'
            " extras_upscaler_2_visibility 0",
            field="upscaler_2",
        )
    if options.resize_mode == 0 and not (
        math.isfinite(options.upscaling_resize) and 0 < options.upscaling_resize <= MAX_FACTOR
    ):
        raise InvalidRequestError(
            f"upscaling_resize must be above 0 and at most {MAX_FACTOR:g}",
            field="upscaling_resize",
        )
    if options.resize_mode == 1:
        for name in ("upscaling_resize_w", "upscaling_resize_h"):
            if getattr(options, name) <= 0:
                raise InvalidRequestError(f"{name} must be positive", field=name)


@dataclass(frozen=True)
class ExtrasTarget:
    """What one image becomes: the exact output size and how the upscaler is applied."""

    width: int
    height: int
    scale: float
    """The factor applied before an optional centre crop (to-size mode scales by the larger)."""
    crop: bool
    info: dict[str, str] = field(default_factory=dict)
    """A1111's ``Postprocess ...`` infotext pairs."""


def target_size(
    width: int, height: int, options: ExtrasOptions, upscaler: str, max_side: int
) -> ExtrasTarget:
    """The output of A1111's postprocessing upscale for a ``width`` x ``height`` input.

    By factor: ``round(side * factor)``. To size with crop: scaled by the larger ratio, then
    centre-cropped to exactly the size. To size without crop: scaled by the larger ratio, the
    aspect ratio kept (A1111 does the same). A side over ``max_side`` is a 400, before any work.
    """
    info: dict[str, str] = {}
    if options.resize_mode == 1:
        want_w, want_h = options.upscaling_resize_w, options.upscaling_resize_h
        scale = max(want_w / width, want_h / height)
        crop = options.upscaling_crop
        out_w, out_h = (want_w, want_h) if crop else _scaled(width, height, scale)
        info["Postprocess upscale to"] = f"{want_w}x{want_h}"
    else:
        scale, crop = options.upscaling_resize, False
        out_w, out_h = _scaled(width, height, scale)
        info["Postprocess upscale by"] = f"{scale:g}"
    info["Postprocess upscaler"] = upscaler
    full_w, full_h = _scaled(width, height, scale)  # before a crop: what is held in memory
    if max(out_w, out_h, full_w, full_h) > max_side:
        raise InvalidRequestError(
            f"upscaling {width}x{height} by {scale:g} gives {full_w}x{full_h}; the largest side"
            f" allowed is {max_side}",
            field="upscaling_resize_w" if options.resize_mode == 1 else "upscaling_resize",
        )
    return ExtrasTarget(out_w, out_h, scale, crop, info)


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def esrgan_repeats(scale: float, native: int) -> int:
    """ESRGAN passes needed to reach ``scale`` with a ``native``x model (1..MAX_REPEATS).

    A1111 also repeats its upscaler until the size is reached, then resizes with Lanczos.
    """
    if native <= 1 or scale <= native:
        return 1
    return max(1, min(MAX_REPEATS, math.ceil(math.log(scale) / math.log(native) - 1e-9)))


def finish(image: Image.Image, target: ExtrasTarget) -> Image.Image:
    """Bring an upscaled (or original) image to the target: Lanczos resize, then centre crop."""
    if target.crop:
        # Scale to cover the box, then cut the centre: exactly width x height.
        ratio = max(target.width / image.width, target.height / image.height)
        scaled = (
            max(target.width, round(image.width * ratio)),
            max(target.height, round(image.height * ratio)),
        )
    else:
        scaled = (target.width, target.height)
    if image.size != scaled:
        image = image.resize(scaled, Image.Resampling.LANCZOS)
    if target.crop and image.size != (target.width, target.height):
        left = (image.width - target.width) // 2
        top = (image.height - target.height) // 2
        image = image.crop((left, top, left + target.width, top + target.height))
    return image


def pil_resample(image: Image.Image, target: ExtrasTarget, resample: str) -> Image.Image:
    """The "Lanczos" / "Nearest" upscalers: Pillow straight to the scaled size, then finish."""
    method = Image.Resampling.NEAREST if resample == "Nearest" else Image.Resampling.LANCZOS
    size = _scaled(image.width, image.height, target.scale)
    resized = image.resize(size, method) if image.size != size else image
    return finish(resized, target)


def postprocess_text(info: dict[str, str]) -> str:
    """``Postprocess upscale by: 2, Postprocess upscaler: name`` (A1111's ``postprocessing``)."""
    return ", ".join(f"{key}: {value}" for key, value in info.items())


def html_info(info: dict[str, str]) -> str:
    """The ``html_info`` A1111 answers with: the postprocessing line in a paragraph."""
    text = postprocess_text(info)
    return f"<p>{_escape(text)}</p>" if text else ""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def encode_png(image: Image.Image, parameters: str | None, postprocessing: str) -> bytes:
    """PNG bytes keeping the input's ``parameters`` infotext and adding A1111's
    ``postprocessing`` chunk, as A1111's extras do."""
    meta = PngImagePlugin.PngInfo()
    if parameters:
        meta.add_text("parameters", parameters)
    if postprocessing:
        meta.add_text("postprocessing", postprocessing)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=meta, compress_level=_PNG_COMPRESS_LEVEL)
    return out.getvalue()


def text_chunks(image: Image.Image) -> dict[str, str]:
    """The string metadata of a decoded image (PNG text chunks), for ``png-info`` ``items``."""
    return {
        key: value
        for key, value in image.info.items()
        if isinstance(key, str) and isinstance(value, str) and key != "exif"
    }
