"""Pure image arithmetic of AUTOMATIC1111's img2img extras (Pillow only, no engine, no I/O).

- Inpainting: the mask's box (``inpaint_full_res``), grown to the generation's aspect ratio;
  the "fill" start (the masked area smeared in from its surroundings); the paste-back of the
  original over everything the mask leaves out.
- SD upscale: the overlapping tile grid of an upscaled image and the blend that joins the
  re-sampled tiles again.

:mod:`sdrest.jobs.composite` runs these around the engine's calls; planning checks sizes here.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter, ImageOps

from sdrest.errors import InvalidRequestError
from sdrest.settings import Limits

Box = tuple[int, int, int, int]
"""(left, top, right, bottom), right and bottom exclusive, as Pillow's boxes."""

MAX_MODEL_PASSES = 3
"""An SD upscale runs its ESRGAN file at most this many times to reach the factor (as A1111)."""

# (blur radius, how many times) of the fill: wide blurs first reach across the hole, the
# narrow ones last keep the colours near its edge.
_FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def mask_box(mask: Image.Image, padding: int) -> Box | None:
    """The box of the mask's non-zero pixels grown by ``padding`` (inside the image); None for
    an empty mask."""
    box = mask.convert("L").getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    return (
        max(left - padding, 0),
        max(top - padding, 0),
        min(right + padding, mask.width),
        min(bottom + padding, mask.height),
    )


def _grow(low: int, high: int, wanted: int, limit: int) -> tuple[int, int]:
    """[low, high) widened to ``wanted`` around its centre, shifted to stay in [0, limit)."""
    extra = max(0, wanted - (high - low))
    low, high = low - extra // 2, high + extra - extra // 2
    if high > limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, min(high - low, limit)
    return low, high


def fit_aspect(box: Box, width: int, height: int, image_w: int, image_h: int) -> Box:
    """``box`` grown along one axis to the aspect ratio ``width``:``height`` (as far as the
    image allows), so the crop scales to the generation size without distortion."""
    left, top, right, bottom = box
    if (right - left) * height > (bottom - top) * width:  # wider than the target: grow height
        top, bottom = _grow(top, bottom, int((right - left) * height / width), image_h)
    else:
        left, right = _grow(left, right, int((bottom - top) * width / height), image_w)
    return left, top, right, bottom


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's ``inpainting_fill`` 0: the masked area painted with its surroundings, blurred
    in from wide to narrow; the unmasked area is unchanged."""
    keep = ImageOps.invert(mask.convert("L"))
    # Premultiplied alpha, so blurring spreads the kept colours and not the hole's black.
    known = Image.new("RGBa", image.size)
    known.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    filled = Image.new("RGBA", image.size)
    for radius, times in _FILL_PASSES:
        layer = known.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(times):
            filled.alpha_composite(layer)
    return filled.convert("RGB")


def overlay_mask(mask: Image.Image, *, doubled: bool) -> Image.Image:
    """Where a paste-back takes the generated image: the (blurred) mask, doubled as A1111 does
    for whole-picture inpainting so the generated area keeps full strength inside the edge."""
    mask = mask.convert("L")
    return mask.point(lambda v: min(255, 2 * v)) if doubled else mask


def paste_back(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """The original over the generated image where ``mask`` is below 255: exactly the original
    where it is 0. Both images are brought to the original's size and RGB."""
    original = original.convert("RGB")
    generated = generated.convert("RGB")
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.Resampling.LANCZOS)
    if mask.size != original.size:
        mask = mask.resize(original.size, Image.Resampling.LANCZOS)
    return Image.composite(generated, original, mask)


def same_outside(a: Image.Image, b: Image.Image, mask: Image.Image) -> bool:
    """Whether ``a`` and ``b`` are equal wherever ``mask`` is 0 (for checks and tests)."""
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).convert("L")
    outside = ImageChops.multiply(diff.point(lambda v: 255 if v else 0), ImageOps.invert(mask))
    return outside.getbbox() is None


