"""The ONE canonical generation request: the sdcpp native schema of stable-diffusion.cpp.

Every API family translates its own body onto :class:`ImgGenRequest`. Optional sampling fields
that the spec says must stay unset (scheduler, sample_method, eta, flow_shift, img_cfg) are
``None`` until the engine hands them to the library, which then applies the model's defaults.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

# Names the native library knows (stable-diffusion.cpp as vendored by the pinned binding);
# tests/native checks that these match the binding's own tables exactly.
SAMPLE_METHODS: tuple[str, ...] = (
    "euler",
    "euler_a",
    "heun",
    "dpm2",
    "dpm++2s_a",
    "dpm++2m",
    "dpm++2mv2",
    "ipndm",
    "ipndm_v",
    "lcm",
    "ddim_trailing",
    "tcd",
    "res_multistep",
    "res_2s",
    "er_sde",
)
SCHEDULERS: tuple[str, ...] = (
    "discrete",
    "karras",
    "exponential",
    "ays",
    "gits",
    "sgm_uniform",
    "simple",
    "smoothstep",
    "kl_optimal",
    "lcm",
    "bong_tangent",
)
CACHE_MODES: tuple[str, ...] = (
    "disabled",
    "easycache",
    "ucache",
    "dbcache",
    "taylorseer",
    "cachedit",
    "spectrum",
)
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")
HIRES_UPSCALERS: tuple[str, ...] = (
    "none",
    "latent",
    "latent_nearest",
    "latent_nearest_exact",
    "latent_antialiased",
    "latent_bicubic",
    "latent_bicubic_antialiased",
    "lanczos",
    "nearest",
    "model",
)

OutputFormat = Literal["png", "jpeg", "webp"]
NonNegInt = Annotated[int, Meta(ge=0)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base: unknown fields are a 400 naming the field, so typos never pass silently."""


def _known_name(value: str | None, valid: tuple[str, ...], label: str) -> str | None:
    """Normalise a sampler/scheduler name; "" and "default" mean unset (the model's default).

    Lower-cased so "Karras" and "karras" mean the same, as clients expect.
    """
    if value is None:
        return None
    name = value.strip().lower()
    if name in ("", "default"):
        return None
    if name not in valid:
        raise ValueError(f"unknown {label} {name!r}; valid: {', '.join(valid)}")
    return name


class SlgParams(_Strict):
    """Skip-layer guidance."""

    layers: list[NonNegInt] = msgspec.field(default_factory=lambda: [7, 8, 9])
    layer_start: Unit = 0.01
    layer_end: Unit = 0.2
    scale: Annotated[float, Meta(ge=0.0)] = 0.0


class GuidanceParams(_Strict):
    """Classifier-free and distilled guidance."""

    txt_cfg: Annotated[float, Meta(ge=0.0, le=100.0)] = 7.0
    img_cfg: Annotated[float, Meta(ge=0.0, le=100.0)] | None = None
    distilled_guidance: Annotated[float, Meta(ge=0.0, le=100.0)] = 3.5
    slg: SlgParams = msgspec.field(default_factory=SlgParams)


class SampleParams(_Strict):
    """Sampler settings; None means "the model's default"."""

    scheduler: str | None = None
    sample_method: str | None = None
    sample_steps: Annotated[int, Meta(ge=1)] = 20
    eta: Annotated[float, Meta(ge=0.0)] | None = None
    shifted_timestep: Annotated[int, Meta(ge=0, le=1000)] = 0
    custom_sigmas: list[Annotated[float, Meta(ge=0.0)]] = msgspec.field(default_factory=list)
    flow_shift: float | None = None
    guidance: GuidanceParams = msgspec.field(default_factory=GuidanceParams)

    def __post_init__(self) -> None:
        self.sample_method = _known_name(self.sample_method, SAMPLE_METHODS, "sample_method")
        self.scheduler = _known_name(self.scheduler, SCHEDULERS, "scheduler")


class LoraSpec(_Strict):
    """One structured LoRA: a registry name or a path relative to the LoRA folder."""

    path: Annotated[str, Meta(min_length=1, max_length=1024)]
    multiplier: Annotated[float, Meta(ge=-100.0, le=100.0)] = 1.0
    is_high_noise: bool = False


