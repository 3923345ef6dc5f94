"""img2img inputs the A1111 way: resize modes, mask inversion and mask blur (pure CPU work).

stable-diffusion.cpp only knows one resize (the binding's centre crop), so the image is brought to
the exact target size here, as A1111 would, and handed on as PNG. Images that need nothing pass
through untouched (no decode, no re-encode).
"""

from __future__ import annotations

from PIL import Image, ImageFilter, ImageOps

from sdrest.decode_gate import DecodeHold
from sdrest.images import decode_input_image, png_b64
from sdrest.settings import Limits

JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL, LATENT_RESIZE = 0, 1, 2, 3


def resize(image: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    """A1111's ``resize_image``: 0/3 stretch, 1 crop to fill, 2 fit and fill the borders."""
    if image.size == (width, height):
        return image
    lanczos = Image.Resampling.LANCZOS
    if mode == CROP_AND_RESIZE:
        return ImageOps.fit(image, (width, height), lanczos)
    if mode != RESIZE_AND_FILL:
        return image.resize((width, height), lanczos)
    ratio, src_ratio = width / height, image.width / image.height
    fit_w = width if ratio < src_ratio else max(1, image.width * height // image.height)
    fit_h = height if ratio >= src_ratio else max(1, image.height * width // image.width)
    fitted = image.resize((fit_w, fit_h), lanczos)
    canvas = Image.new(image.mode, (width, height))
    left, top = (width - fit_w) // 2, (height - fit_h) // 2
    canvas.paste(fitted, (left, top))
    # As A1111 does: the gaps are filled by stretching the image's outermost rows/columns.
    if ratio < src_ratio and top > 0:
        canvas.paste(fitted.crop((0, 0, fit_w, 1)).resize((width, top)), (0, 0))
        bottom = top + fit_h
        edge = fitted.crop((0, fit_h - 1, fit_w, fit_h)).resize((width, height - bottom))
        canvas.paste(edge, (0, bottom))
    elif ratio > src_ratio and left > 0:
        canvas.paste(fitted.crop((0, 0, 1, fit_h)).resize((left, height)), (0, 0))
        right = left + fit_w
        edge = fitted.crop((fit_w - 1, 0, fit_w, fit_h)).resize((width - right, height))
        canvas.paste(edge, (right, 0))
    return canvas


def prepare_init_image(
    value: str,
    width: int,
    height: int,
    mode: int,
    limits: Limits,
    field: str = "init_images[0]",
    *,
    hold: DecodeHold | None = None,
) -> str:
    """The init image at exactly ``width`` x ``height`` (base64 PNG), or ``value`` if it is."""
    image = decode_input_image(value, field, limits, hold)
    if image.size == (width, height):
        return value
    return png_b64(resize(image.convert("RGB"), width, height, mode))


def prepare_mask(
    value: str,
    width: int,
    height: int,
    mode: int,
    limits: Limits,
    *,
    invert: bool,
    blur: int,
    hold: DecodeHold | None = None,
) -> str:
    """The mask (white = repaint) resized, inverted and blurred as A1111 does; base64 PNG."""
    image = decode_input_image(value, "mask", limits, hold)
    if image.size == (width, height) and not invert and blur <= 0:
        return value
    if "A" in image.getbands():
        # A1111 composites a transparent mask on black: transparent = keep.
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    mask = resize(image.convert("L"), width, height, mode)
    if invert:
        mask = ImageOps.invert(mask)
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return png_b64(mask)
