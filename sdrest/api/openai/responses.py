"""The /v1 answers as typed Structs: images, models, errors and the streamed events.

Field order is the wire order (OpenAI's). Pure: building them reads no files (the caller passes
the images as base64).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from sdrest.models import ModelEntry, ModelPreset
from sdrest.outputs import output_url
from sdrest.schemas import ImageRef, Job


class ImageData(msgspec.Struct, omit_defaults=True):
    """One image of an answer: ``b64_json`` or ``url``, and ``revised_prompt`` when the prompt
    was changed (its ``<sd_cpp_extra_args>`` block removed)."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(msgspec.Struct, omit_defaults=True):
    """``POST /images/generations`` and ``/images/edits``: ``{created, data, output_format,
    size}`` (``size``, the first image's, only when there are images)."""

    created: int
    data: list[ImageData]
    output_format: str
    size: str | None = None

    @classmethod
    def of(
        cls,
        job: Job,
        images_b64: Sequence[str],
        *,
        url_base: str | None = None,
        revised_prompt: str | None = None,
    ) -> ImagesResponse:
        """The answer to a completed job: the images inlined (``images_b64``, in order), or as
        absolute download URLs under ``url_base`` when it is given."""
        if job.result is None:
            raise ValueError(f"job {job.id} has no result")
        refs = job.result.images
        if url_base is not None:
            urls = [output_url(job.id, ref.filename, base_url=url_base) for ref in refs]
            data = [ImageData(url=url, revised_prompt=revised_prompt) for url in urls]
        else:
            data = [ImageData(b64_json=b64, revised_prompt=revised_prompt) for b64 in images_b64]
        size = _size(refs[0]) if refs else None
        return cls(int(job.created), data, job.result.output_format, size)


def _size(ref: ImageRef) -> str:
    return f"{ref.width}x{ref.height}"


class OpenAIModel(msgspec.Struct, frozen=True):
    """One entry of ``GET /models``."""

    id: str
    created: int
    owned_by: str = "local"
    object: Literal["model"] = "model"

    @classmethod
    def of(cls, model: ModelEntry | ModelPreset, started: float) -> OpenAIModel:
        """A file's mtime is its ``created``; a preset's is the server start."""
        when = model.mtime if isinstance(model, ModelEntry) else started
        return cls(id=model.name, created=int(when))


class ModelList(msgspec.Struct):
    """``GET /models``: every generation model and preset."""

    object: Literal["list"]
    data: list[OpenAIModel]

    @classmethod
    def of(cls, models: Iterable[ModelEntry | ModelPreset], started: float) -> ModelList:
        """The list of ``models``, in order."""
        return cls("list", [OpenAIModel.of(model, started) for model in models])


class OpenAIErrorDetail(msgspec.Struct):
    """What went wrong: ``param`` is the request field in OpenAI's terms, or null."""

    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(msgspec.Struct):
    """Every /v1 error: ``{"error": {"message", "type", "param", "code"}}``."""

    error: OpenAIErrorDetail


# -- server-sent events (``stream: true``) -----------------------------------------------------


class ImageEvent(msgspec.Struct):
    """The fields every image event starts with."""

    created_at: int
    size: str
    quality: str
    background: str
    output_format: str
    type: str


class PartialImageEvent(ImageEvent):
    """``image_generation.partial_image`` (``image_edit.*``): a live preview."""

    partial_image_index: int
    b64_json: str

    @classmethod
    def of(cls, prefix: str, size: str, index: int, b64: str) -> PartialImageEvent:
        """Preview number ``index`` (always PNG)."""
        return cls(int(time.time()), size, "auto", "opaque", "png", f"{prefix}.partial_image",
                   index, b64)  # fmt: skip


class InputTokensDetails(msgspec.Struct):
    """Token counts by kind; a local model counts none."""

    image_tokens: int = 0
    text_tokens: int = 0


class Usage(msgspec.Struct):
    """OpenAI's token usage; always zero here (stock clients read it)."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    total_tokens: int = 0


class CompletedImageEvent(ImageEvent):
    """``image_generation.completed`` (``image_edit.*``): one finished image."""

    b64_json: str
    usage: Usage

    @classmethod
    def of(cls, prefix: str, ref: ImageRef, output_format: str, b64: str) -> CompletedImageEvent:
        """The event of one output image."""
        return cls(int(time.time()), _size(ref), "auto", "opaque", output_format,
                   f"{prefix}.completed", b64, Usage())  # fmt: skip


class ErrorEvent(msgspec.Struct):
    """The last event of a stream whose job failed: the error and the status it would have."""

    type: Literal["error"]
    error: OpenAIErrorDetail
    status: int
