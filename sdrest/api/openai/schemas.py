"""Wire shapes of the OpenAI images family: the bodies clients send to ``/v1/images/*``.

Fields OpenAI defines but a local diffusion model has no use for (``quality``, ``style``,
``user``, ``background``, ``moderation``...) are accepted and ignored, so stock clients work
unchanged. Anything else unknown is refused (400 naming the field): a typo never passes silently.
The sdrest extensions (``negative_prompt``, ``steps``, ``seed``...) are the knobs users ask for
most; every other native control goes through ``<sd_cpp_extra_args>`` in the prompt.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from sdrest.schemas.request import LoraSpec

ResponseFormat = Literal["b64_json", "url"]
EditMode = Literal["auto", "img2img", "reference"]

OPENAI_MODEL_ALIASES: frozenset[str] = frozenset(
    {"dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "sd-cpp-local"}
)
"""Model names stock clients hard-code; they mean "the server's default model" unless a registry
model of the same name exists (``sd-cpp-local`` is the stable-diffusion.cpp server's fixed id)."""


class CommonFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields shared by generations (JSON) and edits (multipart form)."""

    prompt: Annotated[str, Meta(min_length=1)]
    model: str | None = None
    n: Annotated[int, Meta(ge=1)] | None = None
    size: str | None = None
    """``WIDTHxHEIGHT`` or ``auto`` (the model's default; for edits the input image's size)."""
    response_format: ResponseFormat | None = None
    output_format: str | None = None
    output_compression: int | None = None
    """Clamped to 0..100, as the stable-diffusion.cpp server does."""
    # OpenAI fields accepted and ignored: they describe the hosted service, not the model.
    quality: str | None = None
    background: str | None = None
    moderation: str | None = None
    user: str | None = None
    partial_images: Annotated[int, Meta(ge=0, le=3)] | None = None
    """With ``stream``: how many partial images (live previews) to send before the final one."""
    stream: bool = False
    """Answer as server-sent events (``image_generation.partial_image`` / ``.completed``)."""
    # sdrest extensions (explicit fields win over sd_cpp_extra_args and preset defaults).
    negative_prompt: str | None = None
    steps: Annotated[int, Meta(ge=1)] | None = None
    seed: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    scheduler: str | None = None


class GenerationBody(CommonFields):
    """``POST /v1/images/generations`` (JSON)."""

    style: str | None = None
    lora: list[LoraSpec] | None = None


class EditFields(CommonFields):
    """The text fields of ``POST /v1/images/edits`` (multipart; the files come separately)."""

    input_fidelity: str | None = None
    strength: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    edit_mode: EditMode = "auto"
    """``img2img``: the first image is the init image (inpainted under a mask), the others are
    reference images. ``reference``: every image is a reference image (Flux.2-style editing).
    ``auto``: ``reference`` for reference-image models (Flux.2) without a mask, else img2img."""
