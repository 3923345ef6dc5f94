"""img2img inputs the A1111 way: resize modes, transparency, mask inversion (pure CPU work).

The mask's blur is the job's (the canonical ``inpaint.mask_blur``), after the mask has been
brought to the image's size here.

stable-diffusion.cpp only knows one resize (the binding's centre crop), so the image is brought to
the exact target size here, as A1111 would, and handed on as PNG. Images that need nothing pass
through untouched (no decode, no re-encode).
"""

from __future__ import annotations

from PIL import Image, ImageColor, ImageOps

from sdrest.decode_gate import DecodeHold
from sdrest.images import decode_input_image, has_alpha, png_b64
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


def flatten(image: Image.Image, background: str) -> Image.Image:
    """RGB, with transparent pixels over ``background`` (A1111's ``img2img_background_color``)
    rather than whatever colour hides under them."""
    if not has_alpha(image):
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, ImageColor.getrgb(background))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def prepare_init_image(
    value: str,
    width: int,
    height: int,
    mode: int,
    limits: Limits,
    field: str = "init_images[0]",
    *,
    hold: DecodeHold | None = None,
    keep_size: bool = False,
    background: str = "#ffffff",
) -> tuple[str, tuple[int, int]]:
    """(the init image at exactly ``width`` x ``height``, or at its own size with
    ``keep_size``, flattened onto ``background``; its size). ``value`` itself when it needs
    nothing."""
    image = decode_input_image(value, field, limits, hold)
    size = image.size if keep_size else (width, height)
    if image.size == size and not has_alpha(image):
        return value, size
    flat = flatten(image, background)
    return png_b64(resize(flat, *size, mode) if flat.size != size else flat), size


def prepare_mask(
    value: str,
    width: int,
    height: int,
    mode: int,
    limits: Limits,
    *,
    invert: bool,
    hold: DecodeHold | None = None,
) -> str:
    """The mask (white = repaint) resized and inverted as A1111 does; base64 PNG."""
    image = decode_input_image(value, "mask", limits, hold)
    if image.size == (width, height) and not invert:
        return value
    if "A" in image.getbands():
        # A1111 composites a transparent mask on black: transparent = keep.
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    mask = resize(image.convert("L"), width, height, mode)
    if invert:
        mask = ImageOps.invert(mask)
    return png_b64(mask)
