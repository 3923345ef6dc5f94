"""The answers of the /api utilities (samplers, schedulers, parameters, validate, estimate) and
image tools (download, resize, crop) as typed Structs (field order is the wire order). Pure."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec


class SamplerDetail(msgspec.Struct):
    """One sampler."""

    name: str
    description: str
    model_calls_per_step: int
    """Model evaluations a step costs (two-stage samplers: 2)."""
    aliases: list[str]


class SamplersReply(msgspec.Struct, kw_only=True):
    """``GET /api/samplers``: the spec's list of names, then the details of each."""

    samplers: list[str]
    default: str | None = None
    """Always null: the library (or the model's preset) picks."""
    details: list[SamplerDetail]


class SchedulerDetail(msgspec.Struct):
    """One scheduler."""

    name: str
    description: str


class SchedulersReply(msgspec.Struct, kw_only=True):
    """``GET /api/schedulers``: the spec's list of names, then the details of each."""

    schedulers: list[str]
    default: str | None = None
    details: list[SchedulerDetail]


# --- parameters -------------------------------------------------------------------------------


class _Range(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type"):
    """A numeric parameter: bounds as enforced, the default a request gets, a UI step."""

    min: float | None
    max: float | None
    default: float | None
    step: float
    note: str | None = None


class IntegerRange(_Range, tag="integer"):
    """An integer parameter (``type: integer``)."""


class NumberRange(_Range, tag="number"):
    """A real-valued parameter (``type: number``)."""


class ChoiceParameter(msgspec.Struct, tag_field="type", tag="string"):
    """A parameter picked from names (``type: string``)."""

    options: list[str]
    default: str | None


Parameter = IntegerRange | NumberRange | ChoiceParameter


class ServerLimits(msgspec.Struct):
    """Limits that are not a parameter's bounds."""

    max_queue: int
    max_image_mb: float
    max_input_pixels: int
    max_prompt_chars: int
    """Longest ``prompt`` / ``negative_prompt``, in characters."""


class ParametersReply(msgspec.Struct):
    """``GET /api/parameters``: ranges as enforced, defaults of the default model."""

    parameters: dict[str, Parameter]
    """By the spec's field name."""
    model: str | None
    """The default model whose defaults are shown (null: none yet)."""
    limits: ServerLimits


# --- validate ---------------------------------------------------------------------------------


class Issue(msgspec.Struct, frozen=True):
    """One validation error or warning, named by the wire field it concerns."""

    field: str | None
    message: str
    code: str = "VALIDATION_ERROR"


class ValidationReply(msgspec.Struct):
    """``POST /api/validate``: what submitting the body would say, without queueing it."""

    valid: bool
    errors: list[Issue]
    warnings: list[Issue]
    model: str | None

    @classmethod
    def of(
        cls, errors: Iterable[Issue], warnings: Iterable[Issue], model: str | None
    ) -> ValidationReply:
        """The answer; errors are unique by (field, message)."""
        unique: list[Issue] = []
        for issue in errors:
            if all((issue.field, issue.message) != (i.field, i.message) for i in unique):
                unique.append(issue)
        return cls(not unique, unique, list(warnings), model)


# --- estimate ---------------------------------------------------------------------------------


class TimeEstimate(msgspec.Struct, kw_only=True):
    """Seconds a generation takes: measured on recent jobs of the model, else a guess."""

    seconds: float
    seconds_per_step: float
    overhead_seconds: float
    basis: str
    """``measured`` or ``heuristic``."""
    samples: int
    """How many completed jobs were measured."""


class MemoryEstimate(msgspec.Struct, kw_only=True):
    """Bytes a generation needs: weight files, latents and the VAE decoder (a floor)."""

    bytes: int
    mb: float
    weights_bytes: int
    weights: dict[str, int]
    """File sizes by role (``model``, ``vae``, ``lora:<file>``...)."""
    latent_bytes: int
    vae_decode_bytes: int
    vae_tiling: bool
    basis: str = "file sizes + latent and VAE decoder sizes (a floor)"


class EstimateReply(msgspec.Struct, kw_only=True):
    """``POST /api/estimate``: time and memory of a generation body."""

    model: str
    model_loaded: bool
    width: int
    height: int
    steps: int
    batch_count: int
    queue_length: int
    estimated_time_seconds: float
    estimated_memory_mb: float
    time: TimeEstimate
    memory: MemoryEstimate


# --- images -----------------------------------------------------------------------------------


class Dimensions(msgspec.Struct):
    """Width and height in pixels."""

    width: int
    height: int


class ImageReply(msgspec.Struct, kw_only=True):
    """``POST /api/image/resize`` and ``/api/image/crop``: the new image, base64."""

    image: str
    width: int
    height: int
    format: str
    mime_type: str
    size: int
    """Bytes of the encoded image."""
    original: Dimensions


class DownloadReply(msgspec.Struct, kw_only=True):
    """``GET /api/image/download?encoding=base64``: the fetched image, base64."""

    image: str
    data_url: str
    mime_type: str
    format: str
    width: int
    height: int
    size: int
    """Bytes of the image as fetched."""
