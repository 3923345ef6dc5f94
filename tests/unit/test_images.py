"""Image decoding limits, encoding, A1111 infotext round trips, masks, thumbnails."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import TypedDict

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from sdrest import images
from sdrest.images import (
    ImageInputError,
    alpha_to_mask,
    b64_to_bytes,
    build_infotext,
    decode_image_field,
    encode_image,
    extension,
    fit_size,
    image_to_b64,
    make_thumbnail,
    media_type,
    parse_infotext,
    read_infotext,
    to_mask,
    to_rgb,
)


class _Limits(TypedDict):
    max_bytes: int
    max_pixels: int


LIMITS: _Limits = {"max_bytes": 1 << 20, "max_pixels": 1 << 22}
A1111_PARAMS: dict[str, object] = {
    "Steps": 20,
    "Sampler": "Euler a",
    "CFG scale": 7.0,
    "Seed": 1,
    "Size": "512x512",
    "Model": "m",
}


def _save(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# --- decoding ---------------------------------------------------------------------------------


def test_raw_base64_and_data_url_decode() -> None:
    data = _b64(_save(Image.new("RGB", (8, 6), "red")))
    assert decode_image_field(data, "init_image", **LIMITS).size == (8, 6)
    url = "data:image/png;base64," + data[:20] + "\n" + data[20:40] + " \r\n" + data[40:]
    image = decode_image_field(url, "init_image", **LIMITS)
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_any_image_mime_and_mode_untouched() -> None:
    data = _b64(_save(Image.new("RGBA", (3, 3), (1, 2, 3, 4))))
    image = decode_image_field(f"  DATA:image/webp;name=x;base64,{data}\n", "mask", **LIMITS)
    assert image.mode == "RGBA" and image.getpixel((2, 2)) == (1, 2, 3, 4)
    jpeg = _b64(_save(Image.new("RGB", (16, 8), "white"), "JPEG"))
    assert decode_image_field(f"data:image/jpeg;base64,{jpeg}", "x", **LIMITS).size == (16, 8)


def test_unpadded_and_urlsafe_base64_decode() -> None:
    raw = _save(Image.new("L", (5, 7), 200))
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert decode_image_field(urlsafe, "init_image", **LIMITS).size == (5, 7)


_NOISE_PNG = _save(Image.effect_noise((64, 64), 50))
_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty image"),
        ("  \n\t ", "empty image"),
        ("%%%", "not valid base64"),
        ("abcde", "not valid base64"),
        (_b64(b"hello world"), "not a usable image"),
        (_b64(_EPS), "not a usable image"),  # Pillow knows EPS, the allowlist refuses it
        (_b64(_NOISE_PNG[:300]), "corrupt image data"),
        (_b64(_NOISE_PNG[:40]), "not a usable image"),  # cut inside the header
        ("data:image/png;base64,", "empty image"),
        ("data:text/plain;base64," + _b64(_NOISE_PNG), "data URL is not an image"),
        ("data:image/png," + _b64(_NOISE_PNG), "must be base64"),
        ("data:image/png;base64", "malformed data URL"),
    ],
)
def test_bad_images_name_the_field(value: str, reason: str) -> None:
    with pytest.raises(ImageInputError, match=rf"^ref_images\[2\]: .*{reason}") as info:
        decode_image_field(value, "ref_images[2]", **LIMITS)
    assert info.value.field == "ref_images[2]"
    assert isinstance(info.value, ValueError)


def test_error_reads_field_colon_reason() -> None:
    err = ImageInputError("init_image", "not valid base64")
    assert str(err) == "init_image: not valid base64"
    assert (err.field, err.reason) == ("init_image", "not valid base64")


def test_size_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("decoded an oversize payload")

    monkeypatch.setattr(base64, "b64decode", no_decode)
    big = _b64(b"\0" * ((1 << 20) + 3))
    with pytest.raises(ImageInputError, match=r"^init_image: image larger than 1 MiB"):
        decode_image_field(big, "init_image", **LIMITS)
    with pytest.raises(ImageInputError, match="larger than"):  # huge input, whitespace padded
        decode_image_field(" " * (4 << 20), "init_image", **LIMITS)


def test_payload_at_the_byte_limit_is_accepted() -> None:
    data = _save(Image.new("RGB", (4, 4)))
    decode_image_field(_b64(data), "f", max_bytes=len(data), max_pixels=16)
    with pytest.raises(ImageInputError, match="larger than"):
        decode_image_field(_b64(data), "f", max_bytes=len(data) - 1, max_pixels=16)


def test_pixel_limit_is_per_call() -> None:
    tiny = _b64(_save(Image.new("RGB", (1, 1))))
    with pytest.raises(ImageInputError, match=r"^init_image: image of 1x1 pixels is too large"):
        decode_image_field(tiny, "init_image", max_bytes=1 << 20, max_pixels=0)
    square = _b64(_save(Image.new("RGB", (10, 10))))
    assert decode_image_field(square, "f", max_bytes=1 << 20, max_pixels=100).size == (10, 10)
    with pytest.raises(ImageInputError, match="10x10"):
        decode_image_field(square, "f", max_bytes=1 << 20, max_pixels=99)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("max_pixels", [1 << 22, 1 << 40])
def test_decompression_bomb_is_refused(max_pixels: int) -> None:
    # 144 Mpx in a few KiB; past Pillow's own warning threshold too, so even a generous limit
    # does not let it through.
    bomb = _save(Image.new("1", (12000, 12000)))
    assert len(bomb) < 64 << 10
    with pytest.raises(ImageInputError, match=r"^init_image: image of 12000x12000 pixels"):
        decode_image_field(_b64(bomb), "init_image", max_bytes=1 << 20, max_pixels=max_pixels)


# --- conversions ------------------------------------------------------------------------------


def test_allowed_input_formats_are_all_registered() -> None:
    Image.init()
    assert set(images.INPUT_FORMATS) <= set(Image.OPEN)
    for fmt in ("GIF", "BMP", "TIFF"):
        data = _b64(_save(Image.new("RGB", (3, 2), "red"), fmt))
        assert decode_image_field(data, "f", **LIMITS).size == (3, 2)
    mpo = _save(Image.new("RGB", (6, 4)), "MPO")  # phone cameras send these as JPEG
    assert decode_image_field(_b64(mpo), "f", **LIMITS).size == (6, 4)


def test_to_rgb_drops_alpha_and_to_mask_is_l() -> None:
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert to_rgb(rgba).mode == "RGB" and to_rgb(rgba).getpixel((0, 0)) == (10, 20, 30)
    rgb = Image.new("RGB", (2, 2))
    assert to_rgb(rgb) is rgb
    mask = to_mask(Image.new("RGB", (2, 2), (255, 255, 255)))
    assert mask.mode == "L" and mask.getpixel((1, 1)) == 255
    assert to_mask(Image.new("1", (2, 2), 1)).getpixel((0, 0)) == 255


def test_fit_size() -> None:
    image = Image.new("RGB", (30, 20), "green")
    assert fit_size(image, 30, 20) is image
    resized = fit_size(image, 64, 48)
    assert resized.size == (64, 48) and resized.getpixel((10, 10)) == (0, 128, 0)
    with pytest.raises(ValueError):
        fit_size(image, 0, 10)


def test_alpha_to_mask() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    assert alpha_to_mask(image) is None
    image.putpixel((1, 1), (0, 0, 0, 0))
    image.putpixel((2, 2), (0, 0, 0, 128))  # half transparent: kept
    mask = alpha_to_mask(image)
    assert mask is not None and mask.mode == "L" and mask.size == (4, 4)
    assert mask.getpixel((1, 1)) == 255
    assert mask.getpixel((0, 0)) == 0 and mask.getpixel((2, 2)) == 0
    assert alpha_to_mask(Image.new("RGB", (4, 4))) is None
    assert alpha_to_mask(Image.new("LA", (4, 4), (9, 0))) is not None


def test_alpha_to_mask_palette_transparency() -> None:
    palette = Image.new("P", (3, 1))
    palette.putpalette([0, 0, 0, 255, 255, 255])
    palette.putpixel((2, 0), 1)
    palette.info["transparency"] = 1
    decoded = Image.open(io.BytesIO(_save(palette)))
    mask = alpha_to_mask(decoded)
    assert mask is not None and [mask.getpixel((x, 0)) for x in range(3)] == [0, 0, 255]


# --- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_encode_round_trip_with_infotext(fmt: str, pil: str) -> None:
    text = build_infotext("a cat, 猫 🐱", "ugly", A1111_PARAMS)
    data = encode_image(Image.new("RGBA", (20, 10), "blue"), fmt, quality=90, infotext=text)
    decoded = decode_image_field(_b64(data), "image", **LIMITS)
    assert decoded.size == (20, 10) and decoded.format == pil
    assert read_infotext(data) == text
    assert parse_infotext(read_infotext(data) or "")["prompt"] == "a cat, 猫 🐱"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_without_infotext(fmt: str) -> None:
    data = encode_image(Image.new("RGB", (33, 17), "white"), fmt, quality=80)
    assert Image.open(io.BytesIO(data)).size == (33, 17)
    assert read_infotext(data) is None


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_lossless_formats_keep_pixels(fmt: str) -> None:
    source = Image.effect_noise((32, 32), 60).convert("RGB")
    data = encode_image(source, fmt, quality=100)
    assert Image.open(io.BytesIO(data)).convert("RGB").tobytes() == source.tobytes()


def test_jpeg_quality_changes_size_and_is_clamped() -> None:
    source = Image.effect_noise((64, 64), 60).convert("RGB")
    low = encode_image(source, "jpeg", quality=10)
    high = encode_image(source, "jpeg", quality=95)
    assert len(low) < len(high)
    assert Image.open(io.BytesIO(encode_image(source, "jpeg", quality=-5))).size == (64, 64)
    assert Image.open(io.BytesIO(encode_image(source, "jpg", quality=500))).format == "JPEG"


def test_opaque_alpha_is_dropped_real_alpha_kept() -> None:
    opaque = Image.open(io.BytesIO(encode_image(Image.new("RGBA", (4, 4), (1, 2, 3, 255)), "png")))
    assert opaque.mode == "RGB" and opaque.getpixel((0, 0)) == (1, 2, 3)
    clear = Image.open(io.BytesIO(encode_image(Image.new("RGBA", (4, 4), (1, 2, 3, 9)), "png")))
    assert clear.mode == "RGBA" and clear.getpixel((0, 0)) == (1, 2, 3, 9)
    webp = encode_image(Image.new("RGBA", (4, 4), (1, 2, 3, 9)), "webp")
    assert Image.open(io.BytesIO(webp)).mode == "RGBA"


def test_webp_converts_other_modes() -> None:
    data = encode_image(Image.new("L", (8, 8), 77), "webp", quality=100)
    assert Image.open(io.BytesIO(data)).convert("L").getpixel((3, 3)) == 77


def test_jpeg_infotext_too_long_for_exif_is_left_out() -> None:
    data = encode_image(Image.new("RGB", (8, 8)), "jpeg", infotext="x" * 40_000)
    assert Image.open(io.BytesIO(data)).size == (8, 8)
    assert read_infotext(data) is None
    webp = encode_image(Image.new("RGB", (8, 8)), "webp", infotext="x" * 40_000)
    assert read_infotext(webp) == "x" * 40_000


def test_formats() -> None:
    assert [media_type(f) for f in ("png", "jpeg", "webp")] == [
        "image/png",
        "image/jpeg",
        "image/webp",
    ]
    assert [extension(f) for f in ("png", "jpeg", "webp", "JPG")] == ["png", "jpg", "webp", "jpg"]
    with pytest.raises(ValueError, match="unknown image format"):
        media_type("gif")
    with pytest.raises(ValueError, match="unknown image format"):
        extension("bmp")
    with pytest.raises(ValueError, match="unknown image format 'tiff'"):
        encode_image(Image.new("RGB", (2, 2)), "tiff")


def test_base64_helpers() -> None:
    data = b"\x89PNG\x00\xff" * 5
    text = image_to_b64(data)
    assert b64_to_bytes(text) == data
    assert b64_to_bytes("data:image/png;base64," + text[:8] + "\n" + text[8:]) == data
    with pytest.raises(ValueError):
        b64_to_bytes("@@@@")


# --- infotext ---------------------------------------------------------------------------------


def test_infotext_matches_a1111() -> None:
    assert build_infotext("a cat", "ugly", A1111_PARAMS) == (
        "a cat\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7.0,"
        " Seed: 1, Size: 512x512, Model: m"
    )


def test_build_infotext_quoting_and_omissions() -> None:
    text = build_infotext(
        "p",
        "",
        {"Lora hashes": "a: 1, b: 2", "Note": 'say "hi"', "Skip": None, "Tiling": "Tiling"},
    )
    assert text == 'p\nLora hashes: "a: 1, b: 2", Note: "say \\"hi\\"", Tiling'
    assert build_infotext("only", "", {}) == "only"


def test_parse_infotext() -> None:
    quoted = build_infotext("p", "", {"Lora hashes": "a: 1, b: 2", "Steps": 4})
    parsed = parse_infotext(quoted)
    assert parsed == {
        "prompt": "p",
        "negative_prompt": "",
        "Lora hashes": "a: 1, b: 2",
        "Steps": "4",
    }
    full = parse_infotext(build_infotext("a cat", "ugly", A1111_PARAMS))
    assert full["prompt"] == "a cat" and full["negative_prompt"] == "ugly"
    assert {k: full[k] for k in A1111_PARAMS} == {k: str(v) for k, v in A1111_PARAMS.items()}


def test_parse_infotext_multiline_and_ambiguous_last_line() -> None:
    text = "line one\nline two\nNegative prompt: bad\nworse\nSteps: 5, Seed: 7"
    parsed = parse_infotext(text)
    assert parsed["prompt"] == "line one\nline two"
    assert parsed["negative_prompt"] == "bad\nworse"
    assert parsed["Steps"] == "5" and parsed["Seed"] == "7"
    # A single line is the prompt unless it holds at least three pairs (A1111's rule).
    assert parse_infotext("style: anime") == {"prompt": "style: anime", "negative_prompt": ""}
    assert parse_infotext("Steps: 1, Seed: 2, Size: 3x3")["Size"] == "3x3"
    # A last line that is prose, not pairs, stays in the prompt.
    assert parse_infotext("a\nhello there")["prompt"] == "a\nhello there"
    # Empty prompt survives.
    assert parse_infotext(build_infotext("", "n", {"Steps": 3}))["negative_prompt"] == "n"


_KEY = st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,12}[A-Za-z0-9]", fullmatch=True)
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\x85"))


@settings(max_examples=200, deadline=None)
@given(
    prompt=_TEXT.filter(lambda t: "Negative prompt:" not in t and "\n" not in t),
    negative=_TEXT.filter(lambda t: "\n" not in t and t == t.lstrip()),
    params=st.dictionaries(_KEY, st.one_of(_TEXT, st.integers(), st.floats()), min_size=1),
)
def test_infotext_round_trip(prompt: str, negative: str, params: dict[str, object]) -> None:
    assume(all(k != v for k, v in params.items()))  # a value equal to its key is written bare
    parsed = parse_infotext(build_infotext(prompt, negative, params))
    assert parsed.pop("prompt") == prompt
    assert parsed.pop("negative_prompt") == negative
    assert parsed == {k: str(v) for k, v in params.items()}


def test_read_infotext_variants() -> None:
    assert read_infotext(b"not an image") is None
    assert read_infotext(b"") is None
    # PNG text chunk written after the pixel data (some tools do).
    png = _save(Image.new("RGB", (2, 2)))
    chunk = _png_chunk(b"tEXt", b"parameters\0late text")
    assert read_infotext(png[:-12] + chunk + png[-12:]) == "late text"
    # EXIF UserComment little-endian and ASCII, as other tools write them.
    for comment in (
        b"UNICODE\0" + "hé llo".encode("utf-16-le"),
        b"ASCII\0\0\0" + "hé llo".encode(),
    ):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = comment
        out = io.BytesIO()
        Image.new("RGB", (4, 4)).save(out, "JPEG", exif=exif.tobytes())
        assert read_infotext(out.getvalue()) == "hé llo"


# --- thumbnails -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "size", "expected"),
    [
        ((400, 200), 100, (100, 50)),
        ((200, 400), 100, (50, 100)),
        ((400, 200), 5, (50, 25)),  # clamped up to 50
        ((1200, 600), 1000, (500, 250)),  # clamped down to 500
        ((40, 20), 100, (40, 20)),  # never enlarged
    ],
)
def test_thumbnail_sizes(source: tuple[int, int], size: int, expected: tuple[int, int]) -> None:
    for fmt in ("PNG", "JPEG"):
        data = _save(Image.new("RGB", source), fmt)
        thumb = Image.open(io.BytesIO(make_thumbnail(data, size)))
        assert thumb.format == "JPEG" and thumb.mode == "RGB" and thumb.size == expected, fmt


def test_thumbnail_of_transparent_image_is_white() -> None:
    data = _save(Image.new("RGBA", (100, 100), (0, 0, 0, 0)))
    pixel = Image.open(io.BytesIO(make_thumbnail(data, 50))).getpixel((25, 25))
    assert isinstance(pixel, tuple) and min(pixel) > 245


def test_thumbnail_rejects_non_images() -> None:
    with pytest.raises(ImageInputError, match=r"^image: not a usable image"):
        make_thumbnail(b"nope", 100)
    with pytest.raises(ImageInputError, match=r"^image: corrupt"):
        make_thumbnail(_NOISE_PNG[:300], 100)
