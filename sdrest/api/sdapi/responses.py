"""The ``/sdapi/v1`` answers as typed Structs (encoded by msgspec, documented in /openapi.json).

Field order is A1111's wire order. Pure: the builders (listings, translate, state...) fill them.
Free-form maps stay ``dict[str, Any]`` fields, each saying why.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

# -- errors --------------------------------------------------------------------------------------


class A1111Error(msgspec.Struct, omit_defaults=True):
    """Every non-validation error: A1111's API exception shape (``error`` the exception class
    name, ``errors`` ``"<status>: <message>"``) plus sdrest's ``code`` and, when known,
    ``field``."""

    error: str
    detail: str
    body: str
    errors: str
    code: str
    field: str | None = None


class ValidationItem(msgspec.Struct):
    """One entry of FastAPI's 422 ``detail`` list."""

    loc: list[str | int]
    msg: str
    type: str


class A1111ValidationError(msgspec.Struct):
    """A body that does not match the schema (422): FastAPI's ``{"detail": [...]}``."""

    detail: list[ValidationItem]


class Empty(msgspec.Struct):
    """``{}``: what A1111 answers for interrupt, skip, unload and reload."""


# -- txt2img / img2img -----------------------------------------------------------------------


class InfoObject(msgspec.Struct, kw_only=True):
    """What ``info`` holds (as a JSON string), keyed as A1111's ``Processed.js()``."""

    prompt: str
    all_prompts: list[str]
    negative_prompt: str
    all_negative_prompts: list[str]
    seed: int
    all_seeds: list[int]
    subseed: int
    all_subseeds: list[int]
    subseed_strength: int = 0
    width: int
    height: int
    sampler_name: str
    scheduler: str
    cfg_scale: float
    steps: int
    batch_size: int
    n_iter: int
    restore_faces: bool = False
    face_restoration_model: None = None
    sd_model_name: str | None
    sd_model_hash: str | None
    sd_vae_name: None = None
    sd_vae_hash: None = None
    seed_resize_from_w: int = -1
    seed_resize_from_h: int = -1
    denoising_strength: float | None
    extra_generation_params: dict[str, Any] = msgspec.field(default_factory=dict)
    """A1111's free-form extra infotext pairs (always empty here)."""
    index_of_first_image: int = 0
    infotexts: list[str]
    styles: list[str] = msgspec.field(default_factory=list)
    job_timestamp: str
    clip_skip: int
    is_using_inpainting_conditioning: bool = False
    version: str = "sdrest"
    job_id: str
    interrupted: bool

    def as_json(self) -> str:
        """The ``info`` string, spaced as Python's ``json.dumps`` (as A1111 writes it)."""
        return json.dumps(msgspec.to_builtins(self), ensure_ascii=False)


class GenerationAnswer(msgspec.Struct):
    """``POST /txt2img`` and ``/img2img``: ``{images, parameters, info}``."""

    images: list[str]
    parameters: dict[str, Any]
    """The request body echoed as sent (free-form: whatever the client sent)."""
    info: str
    """An :class:`InfoObject`, JSON-encoded (A1111 answers a string)."""


# -- progress --------------------------------------------------------------------------------


class ProgressState(msgspec.Struct):
    """A1111's ``state`` object of ``GET /progress``."""

    skipped: bool
    interrupted: bool
    stopping_generation: bool
    job: str
    job_count: int
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class ProgressAnswer(msgspec.Struct):
    """``GET /progress``."""

    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None
    textinfo: str | None


# -- samplers, schedulers --------------------------------------------------------------------


class SamplerItem(msgspec.Struct):
    """One sampler of ``GET /samplers``."""

    name: str
    aliases: list[str]
    options: dict[str, str]
    """A1111's per-sampler option map (always empty here)."""


class SchedulerItem(msgspec.Struct):
    """One scheduler of ``GET /schedulers``."""

    name: str
    label: str
    aliases: list[str]
    default_rho: float
    need_inner_model: bool


# -- model listings ----------------------------------------------------------------------------


