"""/sdapi/v1 as AUTOMATIC1111 clients see it (issue 13), with the fake engine.

The first test replays what A1111's own API suite (its ``test/`` folder: txt2img, img2img, extras,
utils) sends, written from a description of its requests; the others check what each answer
holds: stock options, scripts and SD upscale, inpainting paste-back, A1111 infotext, refusals.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageFilter

from sdrest.api.sdapi.schemas import TXT2IMG_DECODER
from sdrest.api.sdapi.translate import Context, to_request
from sdrest.app import create_app
from sdrest.schemas import ImgGenRequest, SampleParams
from sdrest.service import SdrestService
from tests.api.support import ADMIN, BOB, TestUsers
from tests.fakes import (
    FakeEngine,
    write_fake_checkpoint,
    write_fake_esrgan,
    write_fake_lora,
    write_safetensors_header,
)

FAKE_RED = 200
"""The fake engine paints every image (seed % 256, 0, 0): tests send seed 200."""


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_fake_checkpoint(root / "checkpoints" / "tiny.safetensors")
    write_fake_lora(root / "lora" / "style.safetensors")
    write_fake_esrgan(root / "esrgan" / "x2.safetensors")
    write_safetensors_header(root / "vae" / "ae.safetensors", ["decoder.conv_in.weight"])
    return root


@pytest.fixture
async def api(service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=TestUsers(create_app(service)))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test/sdapi/v1/", timeout=30
    ) as http:
        yield http


def pattern(width: int = 64, height: int = 64) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 4 % 256, y * 4 % 256, 99) for y in range(height) for x in range(width)])
    return image


def b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def decode(value: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(value)))
    image.load()
    return image


# -- A1111's own suite, as its requests are described ---------------------------------------------

TXT2IMG = {
    "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0, "enable_hr": False, "eta": 0,
    "firstphase_height": 0, "firstphase_width": 0, "height": 64, "n_iter": 1,
    "negative_prompt": "", "prompt": "example prompt", "restore_faces": False, "s_churn": 0,
    "s_noise": 1, "s_tmax": 0, "s_tmin": 0, "sampler_index": "Euler a", "seed": -1,
    "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3, "styles": [],
    "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64,
}  # fmt: skip
IMG2IMG = {
    **TXT2IMG, "denoising_strength": 0.75, "include_init_images": False,
    "init_images": [b64(pattern())], "inpaint_full_res": False, "inpaint_full_res_padding": 0,
    "inpainting_fill": 0, "inpainting_mask_invert": False, "mask": None, "mask_blur": 4,
    "override_settings": {}, "resize_mode": 0,
}  # fmt: skip
MASK = Image.new("L", (64, 64))
MASK.paste(255, (16, 16, 48, 48))
EXTRAS = {
    "resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0,
    "codeformer_visibility": 0, "codeformer_weight": 0, "upscaling_resize": 2,
    "upscaling_resize_w": 128, "upscaling_resize_h": 128, "upscaling_crop": True,
    "upscaler_1": "Lanczos", "upscaler_2": "None", "extras_upscaler_2_visibility": 0,
    "image": b64(pattern()),
}  # fmt: skip
A1111_SUITE: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("POST", "txt2img", TXT2IMG, 200),
    ("POST", "txt2img", {**TXT2IMG, "negative_prompt": "example negative prompt"}, 200),
    (
        "POST", "txt2img",
        {**TXT2IMG, "prompt": "((emphasis)), (emphasis1:1.1), [to:1], [from::2], [from:to:0.3],"
         " [alt|alt1]"}, 200,
    ),
    ("POST", "txt2img", {**TXT2IMG, "height": 128}, 200),
    ("POST", "txt2img", {**TXT2IMG, "enable_hr": True}, 200),
    ("POST", "txt2img", {**TXT2IMG, "tiling": True}, 200),
    # Deliberate deviation (issue 13 item 6): no face restorer, so an honest 422.
    ("POST", "txt2img", {**TXT2IMG, "restore_faces": True}, 422),
    # Item 7: samplers the library lacks stay a 400; DDIM has an equivalent.
    ("POST", "txt2img", {**TXT2IMG, "sampler_index": "PLMS"}, 400),
    ("POST", "txt2img", {**TXT2IMG, "sampler_index": "DDIM"}, 200),
    ("POST", "txt2img", {**TXT2IMG, "sampler_index": "UniPC"}, 400),
    ("POST", "txt2img", {**TXT2IMG, "n_iter": 2}, 200),
    ("POST", "txt2img", {**TXT2IMG, "batch_size": 2}, 200),
    ("POST", "img2img", IMG2IMG, 200),
    ("POST", "img2img", {**IMG2IMG, "mask": b64(MASK)}, 200),
    ("POST", "img2img", {**IMG2IMG, "mask": b64(MASK), "inpainting_mask_invert": True}, 200),
    (
        "POST", "img2img",
        {**IMG2IMG, "script_name": "sd upscale", "script_args": ["", 8, "Lanczos", 2.0]}, 200,
    ),
    ("POST", "extra-single-image", EXTRAS, 200),
    (
        "POST", "extra-batch-images",
        {**{k: v for k, v in EXTRAS.items() if k != "image"},
         "imageList": [{"data": b64(pattern()), "name": "a.png"}]}, 200,
    ),
    ("POST", "png-info", {"image": b64(pattern())}, 200),
    # Deliberate deviation (item 6): no interrogator, so an honest 501 saying so.
    ("POST", "interrogate", {"image": b64(pattern()), "model": "clip"}, 501),
    ("GET", "options", None, 200),
    *(
        ("GET", path, None, 200)
        for path in (
            "cmd-flags", "samplers", "upscalers", "sd-models", "hypernetworks",
            "face-restorers", "realesrgan-models", "prompt-styles", "embeddings",
            # What webuiapi clients call besides: listings, progress, memory, scripts.
            "schedulers", "sd-vae", "sd-modules", "loras", "scripts", "script-info", "memory",
            "progress", "latent-upscale-modes",
        )
    ),
    ("POST", "interrupt", None, 200),
    ("POST", "skip", None, 200),
]  # fmt: skip


async def test_a1111_suite_requests(api: httpx.AsyncClient) -> None:
    for method, path, body, status in A1111_SUITE:
        resp = await api.request(method, path, json=body)
        assert resp.status_code == status, (path, body and list(body)[:3], resp.text[:300])
        if path in ("txt2img", "img2img") and status == 200:
            answer = resp.json()
            assert answer["images"] and isinstance(json.loads(answer["info"]), dict)
    # test_options_write: a stock key the client never set, flipped and read back.
    before = (await api.get("options")).json()["send_seed"]
    assert (await api.post("options", json={"send_seed": not before})).status_code == 200
    assert (await api.get("options")).json()["send_seed"] is (not before)


# -- item 1: options ----------------------------------------------------------------------------


async def test_options_are_a1111s_stock_options(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    options = (await api.get("options")).json()
    assert len(options) > 250  # every registered option, as A1111 answers
    assert options["send_seed"] is True and options["send_size"] is True
    assert options["samples_format"] == "png" and options["jpeg_quality"] == 80
    assert options["img2img_background_color"] == "#ffffff" and options["sd_vae"] == "Automatic"
    assert options["CLIP_stop_at_last_layers"] == 1 and options["eta_noise_seed_delta"] == 0
    assert options["sd_model_checkpoint"].startswith("tiny.safetensors")
    # Folders on the server: admins see them, others get "" (as /api/config does).
    assert options["outdir_samples"] == str(service.settings.output_path)
    as_user = (await api.get("options", headers=BOB)).json()
    assert as_user["outdir_samples"] == "" and as_user["outdir_txt2img_samples"] == ""
    flags = (await api.get("cmd-flags", headers=BOB)).json()
    assert not {"models_dir", "data_dir", "ckpt_dir", "output_dir"} & set(flags)
    assert str(service.settings.models_path) not in json.dumps(flags)
    admin_flags = (await api.get("cmd-flags", headers=ADMIN)).json()
    assert admin_flags["models_dir"] == service.settings.models_dir


async def test_honoured_options_change_the_generation(
    api: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    stored = {"samples_format": "jpg", "jpeg_quality": 55, "enable_pnginfo": False}
    assert (await api.post("options", json=stored)).status_code == 200
    resp = await api.post("txt2img", json={**TXT2IMG, "seed": 7})
    request = fake_engine.calls[-1].request
    assert request.output_format == "jpeg" and request.output_compression == 55
    assert request.embed_image_metadata is False
    assert decode(resp.json()["images"][0]).format == "JPEG"
    # webp_lossless: WebP outputs are lossless whatever jpeg_quality says.
    lossless = {"samples_format": "webp", "webp_lossless": True}
    resp = await api.post("txt2img", json={**TXT2IMG, "override_settings": lossless})
    request = fake_engine.calls[-1].request
    assert request.output_format == "webp" and request.output_compression == 100
    webp = io.BytesIO(base64.b64decode(resp.json()["images"][0]))
    assert webp.getvalue()[12:16] == b"VP8L"  # the lossless WebP bitstream
    # sd_vae selects a VAE file (by the name /sd-vae lists); unknown names change nothing.
    vaes = (await api.get("sd-vae")).json()
    assert vaes == [{"model_name": "ae.safetensors", "filename": "vae/ae.safetensors"}]
    missing = await api.post("options", json={"sd_vae": "nope.safetensors"})
    assert missing.status_code == 404 and "ae.safetensors" in missing.json()["detail"]
    assert (await api.post("options", json={"sd_vae": "ae.safetensors"})).status_code == 200
    await api.post("txt2img", json=TXT2IMG)
    assert Path(fake_engine.calls[-1].model.vae_path).name == "ae.safetensors"
    override = {**TXT2IMG, "override_settings": {"sd_vae": "Automatic"}}
    await api.post("txt2img", json=override)
    assert fake_engine.calls[-1].model.vae_path == ""


# -- item 2: scripts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "extra", "detail"),
    [
        ("img2img", {"script_name": "x/y/z plot"}, "Script 'x/y/z plot' not found"),
        ("txt2img", {"script_name": "sd upscale"}, "Script 'sd upscale' not found"),
        (
            "txt2img",
            {"alwayson_scripts": {"controlnet": {"args": [{"enabled": True}]}}},
            "always on script controlnet not found",
        ),
    ],
)
async def test_scripts_that_do_not_run_are_a_422(
    api: httpx.AsyncClient, fake_engine: FakeEngine, path: str, extra: dict[str, Any], detail: str
) -> None:
    body = {**(IMG2IMG if path == "img2img" else TXT2IMG), **extra}
    resp = await api.post(path, json=body)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["error"] == "HTTPException" and answer["detail"].startswith(detail)
    assert answer["errors"].startswith("422: ") and not fake_engine.calls


async def test_sd_upscale_is_one_job_of_tiles(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    scripts = (await api.get("scripts")).json()
    assert scripts == {"txt2img": [], "img2img": ["sd upscale"]}
    info = (await api.get("script-info")).json()
    assert info[0]["name"] == "sd upscale" and "x2" in info[0]["args"][2]["choices"]
    body = {
        **IMG2IMG, "seed": FAKE_RED, "width": 64, "height": 64, "script_name": "SD upscale",
        "script_args": ["", 16, 3, 2.0],  # upscaler 3 of /upscalers: the ESRGAN file x2
    }  # fmt: skip
    resp = await api.post("img2img", json=body)
    assert resp.status_code == 200, resp.text
    image = decode(resp.json()["images"][0])
    assert image.size == (128, 128)
    # 128 px in 64 px tiles overlapping by at least 16: 3 x 3 tiles, one engine call each.
    assert len(fake_engine.calls) == 9
    assert [p.init_image.size for p in fake_engine.calls if p.init_image] == [(64, 64)] * 9
    assert [p.seed for p in fake_engine.calls] == [FAKE_RED + i for i in range(9)]
    info_obj = json.loads(resp.json()["info"])
    assert "SD upscale overlap: 16, SD upscale upscaler: x2" in info_obj["infotexts"][0]
    job = await service.get(info_obj["job_id"])
    assert job.status == "completed" and job.result is not None
    assert len(job.result.images) == 1  # one job, one image
    assert job.progress.steps == 9 * 3  # every tile's steps counted in the one job
    big = {**body, "init_images": [b64(pattern(600, 600))], "script_args": ["", 16, "None", 8]}
    assert (await api.post("img2img", json=big)).status_code == 200  # "None" scales nothing
    big["script_args"] = ["", 16, "Lanczos", 8]
    too_big = await api.post("img2img", json=big)
    assert too_big.status_code == 400 and "largest side" in too_big.json()["detail"]
    # 2500 px x 1.5 fits, but the ESRGAN pass on the way makes 5000 px: refused up front too.
    solid = b64(Image.new("RGB", (2500, 2500), (1, 2, 3)))
    big = {**body, "init_images": [solid], "script_args": ["", 16, "x2", 1.5]}
    pass_too_big = await api.post("img2img", json=big)
    assert pass_too_big.status_code == 400 and "5000x5000" in pass_too_big.json()["detail"]


# -- item 4: inpainting paste-back --------------------------------------------------------------


def _outside_blur(mask: Image.Image, blur: int) -> list[tuple[int, int]]:
    blurred = mask.filter(ImageFilter.GaussianBlur(blur)) if blur else mask
    return [
        (x, y)
        for y in range(mask.height)
        for x in range(mask.width)
        if blurred.getpixel((x, y)) == 0
    ]


@pytest.mark.parametrize("full_res", [False, True])
async def test_inpainting_pastes_the_original_back(
    api: httpx.AsyncClient, fake_engine: FakeEngine, full_res: bool
) -> None:
    original = pattern(128, 128)
    mask = Image.new("L", (128, 128))
    mask.paste(255, (32, 32, 96, 96))
    body = {
        **IMG2IMG, "seed": FAKE_RED, "init_images": [b64(original)], "mask": b64(mask),
        "mask_blur": 4, "inpaint_full_res": full_res, "inpaint_full_res_padding": 4,
        "inpainting_fill": 1, "width": 64, "height": 64,
    }  # fmt: skip
    resp = await api.post("img2img", json=body)
    assert resp.status_code == 200, resp.text
    out = decode(resp.json()["images"][0]).convert("RGB")
    assert out.size == ((128, 128) if full_res else (64, 64))
    sent = fake_engine.calls[-1].init_image
    assert sent is not None and sent.size == (64, 64)
    if full_res:  # the engine saw only the mask's box (+4 px: 72 px), scaled to 64 px
        assert sent.getpixel((0, 0)) != original.getpixel((0, 0))
        kept = original
    else:
        kept = original.resize((64, 64), Image.Resampling.LANCZOS)
        mask = mask.resize((64, 64), Image.Resampling.LANCZOS)
    outside = _outside_blur(mask, 4)
    assert outside and all(out.getpixel(p) == kept.getpixel(p) for p in outside)
    centre = (out.width // 2, out.height // 2)
    assert out.getpixel(centre) == (FAKE_RED, 0, 0)  # generated inside the mask
    infotext = json.loads(resp.json()["info"])["infotexts"][0]
    assert "Mask blur: 4" in infotext
    assert ("Inpaint area: Only masked, Masked area padding: 4" in infotext) is full_res


async def test_inpainting_options(api: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    body = {**IMG2IMG, "mask": b64(MASK), "inpaint_full_res": False, "mask_blur": 0}
    inverted = await api.post("img2img", json={**body, "inpainting_mask_invert": True})
    assert inverted.status_code == 200
    sent_mask = fake_engine.calls[-1].mask_image
    assert sent_mask is not None and sent_mask.getpixel((32, 32)) == 0
    assert sent_mask.getpixel((2, 2)) == 255
    # fill (0): the masked area starts from its surroundings, not from the image under it.
    await api.post("img2img", json={**body, "inpainting_fill": 0})
    filled = fake_engine.calls[-1].init_image
    assert filled is not None and filled.getpixel((32, 32)) != pattern().getpixel((32, 32))
    assert filled.getpixel((2, 2)) == pattern().getpixel((2, 2))
    latent = await api.post("img2img", json={**body, "inpainting_fill": 2})
    assert latent.status_code == 400 and "latent noise" in latent.json()["detail"]


# -- item 5: infotext in A1111's names, png-info, send to txt2img --------------------------------


async def test_infotext_round_trips_through_png_info(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    body = {
        "prompt": "a cat", "negative_prompt": "a dog", "seed": 5, "steps": 4, "cfg_scale": 6,
        "width": 64, "height": 64, "sampler_name": "DPM++ 2M", "scheduler": "Karras",
        "enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 2,
        "denoising_strength": 0.5, "clip_skip": 2,
    }  # fmt: skip
    resp = await api.post("txt2img", json=body)
    assert resp.status_code == 200, resp.text
    first = fake_engine.calls[-1].request
    params = (await api.post("png-info", json={"image": resp.json()["images"][0]})).json()
    parameters = params["parameters"]
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in params["info"]
    assert parameters["Sampler"] == "DPM++ 2M" and parameters["Schedule type"] == "Karras"
    assert parameters["Hires upscale"] == "2.0" and parameters["Hires upscaler"] == "Latent"
    assert parameters["Hires steps"] == "2" and parameters["Denoising strength"] == "0.5"
    assert parameters["Size-1"] == "64" and parameters["Clip skip"] == "2"
    assert parameters["RNG"] == "GPU"  # what A1111 fills in for keys it did not write
    # "Send to txt2img": the parsed keys as the fields they came from give the same request.
    sent = {
        "prompt": parameters["Prompt"], "negative_prompt": parameters["Negative prompt"],
        "seed": int(parameters["Seed"]), "steps": int(parameters["Steps"]),
        "cfg_scale": float(parameters["CFG scale"]), "width": int(parameters["Size-1"]),
        "height": int(parameters["Size-2"]), "sampler_name": parameters["Sampler"],
        "scheduler": parameters["Schedule type"], "enable_hr": True,
        "hr_scale": float(parameters["Hires upscale"]),
        "hr_upscaler": parameters["Hires upscaler"],
        "hr_second_pass_steps": int(parameters["Hires steps"]),
        "denoising_strength": float(parameters["Denoising strength"]),
        "clip_skip": int(parameters["Clip skip"]),
    }  # fmt: skip
    assert (await api.post("txt2img", json=sent)).status_code == 200
    assert fake_engine.calls[-1].request == first


def test_png_info_reads_old_combined_sampler_names() -> None:
    from sdrest.api.sdapi.listings import infotext_parameters

    parsed = infotext_parameters("cat\nSteps: 3, Sampler: DPM++ 2M Karras, Seed: 1, Size: 8x8")
    assert parsed["Sampler"] == "DPM++ 2M" and parsed["Schedule type"] == "Karras"
    assert parsed["Clip skip"] == "1" and parsed["Hires sampler"] == "Use same sampler"
    plain = infotext_parameters("cat\nSteps: 3, Sampler: Euler a, Seed: 1, Size: 8x8")
    assert plain["Sampler"] == "Euler a" and plain["Schedule type"] == "Automatic"


def test_other_families_infotext_uses_a1111_names() -> None:
    from sdrest.outputs import infotext_params

    request = ImgGenRequest(sample_params=SampleParams(sample_method="euler_a", scheduler="karras"))
    params = infotext_params(request, 3, 64, 64, "tiny")
    assert params["Sampler"] == "Euler a" and params["Schedule type"] == "Karras"
    assert infotext_params(ImgGenRequest(), 3, 64, 64, "tiny")["Schedule type"] is None
    # The names written are names the A1111 family reads back as the same sampler.
    ctx = Context(defaults_for=lambda name: {}, resolve_checkpoint=str)
    body = TXT2IMG_DECODER.decode(b'{"sampler_name": "Euler a", "scheduler": "Karras"}')
    assert to_request(body, ctx).sample_params == request.sample_params


# -- item 6: refusals and listings ---------------------------------------------------------------


async def test_honest_refusals_and_listings(api: httpx.AsyncClient) -> None:
    faces = await api.post("txt2img", json={**TXT2IMG, "restore_faces": True})
    assert faces.status_code == 422 and faces.json()["field"] == "restore_faces"
    assert "no face restorer" in faces.json()["detail"]
    interrogate = await api.post("interrogate", json={"image": b64(pattern())})
    assert interrogate.status_code == 501 and interrogate.json()["error"] == "HTTPException"
    assert "no interrogator" in interrogate.json()["detail"]
    modules = (await api.get("sd-modules")).json()
    assert {"model_name": "ae.safetensors", "filename": "vae/ae.safetensors"} in modules
    for path in ("refresh-vae", "refresh-embeddings", "refresh-loras", "refresh-checkpoints"):
        resp = await api.post(path, headers=ADMIN)
        assert resp.status_code == 200 and resp.json() is None, path


async def test_missing_samplers_list_the_valid_names(api: httpx.AsyncClient) -> None:
    for name in ("PLMS", "UniPC", "LMS"):
        resp = await api.post("txt2img", json={**TXT2IMG, "sampler_name": name})
        assert resp.status_code == 400 and "valid samplers: Euler a, Euler" in resp.json()["detail"]
