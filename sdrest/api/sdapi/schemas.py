"""Wire schemas of ``/sdapi/v1`` txt2img, img2img and png-info, as AUTOMATIC1111 clients send them.

Unknown fields are ignored on purpose (clients send ``s_churn``, ``styles``, ``eta``... that
have no meaning here), but a known field of the wrong type is a 422; fields that would change the
image and cannot (``restore_faces``, scripts) are refused rather than ignored.
Fields default to None, which means "left out": the model preset's default (or the
canonical default) applies. ``null`` means the same, as in A1111's pydantic models.
The decoder is lax (``strict=False``) like pydantic: ``"20"`` and ``20.0`` are accepted as 20.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from sdrest.schemas import LoraSpec

Positive = Annotated[int, Meta(ge=1)]
Strength = Annotated[float, Meta(ge=0.0, le=1.0)]
Cfg = Annotated[float, Meta(ge=0.0, le=100.0)]


class OverrideSettings(msgspec.Struct, kw_only=True):
    """The options that change behaviour here (``options_table.HONOURED``), checked when set
    (``POST /options``) or overridden for one request; other keys are kept or ignored."""

    sd_model_checkpoint: str | None = None
    CLIP_stop_at_last_layers: Annotated[int, Meta(ge=1, le=12)] | None = None
    samples_format: str | None = None
    sd_vae: str | None = None
    jpeg_quality: Annotated[int, Meta(ge=1, le=100)] | None = None
    webp_lossless: bool | None = None
    enable_pnginfo: bool | None = None
    tiling: bool | None = None
    img2img_background_color: Annotated[str, Meta(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None


class Txt2ImgBody(msgspec.Struct, kw_only=True):
    """``POST /sdapi/v1/txt2img``: the fields sdrest uses (A1111 names + sd.cpp extensions)."""

    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    subseed: int | None = None
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    batch_size: Positive | None = None
    n_iter: Positive | None = None
    steps: Positive | None = None
    cfg_scale: Cfg | None = None
    distilled_cfg_scale: Cfg | None = None
    """Forge's Flux guidance -> sd.cpp ``distilled_guidance``."""
    width: Positive | None = None
    height: Positive | None = None
    clip_skip: Annotated[int, Meta(ge=-1, le=12)] | None = None
    denoising_strength: Strength | None = None
    enable_hr: bool | None = None
    hr_scale: Annotated[float, Meta(gt=0.0, le=8.0)] | None = None
    hr_resize_x: Annotated[int, Meta(ge=0)] | None = None
    hr_resize_y: Annotated[int, Meta(ge=0)] | None = None
    hr_second_pass_steps: Annotated[int, Meta(ge=0)] | None = None
    hr_upscaler: str | None = None
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str | None = None
    hr_negative_prompt: str | None = None
    override_settings: OverrideSettings | None = None
    send_images: bool | None = None
    save_images: bool | None = None
    tiling: bool | None = None
    """Seamless images (the library's circular_x/circular_y load options)."""
    restore_faces: bool | None = None
    """Refused when true: there is no face restorer here."""
    script_name: str | None = None
    """"SD upscale" (img2img); any other script is a 422 as in A1111."""
    script_args: list[Any] | None = None
    """The script's arguments: SD upscale takes ``[_, overlap, upscaler, scale]``."""
    alwayson_scripts: dict[str, Any] | None = None
    """Extension scripts (ControlNet...): none run here, so any is a 422 as in A1111."""
    lora: list[LoraSpec] | None = None
    """sd.cpp extension: structured LoRAs ``[{path, multiplier, is_high_noise}]``."""
    extra_images: list[str] | None = None
    """sd.cpp extension: reference images (base64, data URL, or http(s) URL when allowed)."""


class Img2ImgBody(Txt2ImgBody, kw_only=True):
    """``POST /sdapi/v1/img2img``: txt2img's fields plus the init image, mask and resize."""

    init_images: list[str] | None = None
    mask: str | None = None
    inpainting_mask_invert: bool | int | None = None
    mask_blur: Annotated[int, Meta(ge=0, le=256)] | None = None
    inpainting_fill: Annotated[int, Meta(ge=0, le=3)] | None = None
    inpaint_full_res: bool | int | None = None
    inpaint_full_res_padding: Annotated[int, Meta(ge=0, le=4096)] | None = None
    resize_mode: Annotated[int, Meta(ge=0, le=3)] | None = None
    include_init_images: bool | None = None


class PngInfoRequest(msgspec.Struct, kw_only=True):
    """``POST /sdapi/v1/png-info``: a base64 image or data URL."""

    image: str


class InterrogateRequest(msgspec.Struct, kw_only=True):
    """``POST /sdapi/v1/interrogate`` (refused: no interrogator here)."""

    image: str = ""
    model: str = "clip"


TXT2IMG_DECODER = msgspec.json.Decoder(Txt2ImgBody, strict=False)
IMG2IMG_DECODER = msgspec.json.Decoder(Img2ImgBody, strict=False)
PNG_INFO_DECODER = msgspec.json.Decoder(PngInfoRequest)
INTERROGATE_DECODER = msgspec.json.Decoder(InterrogateRequest)
ANY_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
