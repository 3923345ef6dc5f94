"""Partial field layers of the canonical request, typed: what the families build and
``sdrest.api.common.compose_request`` deep-merges and converts into an :class:`ImgGenRequest`.

Each ``*Layer`` mirrors one Struct of :mod:`sdrest.schemas.request` in its wire (builtins) form,
every key optional (a layer says only what it sets). Ranges and names are checked when the merged
layers are converted, not here; ``tests/unit/test_request_layers.py`` keeps the keys in step with
the Structs' fields.
"""

# No ``from __future__ import annotations`` here: Python 3.11's TypedDict sees ``Required`` only in
# evaluated annotations (a string one would leave LoraLayer's ``path`` optional).
from typing import Required, TypedDict


class SlgLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.SlgParams`."""

    layers: list[int]
    layer_start: float
    layer_end: float
    scale: float


class GuidanceLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.GuidanceParams`."""

    txt_cfg: float
    img_cfg: float | None
    distilled_guidance: float
    slg: SlgLayer


class SampleLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.SampleParams`."""

    scheduler: str | None
    sample_method: str | None
    sample_steps: int
    eta: float | None
    shifted_timestep: int
    custom_sigmas: list[float]
    flow_shift: float | None
    guidance: GuidanceLayer


class LoraLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.LoraSpec`: an item of a list (lists replace, they do not
    merge), so its one required field is required here too."""

    path: Required[str]
    multiplier: float
    is_high_noise: bool


class VaeTilingLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.VaeTilingParams`."""

    enabled: bool
    tile_size_x: int
    tile_size_y: int
    target_overlap: float
    rel_size_x: float
    rel_size_y: float


class HiresLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.HiresParams`."""

    enabled: bool
    upscaler: str
    upscaler_model: str
    scale: float
    width: int
    height: int
    steps: int
    denoising_strength: float


class ModelOptionsLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.ModelOptions`."""

    vae: str | None
    taesd: str | None
    clip_l: str | None
    clip_g: str | None
    t5xxl: str | None
    offload_to_cpu: bool | None
    clip_on_cpu: bool | None
    vae_on_cpu: bool | None
    diffusion_flash_attn: bool | None
    diffusion_conv_direct: bool | None
    vae_conv_direct: bool | None
    circular_x: bool | None
    circular_y: bool | None


class InpaintLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.InpaintParams`."""

    mask_blur: int
    paste_back: bool
    fill: str
    full_res: bool
    full_res_padding: int


class TiledUpscaleLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.TiledUpscaleParams`."""

    enabled: bool
    upscaler: str
    upscaler_model: str
    scale: float
    overlap: int


class RequestLayer(TypedDict, total=False):
    """:class:`~sdrest.schemas.request.ImgGenRequest`: one partial layer of the request."""

    prompt: str
    negative_prompt: str
    clip_skip: int
    width: int
    height: int
    strength: float
    seed: int
    batch_count: int
    auto_resize_ref_image: bool
    increase_ref_index: bool
    control_strength: float
    embed_image_metadata: bool
    init_image: str | None
    ref_images: list[str]
    mask_image: str | None
    control_image: str | None
    sample_params: SampleLayer
    lora: list[LoraLayer]
    vae_tiling_params: VaeTilingLayer
    hires: HiresLayer
    model_options: ModelOptionsLayer
    inpaint: InpaintLayer
    tiled_upscale: TiledUpscaleLayer
    cache_mode: str
    cache_option: str
    scm_mask: str
    scm_policy_dynamic: bool
    output_format: str
    output_compression: int
    model: str | None


def sample_layer(
    *,
    steps: int | None = None,
    method: str | None = None,
    scheduler: str | None = None,
    cfg: float | None = None,
    distilled: float | None = None,
) -> SampleLayer:
    """The sampling fields a client gave (None: not given), as every family's wire names them
    (steps, sampler, scheduler, CFG scale, distilled guidance); keys in the Struct's order."""
    layer: SampleLayer = {}
    if scheduler is not None:
        layer["scheduler"] = scheduler
    if method is not None:
        layer["sample_method"] = method
    if steps is not None:
        layer["sample_steps"] = steps
    guidance: GuidanceLayer = {}
    if cfg is not None:
        guidance["txt_cfg"] = cfg
    if distilled is not None:
        guidance["distilled_guidance"] = distilled
    if guidance:
        layer["guidance"] = guidance
    return layer
