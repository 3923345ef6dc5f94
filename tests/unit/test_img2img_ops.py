"""The image arithmetic of inpainting and SD upscale, and the A1111 names of the infotext."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops

from sdrest import a1111_names
from sdrest.api.sdapi import samplers
from sdrest.errors import InvalidRequestError
from sdrest.img2img_ops import (
    blend_tiles,
    check_tiled_upscale,
    fill_masked,
    fit_aspect,
    mask_box,
    paste_back,
    same_outside,
    tile_grid,
)
from sdrest.schemas import SAMPLE_METHODS, SCHEDULERS
from sdrest.settings import Limits


def _gradient(width: int, height: int) -> Image.Image:
    return Image.radial_gradient("L").convert("RGB").resize((width, height))


def test_tiles_cover_the_image_and_blend_back_without_seams() -> None:
    tiles = tile_grid(128, 96, 64, 64, 16)
    assert [(t.x, t.y) for t in tiles[:3]] == [(0, 0), (32, 0), (64, 0)]  # ceil(112 / 48) = 3
    assert {t.y for t in tiles} == {0, 32} and len(tiles) == 6
    image = _gradient(128, 96)
    crops = [image.crop((t.x, t.y, t.x + 64, t.y + 64)) for t in tiles]
    # Tiles that agree on their overlaps join back into the very same image.
    assert ImageChops.difference(blend_tiles((128, 96), tiles, crops, 16), image).getbbox() is None
    assert tile_grid(64, 64, 64, 64, 8) == tile_grid(64, 64, 64, 64, 0)  # one tile


def test_mask_box_grows_to_the_generation_aspect() -> None:
    mask = Image.new("L", (100, 80))
    assert mask_box(mask, 4) is None
    mask.paste(255, (40, 30, 50, 40))
    assert mask_box(mask, 5) == (35, 25, 55, 45)
    assert fit_aspect((35, 25, 55, 45), 64, 32, 100, 80) == (25, 25, 65, 45)  # 2:1
    assert fit_aspect((0, 0, 20, 20), 32, 64, 100, 80) == (0, 0, 20, 40)  # shifted inside


def test_fill_and_paste_back_keep_everything_outside_the_mask() -> None:
    image, mask = _gradient(64, 64), Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    filled = fill_masked(image, mask)
    assert same_outside(filled, image, mask) and filled.getpixel((32, 32)) != (0, 0, 0)
    generated = Image.new("RGB", (64, 64), (255, 0, 0))
    out = paste_back(generated, image, mask)
    assert same_outside(out, image, mask) and out.getpixel((32, 32)) == (255, 0, 0)


def test_tiled_upscale_sizes_are_checked() -> None:
    limits = Limits()
    check_tiled_upscale((64, 64), 2.0, (64, 64), 16, limits)
    with pytest.raises(InvalidRequestError, match="largest side"):
        check_tiled_upscale((3000, 64), 2.0, (64, 64), 16, limits)
    with pytest.raises(InvalidRequestError, match="smaller than one tile"):
        check_tiled_upscale((64, 64), 1.0, (128, 64), 16, limits)
    with pytest.raises(InvalidRequestError, match="overlap"):
        check_tiled_upscale((64, 64), 2.0, (64, 64), 64, limits)


def test_infotext_names_are_the_sdapi_family_names() -> None:
    assert set(a1111_names.SAMPLER_NAMES) == set(SAMPLE_METHODS)
    assert set(a1111_names.SCHEDULER_LABELS) == set(SCHEDULERS)
    for method, name in a1111_names.SAMPLER_NAMES.items():
        assert samplers.resolve(name, None) == (method, None)
        assert samplers.sampler_display_name(method) == name
    for scheduler, label in a1111_names.SCHEDULER_LABELS.items():
        assert samplers.resolve(None, label) == (None, scheduler)