class VaeTilingParams(_Strict):
    """Decode the latent in tiles to bound memory."""

    enabled: bool = False
    tile_size_x: NonNegInt = 0
    tile_size_y: NonNegInt = 0
    target_overlap: Unit = 0.5
    rel_size_x: Annotated[float, Meta(ge=0.0)] = 0.0
    rel_size_y: Annotated[float, Meta(ge=0.0)] = 0.0


Component = Annotated[str, Meta(min_length=1, max_length=1024)]


class ModelOptions(_Strict):
    """sdrest extension: component files and load options for this request only.

    Anything set here that differs from the model's own spec gives the request its own model
    context (:func:`sdrest.planning.apply_model_options`): loading it is scheduled in the queue
    like any model switch, and ``--memory-budget-mb`` keeps recently used contexts loaded.
    Components are registry names or paths inside the models folder, never outside it. None
    means "as the model is configured".
    """

    vae: Component | None = None
    taesd: Component | None = None
    clip_l: Component | None = None
    clip_g: Component | None = None
    t5xxl: Component | None = None
    offload_to_cpu: bool | None = None
    clip_on_cpu: bool | None = None
    vae_on_cpu: bool | None = None
    diffusion_flash_attn: bool | None = None
    diffusion_conv_direct: bool | None = None
    vae_conv_direct: bool | None = None
    circular_x: bool | None = None
    """Seamless along x: the image tiles left to right (A1111's ``tiling``)."""
    circular_y: bool | None = None
    """Seamless along y: the image tiles top to bottom."""

    @property
    def tiling(self) -> bool:
        """Whether this request asks for a seamless image in either direction."""
        return bool(self.circular_x or self.circular_y)


class HiresParams(_Strict):
    """sdrest extension: the library's native hires fix (a second pass at a larger size).

    The first pass runs at ``width`` x ``height``; the result is upscaled (in latent space, by a
    pixel filter, or by an ESRGAN ``upscaler_model`` from the registry when ``upscaler`` is
    "model") to ``width``/``height`` here, or by ``scale`` when they are 0, and re-sampled for
    ``steps`` (0 = the first pass's steps) at ``denoising_strength``.
    """

    enabled: bool = False
    upscaler: str = "latent"
    upscaler_model: str = ""
    scale: Annotated[float, Meta(gt=0.0, le=8.0)] = 2.0
    width: NonNegInt = 0
    height: NonNegInt = 0
    steps: NonNegInt = 0
    denoising_strength: Unit = 0.7

    def __post_init__(self) -> None:
        self.upscaler = self.upscaler.strip().lower()
        if self.upscaler not in HIRES_UPSCALERS:
            raise ValueError(
                f"unknown hires upscaler {self.upscaler!r}; valid: {', '.join(HIRES_UPSCALERS)}"
            )
        if self.upscaler == "model" and not self.upscaler_model:
            raise ValueError("hires upscaler 'model' needs upscaler_model (an ESRGAN name)")

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The second pass's size for a first pass of ``width`` x ``height``."""
        if self.width and self.height:
            return self.width, self.height
        if self.width:
            return self.width, round(height * self.width / width)
        if self.height:
            return round(width * self.height / height), self.height
        return round(width * self.scale), round(height * self.scale)


class InpaintParams(_Strict):
    """sdrest extension: AUTOMATIC1111's inpainting around the library's masked img2img (applies
    when a ``mask_image`` is sent).

    ``mask_blur``: the mask's Gaussian blur radius (0: as sent). ``paste_back``: the init image is
    composited over the result outside the (blurred) mask, so pixels it leaves out are exactly
    the input's. ``fill`` is what the
    masked area starts from: the init image as is ("original") or its surroundings smeared in
    ("fill"). ``full_res``: only the mask's bounding box (grown by ``full_res_padding`` and to the
    request's aspect ratio) is generated, at ``width`` x ``height``, then scaled back and pasted
    into the init image: the output keeps the init image's size.
    """

    mask_blur: Annotated[int, Meta(ge=0, le=256)] = 0
    paste_back: bool = False
    fill: Literal["original", "fill"] = "original"
    full_res: bool = False
    full_res_padding: Annotated[int, Meta(ge=0, le=4096)] = 32


