"""Issue 13 end to end: the real ``webuiapi`` client against a live server on the real library.

One server for three checks (a server start costs more than the generations): the infotext
round trip (png-info, then "send to txt2img" gives the same pixels), inpainting paste-back (pixels
outside the blurred mask are exactly the input's) and the SD upscale script with an ESRGAN file
(four tiles: each is a generation).
"""

from __future__ import annotations

import pytest
import webuiapi  # type: ignore[import-untyped]
from PIL import Image, ImageChops, ImageFilter

from tests.live import LiveServer

pytestmark = pytest.mark.native


def _rgb(image: Image.Image) -> bytes:
    return image.convert("RGB").tobytes()


def test_infotext_round_trip_paste_back_and_sd_upscale(live: LiveServer) -> None:
    api = webuiapi.WebUIApi(host="127.0.0.1", port=live.port, steps=2)
    first = api.txt2img(
        prompt="a lovely cat", width=64, height=64, seed=11, cfg_scale=1.0,
        sampler_name="DPM++ 2M", scheduler="Karras",
    )  # fmt: skip
    info = api.png_info(first.image).json
    params = info["parameters"]
    assert params["Sampler"] == "DPM++ 2M" and params["Schedule type"] == "Karras"
    # "Send to txt2img": the parsed values as a request make the same image.
    again = api.txt2img(
        prompt=params["Prompt"], width=int(params["Size-1"]), height=int(params["Size-2"]),
        seed=int(params["Seed"]), cfg_scale=float(params["CFG scale"]),
        steps=int(params["Steps"]), sampler_name=params["Sampler"],
        scheduler=params["Schedule type"],
    )  # fmt: skip
    assert _rgb(again.image) == _rgb(first.image)

    # Inpainting with webuiapi's defaults (only the masked area, at full resolution; fill): the
    # original is pasted back outside the blurred mask, to the pixel.
    original = first.image.convert("RGB")
    mask = Image.new("L", (64, 64))
    mask.paste(255, (24, 24, 40, 40))
    inpainted = api.img2img(
        images=[original], mask_image=mask, mask_blur=4, prompt="a dog", width=64, height=64,
        seed=5, cfg_scale=1.0, denoising_strength=1.0,
    ).image.convert("RGB")  # fmt: skip
    assert inpainted.size == (64, 64)
    outside = mask.filter(ImageFilter.GaussianBlur(4)).point(lambda v: 255 if v == 0 else 0)
    changed = ImageChops.difference(inpainted, original).convert("L").point(lambda v: v and 255)
    assert ImageChops.multiply(changed, outside).getbbox() is None  # nothing changed outside
    assert changed.getbbox() is not None  # and the masked area was generated anew

    # SD upscale: the ESRGAN file doubles the image (then a resize to 1.5x: 96 px), and 2 x 2
    # tiles of 64 px overlapping by 32 are re-sampled and blended.
    upscaled = api.img2img(
        images=[original], prompt="a lovely cat", width=64, height=64, seed=3, cfg_scale=1.0,
        denoising_strength=0.4, script_name="SD upscale",
        script_args=["", 32, "tiny-esrgan-x2", 1.5],
    )  # fmt: skip
    assert upscaled.image.size == (96, 96)
    assert "SD upscale upscaler: tiny-esrgan-x2" in upscaled.info["infotexts"][0]
    plain = original.resize((96, 96), Image.Resampling.LANCZOS)
    assert _rgb(upscaled.image) != _rgb(plain)  # the tiles were re-sampled