# -- SD upscale ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One tile of the grid: its top-left corner in the upscaled image."""

    x: int
    y: int


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis: first at 0, last flush with the end, spread evenly."""
    count = max(1, -(-(length - overlap) // (tile - overlap)))  # ceil
    if count == 1:
        return [0]
    step = (length - tile) / (count - 1)
    return [min(int(i * step), length - tile) for i in range(count)]


def tile_grid(width: int, height: int, tile_w: int, tile_h: int, overlap: int) -> list[Tile]:
    """The tiles, row by row, that cover a ``width`` x ``height`` image with ``tile_w`` x
    ``tile_h`` tiles overlapping by at least ``overlap`` pixels."""
    xs = _starts(width, tile_w, overlap)
    ys = _starts(height, tile_h, overlap)
    return [Tile(x, y) for y in ys for x in xs]


def _ramp(length: int, across: int, horizontal: bool) -> Image.Image:
    """A 0 -> 255 gradient over ``length`` pixels (left to right when ``horizontal``, else top
    to bottom), ``across`` pixels wide: how much of the later tile shows in an overlap."""
    gradient = Image.linear_gradient("L")  # 256 x 256, black at the top, white at the bottom
    if horizontal:
        return gradient.transpose(Image.Transpose.TRANSPOSE).resize((length, across))
    return gradient.resize((across, length))


def blend_tiles(
    size: tuple[int, int], tiles: list[Tile], images: list[Image.Image], overlap: int
) -> Image.Image:
    """The tiles joined again: each one fades in over the one before it (left neighbour, upper
    row) across ``overlap`` pixels, so no seam shows where they overlap."""
    width, height = size
    out = Image.new("RGB", size)
    rows: dict[int, list[tuple[Tile, Image.Image]]] = {}
    for tile, image in zip(tiles, images, strict=True):
        rows.setdefault(tile.y, []).append((tile, image.convert("RGB")))
    for y, row in sorted(rows.items()):
        tile_h = row[0][1].height
        strip = Image.new("RGB", (width, tile_h))
        for tile, image in row:
            fade = min(overlap, image.width)
            if tile.x == 0 or fade == 0:
                strip.paste(image, (tile.x, 0))
                continue
            strip.paste(image.crop((0, 0, fade, tile_h)), (tile.x, 0), _ramp(fade, tile_h, True))
            strip.paste(image.crop((fade, 0, image.width, tile_h)), (tile.x + fade, 0))
        fade = min(overlap, tile_h)
        if y == 0 or fade == 0:
            out.paste(strip, (0, y))
            continue
        out.paste(strip.crop((0, 0, width, fade)), (0, y), _ramp(fade, width, False))
        out.paste(strip.crop((0, fade, width, tile_h)), (0, y + fade))
    return out.crop((0, 0, width, height))


def upscaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size of an image of ``width`` x ``height`` upscaled by ``scale``."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_tiled_upscale(
    image_size: tuple[int, int], scale: float, tile: tuple[int, int], overlap: int, limits: Limits
) -> None:
    """A 400 before anything is queued when the upscaled image is too large for the server or
    smaller than one tile, or when the overlap leaves no tile to advance by."""
    out_w, out_h = upscaled_size(*image_size, scale)
    if max(out_w, out_h) > limits.max_size:
        raise InvalidRequestError(
            f"SD upscale: {image_size[0]}x{image_size[1]} scaled by {scale:g} gives"
            f" {out_w}x{out_h}; the largest side allowed is {limits.max_size}",
            field="tiled_upscale.scale",
        )
    if out_w < tile[0] or out_h < tile[1]:
        raise InvalidRequestError(
            f"SD upscale: the upscaled image ({out_w}x{out_h}) is smaller than one tile"
            f" ({tile[0]}x{tile[1]}, the request's width and height): send a smaller size",
            field="width",
        )
    if overlap >= min(tile):
        raise InvalidRequestError(
            f"SD upscale: the overlap ({overlap}) must be smaller than the tile"
            f" ({tile[0]}x{tile[1]})",
            field="tiled_upscale.overlap",
        )