class TiledUpscaleParams(_Strict):
    """sdrest extension: AUTOMATIC1111's "SD upscale" script, as one job.

    The init image is upscaled by ``scale`` (``upscaler`` "none", "lanczos", "nearest", or
    "model" with the ESRGAN file ``upscaler_model``), cut into ``width`` x ``height`` tiles that
    overlap by ``overlap`` pixels, each tile re-sampled as img2img (seed + tile index) and the
    tiles blended back over their overlaps. ``batch_count`` results, each from seed + n. Needs
    an ``init_image`` and no ``mask_image``.
    """

    enabled: bool = False
    upscaler: Literal["none", "lanczos", "nearest", "model"] = "lanczos"
    upscaler_model: str = ""
    scale: Annotated[float, Meta(gt=0.0, le=8.0)] = 2.0
    overlap: Annotated[int, Meta(ge=0, le=1024)] = 64

    def __post_init__(self) -> None:
        if self.upscaler == "model" and not self.upscaler_model:
            raise ValueError("tiled_upscale upscaler 'model' needs upscaler_model (an ESRGAN name)")


class ImgGenRequest(_Strict):
    """``POST /sdcpp/v1/img_gen``: the canonical request every family translates onto."""

    prompt: str = ""
    negative_prompt: str = ""
    clip_skip: Annotated[int, Meta(ge=-1, le=12)] = -1
    width: Annotated[int, Meta(ge=1)] = 512
    height: Annotated[int, Meta(ge=1)] = 512
    strength: Unit = 0.75
    seed: Annotated[int, Meta(le=2**63 - 1)] = -1
    """Negative = random (the resolved seed is recorded in the job)."""
    batch_count: Annotated[int, Meta(ge=1)] = 1
    auto_resize_ref_image: bool = True
    increase_ref_index: bool = False
    control_strength: Annotated[float, Meta(ge=0.0, le=10.0)] = 0.9
    embed_image_metadata: bool = True
    init_image: str | None = None
    ref_images: list[str] = msgspec.field(default_factory=list)
    mask_image: str | None = None
    control_image: str | None = None
    sample_params: SampleParams = msgspec.field(default_factory=SampleParams)
    lora: list[LoraSpec] = msgspec.field(default_factory=list)
    vae_tiling_params: VaeTilingParams = msgspec.field(default_factory=VaeTilingParams)
    hires: HiresParams = msgspec.field(default_factory=HiresParams)
    model_options: ModelOptions = msgspec.field(default_factory=ModelOptions)
    """sdrest extension: per-request components and load options (see ModelOptions)."""
    inpaint: InpaintParams = msgspec.field(default_factory=InpaintParams)
    """sdrest extension: paste-back, fill and full-resolution inpainting (see InpaintParams)."""
    tiled_upscale: TiledUpscaleParams = msgspec.field(default_factory=TiledUpscaleParams)
    """sdrest extension: upscale the init image, then img2img over overlapping tiles."""
    cache_mode: str = "disabled"
    cache_option: str = ""
    scm_mask: str = ""
    scm_policy_dynamic: bool = True
    output_format: OutputFormat = "png"
    output_compression: Annotated[int, Meta(ge=0, le=100)] = 100
    model: str | None = None
    """sdrest extension: a registry model or preset name; None = the server's default model."""

    def __post_init__(self) -> None:
        if self.cache_mode not in CACHE_MODES:
            raise ValueError(
                f"unknown cache_mode {self.cache_mode!r}; valid: {', '.join(CACHE_MODES)}"
            )
        if self.mask_image is not None and self.init_image is None:
            raise ValueError("mask_image needs an init_image")
        if len(self.ref_images) > 16:
            raise ValueError("at most 16 ref_images")
        if len(self.lora) > 16:
            raise ValueError("at most 16 lora entries")

    @property
    def has_images(self) -> bool:
        """Whether the request carries any input image (base64, possibly megabytes)."""
        return bool(self.init_image or self.ref_images or self.mask_image or self.control_image)

    def without_images(self) -> ImgGenRequest:
        """The same request minus its input images: what listings and memory keep."""
        if not self.has_images:
            return self
        return msgspec.structs.replace(
            self, init_image=None, ref_images=[], mask_image=None, control_image=None
        )
