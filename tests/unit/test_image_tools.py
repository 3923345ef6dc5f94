"""The pure Pillow helpers behind /api/image/resize and /api/image/crop."""

from __future__ import annotations

import base64
import io
from typing import Any

import msgspec
import pytest
from PIL import Image

from sdrest.api.rest.image_tools import (
    CropBody,
    ResizeBody,
    crop_box,
    crop_image,
    decode_input,
    resize,
    resize_image,
    target_size,
)
from sdrest.errors import InvalidRequestError
from sdrest.settings import Limits

LIMITS = Limits()


def b64(image: Image.Image, fmt: str = "PNG") -> str:
    out = io.BytesIO()
    image.save(out, fmt)
    return base64.b64encode(out.getvalue()).decode()


def quadrants(width: int = 40, height: int = 20) -> Image.Image:
    """Red left half, blue right half: crops and fills show which part they kept."""
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return image


def decoded(reply: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(reply["image"])))


def test_stretch_makes_the_exact_size() -> None:
    reply = msgspec.to_builtins(
        resize_image(ResizeBody(image=b64(quadrants()), width=10, height=30), LIMITS)
    )
    assert (reply["width"], reply["height"]) == (10, 30)
    assert reply["original"] == {"width": 40, "height": 20}
    assert reply["mime_type"] == "image/png"
    assert decoded(reply).size == (10, 30)
    assert reply["size"] == len(base64.b64decode(reply["image"]))


def test_one_side_keeps_the_aspect_ratio() -> None:
    assert target_size((40, 20), 20, None, LIMITS) == (20, 10)
    assert target_size((40, 20), None, 5, LIMITS) == (10, 5)
    assert target_size((1000, 1), 10, None, LIMITS) == (10, 1)  # never 0


def test_fit_stays_inside_the_box_and_fill_covers_it() -> None:
    image = quadrants(40, 20)
    assert resize(image, (20, 20), "fit").size == (20, 10)
    filled = resize(image, (20, 20), "fill")
    assert filled.size == (20, 20)
    # Centre crop: both colours survive, the left edge is still red, the right edge blue.
    assert filled.getpixel((0, 10)) == (255, 0, 0)
    assert filled.getpixel((19, 10)) == (0, 0, 255)


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (None, None, "give width, height or both"),
        (5000, 10, "width must be at most 4096"),
        (10, 5000, "height must be at most 4096"),
    ],
)
def test_sizes_out_of_range_are_400(width: int | None, height: int | None, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        target_size((40, 20), width, height, LIMITS)


def test_pixel_limit_applies_to_the_output() -> None:
    with pytest.raises(InvalidRequestError, match="more than 100 pixels"):
        target_size((40, 20), 20, 20, Limits(max_input_pixels=100))


def test_crop_returns_the_box() -> None:
    reply = msgspec.to_builtins(
        crop_image(CropBody(image=b64(quadrants()), x=20, y=5, width=20, height=10), LIMITS)
    )
    image = decoded(reply).convert("RGB")
    assert image.size == (20, 10)
    assert image.getpixel((0, 0)) == (0, 0, 255)  # the right, blue half


@pytest.mark.parametrize(
    ("box", "field"),
    [((30, 0, 20, 10), "width"), ((0, 15, 10, 10), "height"), ((0, 0, 41, 1), "width")],
)
def test_crop_box_outside_the_image_is_400(box: tuple[int, int, int, int], field: str) -> None:
    with pytest.raises(InvalidRequestError, match="does not fit inside the 40x20 image") as caught:
        crop_box((40, 20), *box)
    assert caught.value.field == field


def test_whole_image_crop_is_allowed() -> None:
    assert crop_box((40, 20), 0, 0, 40, 20) == (0, 0, 40, 20)


@pytest.mark.parametrize(("fmt", "mime"), [("jpeg", "image/jpeg"), ("webp", "image/webp")])
def test_output_formats(fmt: str, mime: str) -> None:
    body = msgspec.convert(
        {"image": b64(quadrants()), "width": 8, "output_format": fmt, "quality": 80}, ResizeBody
    )
    reply = msgspec.to_builtins(resize_image(body, LIMITS))
    assert reply["mime_type"] == mime
    assert decoded(reply).format == fmt.upper()


def test_palette_and_alpha_images_are_handled() -> None:
    palette = quadrants().convert("P")
    assert decode_input(b64(palette), LIMITS).mode == "RGB"
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    reply = msgspec.to_builtins(
        resize_image(ResizeBody(image=b64(rgba), width=4, height=4), LIMITS)
    )
    assert decoded(reply).mode == "RGBA"  # transparency kept in PNG


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!!", "not valid base64"),
        (base64.b64encode(b"hello world").decode(), "not a usable image"),
        ("", "empty image"),
    ],
)
def test_bad_images_are_400_naming_the_field(value: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as caught:
        decode_input(value, LIMITS)
    assert caught.value.field == "image"


def test_oversize_images_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="too large"):
        decode_input(b64(quadrants(40, 20)), Limits(max_input_pixels=100))
    with pytest.raises(InvalidRequestError, match="larger than"):
        decode_input(b64(quadrants(400, 400)), Limits(max_image_mb=0.0001))


@pytest.mark.parametrize(
    "raw",
    [
        {"image": "x", "width": 0},
        {"image": "x", "width": -5},
        {"image": "x", "mode": "squash"},
        {"image": "x", "output_format": "gif"},
        {"image": "x", "quality": 0},
        {"image": "x", "widht": 10},
    ],
)
def test_resize_body_schema_refuses_bad_fields(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, ResizeBody)


@pytest.mark.parametrize(
    "raw",
    [
        {"image": "x", "width": 1},  # no height
        {"image": "x", "width": 1, "height": 1, "x": -1},
        {"image": "x", "width": 1, "height": 1, "y": "3"},
    ],
)
def test_crop_body_schema_refuses_bad_fields(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, CropBody)
