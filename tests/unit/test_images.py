"""Image decoding limits, encoding, A1111 infotext round trips, masks, thumbnails."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from sdrest.images import (
    ImageInputError,
    alpha_to_mask,
    build_infotext,
    decode_image_field,
    encode_image,
    make_thumbnail,
    parse_infotext,
    read_infotext,
)

LIMITS = {"max_bytes": 1 << 20, "max_pixels": 1 << 22}


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_raw_base64_and_data_url_decode() -> None:
    data = base64.b64encode(_png(Image.new("RGB", (8, 6), "red"))).decode()
    assert decode_image_field(data, "init_image", **LIMITS).size == (8, 6)
    url = "data:image/png;base64," + data[:20] + "\n" + data[20:]
    assert decode_image_field(url, "init_image", **LIMITS).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("%%%", "base64"),
        (base64.b64encode(b"hello").decode(), "not a usable"),
        (base64.b64encode(_png(Image.effect_noise((64, 64), 50))[:300]).decode(), "corrupt"),
    ],
)
def test_bad_images_name_the_field(value: str, reason: str) -> None:
    with pytest.raises(ImageInputError, match=rf"ref_images\[2\]: .*{reason}"):
        decode_image_field(value, "ref_images[2]", **LIMITS)


def test_size_limits_are_checked_before_decoding() -> None:
    big = base64.b64encode(b"\0" * (2 << 20)).decode()
    with pytest.raises(ImageInputError, match="larger than"):
        decode_image_field(big, "init_image", **LIMITS)
    bomb = base64.b64encode(_png(Image.new("1", (12000, 12000)))).decode()
    with pytest.raises(ImageInputError, match="too large"):
        decode_image_field(bomb, "init_image", **LIMITS)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_round_trip_with_infotext(fmt: str) -> None:
    data = encode_image(Image.new("RGBA", (20, 10), "blue"), fmt, quality=90, infotext="a\nB: 1")
    image = Image.open(io.BytesIO(data))
    assert image.size == (20, 10) and image.format == {"jpeg": "JPEG"}.get(fmt, fmt.upper())
    assert read_infotext(data) == "a\nB: 1"


def test_infotext_matches_a1111() -> None:
    text = build_infotext(
        "a cat",
        "ugly",
        {
            "Steps": 20,
            "Sampler": "Euler a",
            "CFG scale": 7.0,
            "Seed": 1,
            "Size": "512x512",
            "Model": "m",
        },
    )
    assert text == (
        "a cat\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7.0,"
        " Seed: 1, Size: 512x512, Model: m"
    )
    quoted = build_infotext("p", "", {"Lora hashes": "a: 1, b: 2", "Steps": 4})
    parsed = parse_infotext(quoted)
    assert parsed["prompt"] == "p" and parsed["negative_prompt"] == ""
    assert parsed["Lora hashes"] == "a: 1, b: 2" and parsed["Steps"] == "4"
    assert parse_infotext(text)["negative_prompt"] == "ugly"


def test_alpha_to_mask() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    assert alpha_to_mask(image) is None
    image.putpixel((1, 1), (0, 0, 0, 0))
    mask = alpha_to_mask(image)
    assert mask is not None and mask.getpixel((1, 1)) == 255 and mask.getpixel((0, 0)) == 0
    assert alpha_to_mask(Image.new("RGB", (4, 4))) is None


def test_thumbnail_clamps_and_keeps_aspect() -> None:
    data = _png(Image.new("RGB", (400, 200)))
    assert Image.open(io.BytesIO(make_thumbnail(data, 100))).size == (100, 50)
    assert Image.open(io.BytesIO(make_thumbnail(data, 5))).size == (50, 25)
    with pytest.raises(ImageInputError):
        make_thumbnail(b"nope", 100)


def test_opaque_alpha_is_dropped_real_alpha_kept() -> None:
    opaque = Image.open(io.BytesIO(encode_image(Image.new("RGBA", (4, 4), (1, 2, 3, 255)), "png")))
    assert opaque.mode == "RGB" and opaque.getpixel((0, 0)) == (1, 2, 3)
    clear = Image.open(io.BytesIO(encode_image(Image.new("RGBA", (4, 4), (1, 2, 3, 9)), "png")))
    assert clear.mode == "RGBA" and clear.getpixel((0, 0)) == (1, 2, 3, 9)
