"""Wire bodies of the /api family (stable-diffusion.cpp-rest), decoded by msgspec.

Optional fields default to None so the translation knows what the client left out: a missing
field takes the model's preset default, a given one wins. Unknown fields are refused (a typo is a
400 naming the field), except in a generation body: a client built for a newer server may send
fields this one does not know, so they are ignored and listed in the answer's ``warnings``
(``--strict-requests`` refuses them).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from sdrest.schemas import LoraSpec

Name = Annotated[str, Meta(min_length=1, max_length=1024)]


class _Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base: unknown fields are refused."""


class GenerateBody(msgspec.Struct, kw_only=True):
    """``POST /api/generate/{text2img,img2img,inpainting,controlnet}``: unknown fields are
    ignored with a warning (see the module docstring)."""

    model_name: Name | None = None
    prompt: str = ""
    """At most ``--max-prompt-chars`` characters (checked with the other limits)."""
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    distilled_guidance: float | None = None
    sampling_method: str | None = None
    scheduler: str | None = None
    seed: int | str | None = None
    """``"random"`` (or a negative number) picks one; the chosen seed is in the job."""
    batch_count: int | None = None
    clip_skip: int | None = None
    strength: float | None = None
    init_image: str | None = None
    source_image: str | None = None
    """Alias of ``init_image`` (the inpainting examples use it)."""
    mask_image: str | None = None
    control_image: str | None = None
    control_net_model: Name | None = None
    control_strength: float | None = None
    output_format: str | None = None
    output_compression: int | None = None
    vae_tiling: bool | None = None
    tiling: bool | None = None
    """Seamless images (the library's circular_x/circular_y load options)."""
    lora: Annotated[list[LoraSpec], Meta(max_length=16)] | None = None
    """Structured LoRAs, as on /sdcpp/v1; ``<lora:name:weight>`` prompt tags add to them."""
    # Load options and components: a request that sets them differently from the model gets a
    # model context of its own (loaded in its turn in the queue, kept within the memory budget).
    n_threads: int | None = None
    offload_params_to_cpu: bool | None = None
    clip_on_cpu: bool | None = None
    vae_on_cpu: bool | None = None
    diffusion_flash_attn: bool | None = None
    diffusion_conv_direct: bool | None = None
    vae_conv_direct: bool | None = None
    # Component files: names or paths inside the models folder, never outside it.
    vae_path: Name | None = None
    vae_model: Name | None = None
    clip_l_path: Name | None = None
    clip_g_path: Name | None = None
    t5xxl_path: Name | None = None
    taesd_path: Name | None = None
    embedding_dir: Name | None = None
    lora_model_dir: Name | None = None


class UpscaleBody(_Body):
    """``POST /api/generate/upscale``: one image through an ESRGAN model."""

    image: str | None = None
    init_image: str | None = None
    """Alias of ``image``."""
    esrgan_model: Name | None = None
    model_name: Name | None = None
    """Alias of ``esrgan_model``."""
    upscale_factor: int | None = None
    """Checked against nothing: the ESRGAN file decides its factor (2x or 4x)."""
    repeats: int = 1
    output_format: Literal["png", "jpeg", "webp"] = "png"


class CancelBody(_Body):
    """``POST /api/queue/cancel``."""

    job_id: Name


class BatchBody(_Body):
    """``POST /api/models/batch``."""

    operation: Literal["load", "unload", "validate", "hash"]
    models: Annotated[list[Name], Meta(min_length=1, max_length=64)]


class ValidateModelBody(_Body):
    """``POST /api/models/validate``: a registry name or a path inside the models folder."""

    model_name: Name | None = None
    path: Name | None = None


class HashBody(_Body):
    """``POST /api/models/hash``: hash the named models (SHA-256, cached)."""

    models: Annotated[list[Name], Meta(min_length=1, max_length=64)] | None = None
    model_name: Name | None = None


class DownloadBody(_Body):
    """``POST /api/models/download``: files of a Hugging Face hub repository."""

    repo: Name
    """``owner/name``, or ``owner/name/path/to/file`` for one file."""
    files: Annotated[list[Name], Meta(max_length=64)] | None = None
    all: bool = False
    """Every weight file of the repository (else one must be named when it holds several)."""
    revision: Name | None = None


class ConvertBody(_Body):
    """``POST /api/models/convert``: quantize a model to GGUF."""

    model_name: Name
    quantization_type: Name
    output_path: Name | None = None
