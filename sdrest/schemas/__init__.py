"""Typed wire and domain structs shared by every API family."""

from sdrest.schemas.job import (
    FINISHED,
    ImageRef,
    Job,
    JobError,
    JobKind,
    JobResult,
    JobStatus,
    Progress,
    UpscaleRequest,
)
from sdrest.schemas.request import (
    HIRES_UPSCALERS,
    OUTPUT_FORMATS,
    SAMPLE_METHODS,
    SCHEDULERS,
    GuidanceParams,
    HiresParams,
    ImgGenRequest,
    LoraSpec,
    SampleParams,
    SlgParams,
    VaeTilingParams,
)

__all__ = [
    "FINISHED",
    "HIRES_UPSCALERS",
    "OUTPUT_FORMATS",
    "SAMPLE_METHODS",
    "SCHEDULERS",
    "GuidanceParams",
    "HiresParams",
    "ImageRef",
    "ImgGenRequest",
    "Job",
    "JobError",
    "JobKind",
    "JobResult",
    "JobStatus",
    "LoraSpec",
    "Progress",
    "SampleParams",
    "SlgParams",
    "UpscaleRequest",
    "VaeTilingParams",
]