class SdModelItem(msgspec.Struct):
    """One generation model of ``GET /sd-models``."""

    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: None = None


class SdVaeItem(msgspec.Struct):
    """One VAE file of ``GET /sd-vae``."""

    model_name: str
    filename: str


class LoraItem(msgspec.Struct):
    """One LoRA of ``GET /loras``."""

    name: str
    alias: str
    path: str
    metadata: dict[str, Any]
    """The file's training metadata (free-form: whatever the trainer wrote)."""


class UpscalerItem(msgspec.Struct):
    """One upscaler of ``GET /upscalers``."""

    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float


class RealesrganItem(msgspec.Struct):
    """One ESRGAN file of ``GET /realesrgan-models``."""

    name: str
    path: str
    scale: int


class EmbeddingItem(msgspec.Struct):
    """One embedding of ``GET /embeddings`` (none load: each says why)."""

    step: int | None
    sd_checkpoint: str | None
    sd_checkpoint_name: str | None
    shape: int | None
    vectors: int | None
    reason: str | None = None


class Embeddings(msgspec.Struct):
    """``GET /embeddings``."""

    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, EmbeddingItem]


class NameItem(msgspec.Struct):
    """``{"name"}``: one latent upscale mode."""

    name: str


class Scripts(msgspec.Struct):
    """``GET /scripts``: the script names per tab (img2img: "sd upscale")."""

    txt2img: list[str]
    img2img: list[str]


class ScriptArg(msgspec.Struct):
    """One argument of a script, as A1111 describes its UI control."""

    label: str
    value: Any
    """The default (a string, a number...: free-form as in A1111)."""
    minimum: float | None
    maximum: float | None
    step: float | None
    choices: list[str] | None


class ScriptInfo(msgspec.Struct):
    """One item of ``GET /script-info`` (SD upscale)."""

    name: str
    is_alwayson: bool
    is_img2img: bool
    args: list[ScriptArg]


class FaceRestorer(msgspec.Struct):
    """One item of ``GET /face-restorers`` (none here)."""

    name: str
    cmd_dir: str | None


class PromptStyle(msgspec.Struct):
    """One item of ``GET /prompt-styles`` (none here)."""

    name: str
    prompt: str | None
    negative_prompt: str | None


class Hypernetwork(msgspec.Struct):
    """One item of ``GET /hypernetworks`` (none here)."""

    name: str
    path: str | None


class Extension(msgspec.Struct):
    """One item of ``GET /extensions`` (none here)."""

    name: str
    remote: str
    branch: str
    commit_hash: str
    version: str
    commit_date: int
    enabled: bool


# -- memory, png-info, extras ------------------------------------------------------------------


class MemoryFigures(msgspec.Struct):
    """Bytes free, used and in total."""

    free: int
    used: int
    total: int


class RamReport(msgspec.Struct, omit_defaults=True):
    """``ram`` of ``GET /memory``: the figures, or ``{"error"}`` when unreadable."""

    free: int | None = None
    used: int | None = None
    total: int | None = None
    error: str | None = None


class CudaReport(msgspec.Struct, omit_defaults=True):
    """``cuda`` of ``GET /memory``: ``{"system": {...}}``, or ``{"error"}`` without NVML."""

    system: MemoryFigures | None = None
    error: str | None = None


class MemoryReport(msgspec.Struct):
    """``GET /memory``."""

    ram: RamReport
    cuda: CudaReport


class PngInfo(msgspec.Struct):
    """``POST /png-info``."""

    info: str
    items: dict[str, str]
    """The image's other text chunks, by key."""
    parameters: dict[str, str]
    """The infotext parsed as A1111's ``parse_generation_parameters`` (keys are the infotext's)."""


class ExtrasSingleAnswer(msgspec.Struct):
    """``POST /extra-single-image``."""

    html_info: str
    image: str


class ExtrasBatchAnswer(msgspec.Struct):
    """``POST /extra-batch-images``."""

    html_info: str
    images: list[str]
